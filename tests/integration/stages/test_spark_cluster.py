"""The Spark stages on a real standalone cluster (a master and two one-core workers on 127.0.0.1,
each executor its own JVM and Python workers) write what they write on ``local[2]``.

``local[N]`` runs executors as threads of the driver: one JVM, no network shuffle, one file
system view. Here the pairs, graph, neighbourhoods (``sampler.backend: spark``) and embeddings
(``inference.backend: spark``, the ``gather`` and ``shuffle`` plans) stages run against
``spark://127.0.0.1:PORT`` on the tiny preset, cut into several tasks so both executors take
part; their files equal the ``local[2]`` run's byte for byte (embeddings within 1e-6). A worker
whose mount namespace hides the run area (a machine without the shared volume) makes the stage
fail with one line naming the path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from service_fixtures import spark_standalone

from bench.naive_inference import random_weights
from components.orchestration.execution import execute, exit_on_known_error
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict

REPO = Path(__file__).resolve().parents[3]
LOGICAL_TIME = "2026-01-12T00:00:00Z"
PLANS = ("gather", "shuffle")  # the map-side plan and the MapReduce join


def _cfg(master: str, **overrides):
    raw = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    raw["spark"] = {"master": master, "shuffle_partitions": 4, "driver_memory": "1g", "app_name": "pinsage-tests"}
    raw["sampler"]["backend"] = "spark"
    raw["inference"] = {"backend": "spark", **overrides}
    return config_from_dict(raw)


def _run(stage_name: str, cfg, run: Path, base: Path, out: str | None = None) -> dict:
    """Run one stage into ``run/<out>``: inputs from ``run`` when produced there, else from ``base``."""
    stage = get_stage(stage_name)
    inputs = {n: (run / n if (run / n).exists() else base / n) for n in stage.inputs}
    ctx = StageContext.for_run_dir(run, LOGICAL_TIME)
    t0 = time.perf_counter()
    try:
        return execute(stage, cfg, inputs, run / (out or stage.name), ctx, force=True)
    finally:
        print(f"TIMING {stage_name} {out} {cfg.spark.master} {time.perf_counter() - t0:.1f}")


def _spark_run(master: str, run: Path, base: Path) -> None:
    """The four Spark stages on ``master``; embeddings with the gather and the shuffle plan.

    ``base`` holds the raw data; the features and the model the embeddings read are made there
    after the first run's graph (random: the stages under test only move them around).
    """
    for name in ("pairs", "graph"):
        _run(name, _cfg(master), run, base)
    if not (base / "model").exists():
        from pinsage_model.io import atomic_save_npy, atomic_save_npz, atomic_write_json

        n = _num_items(run)
        feats = np.random.default_rng(0).standard_normal((n, 24)).astype(np.float32)
        atomic_save_npy(base / "features" / "features.npy", feats)
        mcfg = {"num_layers": 2, "hidden_dim": 12, "output_dim": 16, "pooling": "importance", "input_dim": 24}
        atomic_save_npz(base / "model" / "weights.npz", **random_weights(mcfg, seed=11))
        atomic_write_json(base / "model" / "model_config.json", mcfg)
    _run("neighbourhoods", _cfg(master), run, base)
    for plan in PLANS:
        _run("embeddings", _cfg(master, spark_strategy=plan), run, base, out=f"embeddings-{plan}")


def _num_items(run: Path) -> int:
    from pinsage_model.graph.csr import CSRGraph

    return CSRGraph.load(run / "graph" / "graph.npz").num_items


def _outputs(run: Path) -> dict[str, bytes]:
    """Every file the Spark stages wrote, but their manifests and timings (they name the master)."""
    out = {}
    for f in sorted(p for p in run.rglob("*") if p.is_file()):
        rel = str(f.relative_to(run))
        if f.name == "report.json":
            rep = json.loads(f.read_bytes())
            for key in ("seconds", "full", "train"):  # neighbourhoods: per-graph wall-clock entries
                if isinstance(rep.get(key), dict):
                    rep[key] = {k: v for k, v in rep[key].items() if k not in ("seconds", "items_per_second")}
            rep.pop("seconds", None)
            out[rel] = json.dumps(rep, sort_keys=True).encode()
        elif f.name != "_fingerprint.json" and not rel.startswith("."):
            out[rel] = f.read_bytes()
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tiny preset's raw data."""
    base = tmp_path_factory.mktemp("cluster") / "base"
    _run("raw", _cfg("local[2]"), base, base)
    return base


@pytest.fixture
def small_tasks(monkeypatch):
    """Several tasks per job on 300 items: block ranges of a few dozen rows, small Parquet files."""
    from pinsage_model.spark import inference, sampler

    monkeypatch.setattr(inference, "_ROWS_PER_FILE", 64)
    monkeypatch.setattr(inference, "GATHER_BLOCK_ROWS", 32)
    monkeypatch.setitem(sampler.compute_neighbourhoods_spark.__kwdefaults__, "unit", 32)
    monkeypatch.setitem(sampler.compute_neighbourhoods_spark.__kwdefaults__, "task_rows", 64)


@pytest.fixture
def quick_jvms(monkeypatch):
    """New sessions (the cluster's) get the quick-start settings of short-lived JVMs for their
    driver and executors: no whole-stage code generation, client compiler only, serial GC (the
    Airflow tests' spark-defaults.conf); how a query is executed, not what it computes."""
    from pyspark.sql import SparkSession

    quick = {
        "spark.sql.codegen.wholeStage": "false",
        "spark.executor.defaultJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    }
    get_or_create = SparkSession.Builder.getOrCreate

    def with_quick_settings(builder):
        for key, value in quick.items():
            builder.config(key, value)
        return get_or_create(builder)

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", with_quick_settings)


def can_hide() -> bool:
    """Whether this machine lets a worker run in a mount namespace of its own."""
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "--mount", "true"]).returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and two workers; the second one cannot see ``hidden`` (None where no namespace
    can be made). Yields (master URL, daemons' folder, hidden folder)."""
    tmp = tmp_path_factory.mktemp("standalone")
    hidden = tmp / "hidden-area" if can_hide() else None
    if hidden is not None:
        hidden.mkdir()
    with spark_standalone(tmp, workers=2, hide=hidden, hiding=(1,)) as master:
        yield master, tmp, hidden


@pytest.mark.slow
def test_standalone_cluster_writes_what_local_writes(base, cluster, small_tasks, quick_jvms, tmp_path):
    master, daemons, _ = cluster
    local, remote = tmp_path / "local", tmp_path / "cluster"
    t0 = time.perf_counter()
    _spark_run("local[2]", local, base)
    t1 = time.perf_counter()
    _spark_run(master, remote, base)
    print(f"TIMING local[2] stages {t1 - t0:.1f} s, cluster stages {time.perf_counter() - t1:.1f} s")
    from pyspark.sql import SparkSession

    sc = SparkSession.getActiveSession().sparkContext
    assert sc.master == master and sc._jsc.sc().getExecutorMemoryStatus().size() - 1 == 2  # the driver is listed too
    # both workers ran executors of the app (their work folders hold its stdout/stderr)
    assert all(list((daemons / f"worker{i}").glob("app-*/*/stderr")) for i in range(2))

    want, got = _outputs(local), _outputs(remote)
    assert sorted(got) == sorted(want)
    assert {p.split("/")[0] for p in got} == {"pairs", "graph", "neighbourhoods", *(f"embeddings-{p}" for p in PLANS)}
    for rel in want:
        if rel.endswith(".npy") and rel.startswith("embeddings"):
            a, b = np.load(local / rel), np.load(remote / rel)
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-6, rel
        else:
            assert got[rel] == want[rel], rel


@pytest.mark.slow
def test_an_executor_that_cannot_see_the_run_area_names_the_path(base, cluster, capsys):
    master, _, hidden = cluster
    if hidden is None:
        pytest.skip("needs unshare(1) and the right to make a mount namespace (root, or user namespaces)")
    shutil.copytree(base / "raw", hidden / "raw")
    from pinsage_model.spark.session import get_spark

    sc = get_spark(_cfg(master).spark).sparkContext
    deadline = time.monotonic() + 60
    while sc._jsc.sc().getExecutorMemoryStatus().size() < 3:  # the driver and both executors
        assert time.monotonic() < deadline, "the two executors never registered"
        time.sleep(0.2)
    with pytest.raises(SystemExit):
        exit_on_known_error(_run, "pairs", _cfg(master), hidden / "run", hidden)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: {hidden / 'raw' / 'interactions.parquet'} does not exist on a Spark executor")
    assert "every executor mounts at the same path" in line
    assert not (hidden / "run" / "pairs").exists()
