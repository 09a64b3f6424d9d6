"""The pipeline's stages in order: their declarations and the context a front end gives them.

A stage is a module ``components.stages.<name>`` (the stage name, its module name and its output
folder are one name) with ``run(cfg, inputs, out_dir, ctx) -> report``:

* ``inputs`` maps each upstream stage name to that stage's output directory;
* ``out_dir`` is an empty temporary directory that :func:`components.orchestration.execution.execute` renames onto
  the stage's output directory only when ``run`` returns;
* ``ctx`` is the :class:`StageContext` of the run.

A stage that several processes run together (the model stage under ``train.strategy:
multi_worker``) also defines ``writes_outputs(cfg) -> bool``: False in the processes that take
part without writing the stage's outputs (:func:`components.orchestration.execution.execute` then runs ``run`` into
a private folder it discards).

A stage that changes state outside its output folder (the registration stage's MLflow runs) also
defines ``recover(cfg, ctx)``: :func:`components.orchestration.execution.execute` calls it under the
run directory's lock before deciding whether to run or skip the stage, so what a killed attempt
left behind is repaired even when the rerun finds the stage's outputs current.

The local runner, the Airflow DAG and the Kubeflow pipeline all read :data:`STAGES`, so they run
the same stages in the same order. Importing this package is cheap: stage modules import
TensorFlow, Spark and MLflow inside ``run``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PACKAGE = "components.stages"


@dataclass(frozen=True)
class StageContext:
    """What a front end tells a stage about the run it belongs to.

    Attributes:
      run_id: the run's name (local: the run directory's name; Airflow: the data interval;
        Kubeflow: the run name).
      logical_time: the instant the run stands for (UTC): Airflow's logical date, the KFP run's
        submission time, or for a local run ``SOURCE_DATE_EPOCH`` or its start. Stages use it
        instead of reading the clock, so a rerun writes the same manifests.
      scratch_dir: the stage's own folder for checkpoints, kept when the stage fails so a rerun
        with the same inputs resumes, and removed once it succeeds. Front ends give the run's
        scratch root; :func:`components.orchestration.execution.execute` narrows it to ``<root>/<stage>/<fingerprint>``.
      run_area: the folder successive runs share: the local MLflow store (``mlflow.db``,
        ``mlartifacts/``) when no tracking URI is set, and ``published/`` index roots when no
        ``index.publish_root`` is set.
    """

    run_id: str
    logical_time: dt.datetime
    scratch_dir: Path
    run_area: Path

    @classmethod
    def create(cls, run_area: str | Path, run_id: str, logical_time: dt.datetime | str) -> "StageContext":
        """The context of run ``run_id`` in ``run_area``; scratch in ``<run_area>/<run_id>/checkpoints``."""
        area = Path(run_area).resolve()
        return cls(run_id, parse_time(logical_time), area / run_id / "checkpoints", area)

    @classmethod
    def for_run_dir(cls, run_dir: str | Path, logical_time: dt.datetime | str) -> "StageContext":
        """The context of a run directory: its name is the run id, its parent the run area."""
        run_dir = Path(run_dir).resolve()
        return cls.create(run_dir.parent, run_dir.name, logical_time)

    def for_stage(self, stage: "Stage", fingerprint: str) -> "StageContext":
        """This context with the scratch folder of one stage and fingerprint."""
        return dataclasses.replace(self, scratch_dir=self.scratch_dir / stage.name / fingerprint[:16])

    def timestamp(self) -> str:
        """``logical_time`` as ISO 8601 UTC to the second, e.g. ``2026-01-12T00:00:00Z``."""
        return self.logical_time.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: dt.datetime | str) -> dt.datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO 8601 string (naive = UTC)."""
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage's declaration.

    Attributes:
      name: stage name used by ``--from``/``--to``, as the output folder under the run dir and as
        the module name under ``components.stages``.
      inputs: names of upstream stages whose outputs this stage reads.
      config_sections: config sections whose values change this stage's outputs (fingerprint).
      description: one line for ``--help``, progress output and the orchestrators' task docs.
      libraries: the slow-to-import modules ``run`` imports (TensorFlow takes ~5 s on 2 cores);
        the local runner imports them in the background while earlier stages run.
    """

    name: str
    inputs: tuple[str, ...]
    config_sections: tuple[str, ...]
    description: str
    libraries: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """The module that implements ``run`` (``python -m <module>`` runs the stage)."""
        return f"{PACKAGE}.{self.name}"

    def load_run(self) -> Callable:
        return importlib.import_module(self.module).run


STAGES: tuple[Stage, ...] = (
    Stage("raw", (), ("data",), "load or generate interactions and items into the data contracts"),
    Stage("pairs", ("raw",), ("pairs", "spark"), "cleaned interactions, engagement pairs and their splits (Spark)"),
    Stage("graph", ("raw", "pairs"), ("graph", "spark"), "item-collection CSR graph and training subgraph"),
    Stage(
        "features",
        ("raw", "graph"),
        ("features",),
        "TF Transform item features",
        ("tensorflow", "apache_beam", "tensorflow_transform.beam", "tfx_bsl.tfxio.parquet_tfxio"),
    ),
    Stage("neighbourhoods", ("graph",), ("sampler",), "random-walk importance neighbourhoods"),
    Stage(
        "model",
        ("graph", "features", "neighbourhoods"),
        ("model", "train", "sampler", "user_head"),
        "PinSage training (items, then the user head)",
        ("tensorflow",),
    ),
    Stage(
        "embeddings",
        ("graph", "features", "neighbourhoods", "model"),
        ("inference", "spark"),
        "layer-wise inference of item and collection embeddings",
    ),
    Stage(
        "evaluation",
        ("raw", "pairs", "graph", "features", "neighbourhoods", "embeddings"),
        ("evaluation", "sampler", "pairs"),
        "hit-rate, MRR, kurtosis vs baselines",
    ),
    Stage(
        "registration",
        ("raw", "graph", "model", "embeddings", "evaluation"),
        ("tracking", "index"),
        "faiss index version, MLflow run, servable model version (pyfunc over that index) and the promotion gate",
        ("mlflow",),
    ),
    Stage("index", ("registration",), ("index",), "faiss index publishing"),
)

STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name_or_module: str) -> Stage:
    """Look a stage up by name (``pairs``) or module (``components.stages.pairs``)."""
    for s in STAGES:
        if name_or_module in (s.name, s.module):
            return s
    raise KeyError(f"unknown stage '{name_or_module}'; stages are: {', '.join(STAGE_NAMES)}")


def select_stages(start: str | None, stop: str | None) -> list[Stage]:
    """Stages from ``start`` to ``stop`` inclusive, in pipeline order."""
    for name in (start, stop):
        if name is not None and name not in STAGE_NAMES:
            raise ValueError(f"unknown stage '{name}'; stages are: {', '.join(STAGE_NAMES)}")
    lo = STAGE_NAMES.index(start) if start else 0
    hi = STAGE_NAMES.index(stop) if stop else len(STAGE_NAMES) - 1
    if lo > hi:
        raise ValueError(f"--from {start} comes after --to {stop}")
    return list(STAGES[lo : hi + 1])


def pipeline_stages(stop_after: str = "") -> list[Stage]:
    """What a scheduled pipeline runs: the stages up to ``stop_after`` (all when empty)."""
    return select_stages(None, stop_after or None)
