"""Everything that talks to MLflow: client and tracking URI, experiment, logging, model versions,
aliases and the champion lookup.

Aliases, not stages (stages are deprecated since MLflow 2.9):

* ``challenger``: the newest registered version (set by :func:`register_model`);
* ``champion``: the version serving traffic (``models:/<name>@champion``); every move is
  appended to the registered model's ``champion_history`` tag, so :func:`rollback` can restore
  the previous one.

Where: ``MLFLOW_TRACKING_URI`` if set, else ``tracking.tracking_uri``, else a SQLite store
``<run area>/mlflow.db`` with artifacts in ``<run area>/mlartifacts`` (the run area is the folder
successive runs share, so they share one registry). A tracking server behind MLflow's basic-auth
app takes ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` from the environment (MLflow
reads them itself); they are never logged, and :func:`redacted` strips any credential written
into a URI before it is reported.

Each registered version is the pyfunc model of :mod:`components.registry.servable` (:func:`log_servable`):
the version's item embeddings, id map and faiss index, servable with ``mlflow models serve``.
The registration stage logs and gates (:func:`promote`, over the library's gate
:mod:`pinsage_model.evaluation.gate`); ``pinsage promote`` / ``rollback`` move the champion by hand,
and :func:`follow_champion` points a publish root's ``CURRENT`` at the champion's index.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pinsage_model.config import PipelineConfig, flatten

log = logging.getLogger("pinsage")

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
_MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why."""


def tracking_uri(cfg: PipelineConfig, run_area: str | Path) -> str:
    """``MLFLOW_TRACKING_URI`` > ``tracking.tracking_uri`` > ``sqlite:///<run area>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if env:
        return env
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    area = Path(run_area).resolve()
    area.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{area / 'mlflow.db'}"


def redacted(uri: str) -> str:
    """``uri`` without a ``user:password@`` part (what run folders and logs may show)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not parts.netloc or "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def client_for(cfg: PipelineConfig, run_area: str | Path):
    """An ``MlflowClient`` on the resolved tracking URI (also set as the fluent API's URI)."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(cfg, run_area)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI; left there, this run's store would pose as
    # the user's override and capture every later run of the process (another run area, another
    # registry). Only the fluent API's module state should change.
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous
    return MlflowClient(tracking_uri=uri)


def experiment_id(client, cfg: PipelineConfig, run_area: str | Path) -> str:
    """The experiment's id, created on first use; local stores get an explicit artifact location."""
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:") or client.tracking_uri.startswith("file:"):
        # Without this MLflow writes artifacts to ./mlruns of whatever the current folder is.
        location = (Path(run_area).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(cfg.tracking.experiment, artifact_location=location)


def log_params(cfg: PipelineConfig) -> None:
    """The resolved config, flattened (``train.batch_size`` ...), as params of the active run."""
    import mlflow

    params = {k: str(v)[:_MAX_PARAM_CHARS] for k, v in flatten(cfg).items()}
    items = sorted(params.items())
    for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        mlflow.log_params(dict(items[i : i + 100]))


def log_history(history: list[dict], prefix: str) -> None:
    """Per-epoch series of ``history.json`` (one dict per epoch) as ``<prefix><key>`` metrics, step = epoch."""
    import mlflow

    for step, epoch in enumerate(history):
        mlflow.log_metrics(
            {f"{prefix}{k}": float(v) for k, v in numeric_leaves(epoch).items() if k != "epoch"}, step=step
        )


def numeric_leaves(obj: Any, prefix: str = "") -> dict[str, float]:
    """Flatten nested dicts to ``a.b.c`` keys, keeping int/float leaves (bools dropped)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(numeric_leaves(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    return out


def log_servable(bundle: dict[str, Path], example_item: str, example_recent: list[str]):
    """Log the pyfunc model of :mod:`components.registry.servable` in the active run; returns its ``ModelInfo``.

    Args:
      bundle: artifact name -> file or folder (``index``: an index version of
        :mod:`pinsage_model.serving.index`, with its query shift and user head; the training
        outputs), copied into the model.
      example_item, example_recent: item ids of the input example (one related-items row, one
        homefeed row), which MLflow also runs through the model once as a check.

    The model's code is the file itself ("models from code", no pickle); the library it imports
    (``pinsage_model``) travels with it as code, so any environment with its pinned requirements
    loads it.
    """
    import mlflow

    import pinsage_model
    from components.registry import servable

    return mlflow.pyfunc.log_model(
        name="pinsage",
        python_model=servable.__file__,
        artifacts={k: str(v) for k, v in bundle.items()},
        code_paths=[str(Path(pinsage_model.__file__).parent)],
        signature=servable.signature(),
        input_example=(servable.input_example(example_item, example_recent), {"k": 5}),
        pip_requirements=SERVING_REQUIREMENTS,
    )


def _pin(package: str) -> str:
    from importlib.metadata import version

    return f"{package}=={version(package)}"


# What loading and serving the pyfunc imports (the versions of this environment).
SERVING_REQUIREMENTS = [_pin(p) for p in ("mlflow", "numpy", "pandas", "pyarrow", "faiss-cpu", "PyYAML")]


def register_model(client, name: str, run_id: str, tags: dict[str, str], model_id: str) -> int:
    """Register the logged model ``model_id`` (of run ``run_id``) as a version of ``name``, reusing
    one with the same ``model_fingerprint`` tag, and point ``challenger`` at it; returns the version."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="PinSage related items and homefeed (pyfunc over a faiss index)"
        )
    fp = tags["model_fingerprint"]
    existing = [v for v in client.search_model_versions(f"name='{name}'") if v.tags.get("model_fingerprint") == fp]
    if existing:
        mv = min(existing, key=lambda v: int(v.version))
        log.info("model %s already registered as version %s; not registering again", fp[:12], mv.version)
    else:
        mv = client.create_model_version(
            name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
        )
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    return int(mv.version)


def alias_version(client, name: str, alias: str) -> int | None:
    """The version an alias points at, or None when it points nowhere."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_tags(client, name: str, version: int) -> dict[str, str]:
    """The tags of one model version (the gate reads its metrics and split digest there)."""
    return dict(client.get_model_version(name, str(version)).tags)


def promote(client, name: str, version: int | None = None, tolerance: float = 0.0, force: bool = False):
    """Move ``champion`` to ``version`` (default: the ``challenger``) if it passes the promotion gate.

    Args:
      client: an ``MlflowClient``.
      name: registered model name.
      version: candidate version; the ``challenger`` alias when None.
      tolerance: allowed drop of each gate metric below the champion's.
      force: promote even if the gate fails (the decision still records why it failed).

    Returns:
      The :class:`pinsage_model.evaluation.gate.GateDecision`.
    """
    from pinsage_model.evaluation.gate import decide

    if version is None:
        version = alias_version(client, name, CHALLENGER)
        if version is None:
            raise RegistryError(f"registered model '{name}' has no '{CHALLENGER}' version; run the pipeline first")
    version = int(version)
    current = alias_version(client, name, CHAMPION)
    if current == version:  # nothing to compare, nothing to move
        return decide(version, {}, current, None, tolerance)
    champion_tags = version_tags(client, name, current) if current is not None else None
    decision = decide(version, version_tags(client, name, version), current, champion_tags, tolerance, force=force)
    if decision.promote:
        set_champion(client, name, version)
        log.info("%s: version %s is now %s (%s)", name, version, CHAMPION, decision.reason)
    else:
        log.info(
            "%s: version %s stays out; %s remains version %s (%s)", name, version, CHAMPION, current, decision.reason
        )
    return decision


def follow_champion(cfg: PipelineConfig, root: Path, run_area: str | Path) -> str | None:
    """Point ``<root>/CURRENT`` (a publish root of :mod:`pinsage_model.serving.index`) at the index
    built from the champion's weights, after a promotion or a rollback; returns that version, or
    None when no published index matches (CURRENT is then left alone)."""
    from pinsage_model.serving.index import find_version, set_current

    champion = champion_version(cfg, run_area=run_area)
    version = find_version(root, champion["tags"].get("model_fingerprint", "")) if champion else None
    if version is not None:
        set_current(root, version)
    return version


def history(client, name: str) -> list[int]:
    """Champion versions in the order they were promoted (last = current)."""
    return [int(v) for v in json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))]


def set_champion(client, name: str, version: int) -> None:
    """Point ``champion`` at ``version`` and append it to the champion history."""
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history(client, name) + [int(version)]))


def rollback(client, name: str) -> tuple[int, int]:
    """Point ``champion`` back at the previous champion; returns ``(from, to)`` versions."""
    hist = history(client, name)
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"registered model '{name}' has no {CHAMPION}; nothing to roll back")
    if hist and hist[-1] == current:
        hist = hist[:-1]
    if not hist:
        raise RegistryError(f"'{name}' version {current} is the first {CHAMPION}; there is no previous one")
    client.set_registered_model_alias(name, CHAMPION, str(hist[-1]))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(hist))
    log.info("%s: %s rolled back from version %s to %s", name, CHAMPION, current, hist[-1])
    return current, hist[-1]


def champion_uri(name: str) -> str:
    """The registry URI serving reads: ``models:/<name>@champion``."""
    return f"models:/{name}@{CHAMPION}"


def champion_version(cfg: PipelineConfig, run_area: str | Path) -> dict | None:
    """The current champion, or None when there is none (or no registered model).

    Returns:
      ``{"version": int, "run_id", "source", "uri": "models:/<name>@champion", "tags": {...}}``.
      Download its files with :func:`download_champion`.
    """
    from mlflow.exceptions import MlflowException

    client = client_for(cfg, run_area)
    name = cfg.tracking.registered_model
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return {
        "version": int(mv.version),
        "run_id": mv.run_id,
        "source": mv.source,
        "uri": champion_uri(name),
        "tags": dict(mv.tags),
    }


def download_champion(cfg: PipelineConfig, dst: str | Path, run_area: str | Path) -> Path:
    """Download the champion's pyfunc model into ``dst``; returns the folder of its bundled files
    (``weights.npz``, ``model_config.json``, the index version ...)."""
    import mlflow

    client_for(cfg, run_area)
    Path(dst).mkdir(parents=True, exist_ok=True)
    model = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=champion_uri(cfg.tracking.registered_model), dst_path=str(dst))
    )
    return model / "artifacts"
