"""Fixtures every tier shares."""

from __future__ import annotations

import pytest

from components.stages import StageContext

# A fixed logical time, so manifests written by stages under test are reproducible.
LOGICAL_TIME = "2026-01-12T00:00:00Z"
# The ``spark`` section of the one SparkSession the tests share (tests/integration/conftest.py
# starts it): a stage run with these settings reuses that session, JVM included.
SPARK_TEST = {"master": "local[2]", "driver_memory": "1g", "shuffle_partitions": 4, "app_name": "pinsage-tests"}


@pytest.fixture
def stage_ctx(tmp_path) -> StageContext:
    """The context of run ``test`` in ``tmp_path`` (scratch ``tmp_path/test/checkpoints``)."""
    return StageContext.create(tmp_path, "test", LOGICAL_TIME)


@pytest.fixture(scope="session")
def spark_section() -> dict:
    """The ``spark`` config section of the shared session (:data:`SPARK_TEST`), as a plain dict."""
    return dict(SPARK_TEST)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, spark_section):
    """Every stage of ``configs/tiny.yaml`` by the local runner, once per test session, in this
    process: training deterministic, the shared Spark settings, tracking to a SQLite store in the
    run area, logical time :data:`LOGICAL_TIME`. Yields (config, run dir, the stages' reports).

    The end-to-end test checks this run and reruns it (every stage skipped, nothing written); the
    Kubeflow test compares ``kfp.local`` with it. Tests must not write into the run dir.
    """
    import datetime as dt

    from components.orchestration.local_runner import run_pipeline
    from pinsage_model.config import load_config

    cfg = load_config("configs/tiny.yaml", overrides={"spark": spark_section, "train": {"deterministic": True}})
    run_dir = tmp_path_factory.mktemp("tiny-run") / "run"
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)  # the run area's own store
        reports = run_pipeline(cfg, run_dir, logical_time=dt.datetime.fromisoformat(LOGICAL_TIME))
    return cfg, run_dir, reports
