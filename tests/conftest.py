"""Fixtures every tier shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.stages import StageContext

# A fixed logical time, so manifests written by stages under test are reproducible.
LOGICAL_TIME = "2026-01-12T00:00:00Z"
# The ``spark`` section of the one SparkSession the tests share (tests/integration/conftest.py
# starts it): a stage run with these settings reuses that session, JVM included.
SPARK_TEST = {"master": "local[2]", "driver_memory": "1g", "shuffle_partitions": 4, "app_name": "pinsage-tests"}

# The slowest modules, slowest first (`pytest --durations=60` on 2 cores, 2026-12-08: setup plus
# calls, about 350, 300, 190, 160, 130, 85, 80, 75, 70, 50, 45 and 35 s). `make test` runs each
# module on one xdist worker (--dist loadscope) and hands modules out in collection order
# (--no-loadscope-reorder: xdist's own reorder puts modules with the most tests first, which left
# these one- and two-test modules to the end, one worker busy for minutes while the other idled).
# Started first, the long ones overlap and the many short modules fill the gaps.
SLOWEST_MODULES = (
    "tests/integration/services/test_services_loop.py",
    "tests/integration/dags/test_scheduled_airflow_run.py",
    "tests/integration/components/orchestration/test_kfp_pipeline.py",
    "tests/e2e/test_concurrent_runs.py",
    "tests/integration/pinsage_model/model/test_training_devices.py",
    "tests/integration/stages/test_spark_cluster.py",
    "tests/integration/dags/test_pinsage_dag_run.py",
    "tests/e2e/test_readme_own_data.py",
    "tests/integration/stages/test_pairs.py",
    "tests/integration/components/test_logs.py",
    "tests/integration/test_demo_quality.py",
    "tests/e2e/test_pipeline.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the items of :data:`SLOWEST_MODULES` to the front, slowest module first (a stable
    sort: every other item, and the order within a module, stay as collected)."""
    missing = [m for m in SLOWEST_MODULES if not (config.rootpath / m).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py SLOWEST_MODULES names no such file: {missing}")
    rank = {m: i for i, m in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(Path(item.nodeid.split("::")[0]).as_posix(), len(rank)))


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
