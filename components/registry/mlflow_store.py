"""Everything that talks to MLflow: client and tracking URI, experiment, logging, model versions,
aliases and the champion lookup.

Aliases, not stages (stages are deprecated since MLflow 2.9):

* ``challenger``: the newest registered version (set by :func:`register_model`);
* ``champion``: the version serving traffic (``models:/<name>@champion``); every move is
  appended to the registered model's ``champion_history`` tag, so :func:`rollback` can restore
  the previous one.

The champion and a publish root's ``CURRENT`` change together (:func:`switch_champion`, under
:func:`champion_transaction`: the registered model's lock, then the publish root's): the
champion's index version is in the root before the alias moves, the alias moves only if it
still names the champion the decision was made against (compare-and-swap), and ``CURRENT``
follows in the same step, or the alias goes back. Each version records the index version it
serves (``index_version`` tag) and the gate's decision when it was first gated
(``gate_decision``), so registering the same model again neither makes a second version nor
gates it anew.

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
and :func:`follow_champion` points a publish root's ``CURRENT`` at the champion's index (what the
index stage does, so an old run's index task never moves production backwards).
"""

from __future__ import annotations

import contextlib
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
# Version tags: the index version the model serves, and the gate's decision when it was first gated.
INDEX_TAG = "index_version"
DECISION_TAG = "gate_decision"
# Run tag naming the registered model a registration run logs for (orphaned runs are found by it).
MODEL_TAG = "pinsage.registered_model"
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
    db = _sqlite_file(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    from pinsage_model.locks import held

    # The first client of a new SQLite store creates its tables: two processes doing it at once
    # collide, so they take turns.
    with held(db.parent / f".{db.name}.lock", f"MLflow store {db}", cfg.orchestration.lock_timeout_s):
        return MlflowClient(tracking_uri=uri)


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, else None."""
    from urllib.parse import urlsplit

    return Path(urlsplit(uri).path).resolve() if uri.startswith("sqlite:///") else None


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


def log_servable(bundle: dict[str, Path], example_item: str, example_recent: list[str], limits: dict[str, int]):
    """Log the pyfunc model of :mod:`components.registry.servable` in the active run; returns its ``ModelInfo``.

    Args:
      bundle: artifact name -> file or folder (``index``: an index version of
        :mod:`pinsage_model.serving.index`, with its query shift and user head; the training
        outputs), copied into the model.
      example_item, example_recent: item ids of the input example (one related-items row, one
        homefeed row), which MLflow also runs through the model once as a check.
      limits: the request limits the model enforces (its ``model_config``:
        ``max_ids_per_row``, ``max_rows``).

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
        # no signature: MLflow infers it from predict's type hints (Query in, Answer out), and the
        # example's params give the k parameter its type and default
        input_example=(servable.input_example(example_item, example_recent), {"k": servable.DEFAULT_K}),
        pip_requirements=SERVING_REQUIREMENTS,
        model_config=dict(limits),
    )


def _pin(package: str) -> str:
    from importlib.metadata import version

    return f"{package}=={version(package)}"


# What loading and serving the pyfunc imports (the versions of this environment).
SERVING_REQUIREMENTS = [_pin(p) for p in ("mlflow", "numpy", "pandas", "pyarrow", "faiss-cpu", "PyYAML")]


def registry_lock(client, name: str, run_area: str | Path, timeout_s: float):
    """The lock of registered model ``name`` (:mod:`pinsage_model.locks`): the gate's decision, the
    alias moves, the history tag and new versions happen under it. Beside a SQLite store's file;
    for a server, in ``<run area>/.locks`` (keyed by the URI without credentials), so every
    attempt sharing that run area (the cluster's shared volume) takes the same one."""
    from pinsage_model.io import json_digest
    from pinsage_model.locks import held

    uri = client.tracking_uri
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    db = _sqlite_file(uri)
    if db is not None:
        lock = db.parent / f".{db.name}.{safe}.lock"
    else:
        lock = Path(run_area).resolve() / ".locks" / f"registry-{json_digest(redacted(uri))[:12]}-{safe}.lock"
    return held(lock, f"registered model '{name}' ({redacted(uri)})", timeout_s)


@contextlib.contextmanager
def champion_transaction(client, name: str, run_area: str | Path, root: Path | None, timeout_s: float):
    """Hold the registered model's lock and then the publish root's (always in this order, so two
    transactions never wait on each other crosswise): what :func:`promote`, :func:`rollback` and
    :func:`follow_champion` expect their caller to hold."""
    from pinsage_model.serving.index import publish_lock

    with registry_lock(client, name, run_area, timeout_s):
        with publish_lock(root, timeout_s) if root is not None else contextlib.nullcontext():
            yield


def fail_orphan_runs(client, experiment: str, name: str) -> list[str]:
    """Mark FAILED the registration runs of ``name`` still RUNNING (their process was killed): under
    :func:`registry_lock` no other registration is logging. Returns their ids."""
    runs = client.search_runs(
        [experiment], filter_string=f"attributes.status = 'RUNNING' and tags.`{MODEL_TAG}` = '{name}'"
    )
    for run in runs:
        log.warning(
            "%s: MLflow run %s was left RUNNING by a killed registration; marking it FAILED", name, run.info.run_id
        )
        client.set_terminated(run.info.run_id, status="FAILED")
    return [r.info.run_id for r in runs]


def version_with_fingerprint(client, name: str, fingerprint: str):
    """The oldest version of ``name`` registered with ``model_fingerprint`` = ``fingerprint``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return None
    same = [v for v in client.search_model_versions(f"name='{name}'") if v.tags.get("model_fingerprint") == fingerprint]
    return min(same, key=lambda v: int(v.version)) if same else None


def register_model(client, name: str, run_id: str, tags: dict[str, str], model_id: str) -> int:
    """Register the logged model ``model_id`` (of run ``run_id``) as a version of ``name``, reusing
    one with the same ``model_fingerprint`` tag, and point ``challenger`` at it; returns the version.

    Called under :func:`registry_lock`. Should another registry client (outside this lock) have
    registered the same fingerprint meanwhile, the newer duplicate is deleted: one version per
    model fingerprint."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="PinSage related items and homefeed (pyfunc over a faiss index)"
        )
    fp = tags["model_fingerprint"]
    mv = version_with_fingerprint(client, name, fp)
    if mv is not None:
        log.info("model %s already registered as version %s; not registering again", fp[:12], mv.version)
    else:
        created = client.create_model_version(
            name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
        )
        mv = version_with_fingerprint(client, name, fp)
        if mv is not None and mv.version != created.version:
            client.delete_model_version(name, created.version)
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


def recorded_decision(client, name: str, version: int):
    """The gate's decision recorded on ``version`` when it was first gated, or None: registering
    the same model again reports that decision instead of gating it anew (idempotent)."""
    from pinsage_model.evaluation.gate import GateDecision

    tags = version_tags(client, name, version)
    if DECISION_TAG not in tags:
        return None
    d = json.loads(tags[DECISION_TAG])
    return GateDecision(d["promote"], d["reason"], int(version), d["champion"])


def promote(
    client,
    name: str,
    version: int | None = None,
    tolerance: float = 0.0,
    force: bool = False,
    root: Path | None = None,
    record: bool = False,
):
    """Move ``champion`` to ``version`` (default: the ``challenger``) if it passes the promotion gate,
    and the publish root's ``CURRENT`` with it (:func:`switch_champion`).

    The caller holds :func:`champion_transaction`. A version the registry gated before (its
    :func:`recorded_decision`) is not gated again: the recorded decision is completed if a kill
    interrupted it, and returned.

    Args:
      client: an ``MlflowClient``.
      name: registered model name.
      version: candidate version; the ``challenger`` alias when None.
      tolerance: allowed drop of each gate metric below the champion's.
      force: promote even if the gate fails (the decision still records why it failed).
      root: the publish root whose ``CURRENT`` follows the champion (None: the alias only).
      record: record the decision on the version (the pipeline's gate; not a hand promotion).

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
    recorded = recorded_decision(client, name, version) if record else None
    if recorded is not None and not (recorded.promote and current == recorded.champion):
        follow_champion(client, name, root)  # decided before: at most CURRENT lags behind
        return recorded
    if recorded is None and current == version:  # nothing to compare, nothing to move
        follow_champion(client, name, root)
        return decide(version, {}, current, None, tolerance)
    champion_tags = version_tags(client, name, current) if current is not None else None
    decision = recorded or decide(
        version, version_tags(client, name, version), current, champion_tags, tolerance, force=force
    )
    if record and recorded is None:
        client.set_model_version_tag(name, str(version), DECISION_TAG, json.dumps(decision.as_dict()))
    if decision.promote:
        switch_champion(client, name, version, expected=current, root=root)
        log.info("%s: version %s is now %s (%s)", name, version, CHAMPION, decision.reason)
    else:
        follow_champion(client, name, root)
        log.info(
            "%s: version %s stays out; %s remains version %s (%s)", name, version, CHAMPION, current, decision.reason
        )
    return decision


def switch_champion(
    client, name: str, version: int, expected: int | None, root: Path | None, history_after: list[int] | None = None
) -> None:
    """Point ``champion`` at ``version`` and ``<root>/CURRENT`` at its index, as one step.

    Compare-and-swap: nothing moves unless ``champion`` still is ``expected``. The index version is
    in the root before the alias moves (restored from the registry if it is missing there, or
    :class:`RegistryError`); if ``CURRENT`` then cannot be switched, the alias and the history go
    back. The caller holds :func:`champion_transaction`.

    Args:
      history_after: the champion history to record (default: the history plus ``version``).
    """
    index = ensure_index(client, name, version, root) if root is not None else None
    now = alias_version(client, name, CHAMPION)
    if now != expected:
        raise RegistryError(
            f"'{name}' {CHAMPION} moved from version {expected} to {now} meanwhile; nothing switched, rerun"
        )
    before = history(client, name)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history_after or before + [int(version)]))
    if index is None or root is None:
        return
    from pinsage_model.serving.index import set_current

    try:
        set_current(root, index)
    except BaseException:
        if expected is None:
            client.delete_registered_model_alias(name, CHAMPION)
        else:
            client.set_registered_model_alias(name, CHAMPION, str(expected))
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(before))
        raise


def ensure_index(client, name: str, version: int, root: Path) -> str:
    """The name of ``version``'s index version, installed in ``root``: restored from the copy
    bundled in the registered model when the root lacks it (pruned, another root);
    :class:`RegistryError` when the model has none."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from pinsage_model.serving.index import MANIFEST_FILE, VERSIONS, IndexVersionError, install_version

    index = version_tags(client, name, version).get(INDEX_TAG, "")
    if not index:
        raise RegistryError(f"'{name}' version {version} records no index version ({INDEX_TAG} tag); cannot serve it")
    if (root / VERSIONS / index / MANIFEST_FILE).exists():
        return index
    log.info("%s: index %s of version %s is not in %s; restoring it from the registry", name, index, version, root)
    with tempfile.TemporaryDirectory(prefix="pinsage-restore-") as tmp:
        try:
            model = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp, tracking_uri=client.tracking_uri
            )
            # log_servable bundled the version's folder, named by the version, as an artifact
            install_version(Path(model) / "artifacts" / index, root, name=index)
        except (OSError, IndexVersionError, MlflowException) as exc:
            raise RegistryError(
                f"'{name}' version {version}: its index {index} is not in {root} and "
                f"could not be restored from the registry ({exc})"
            ) from None
    return index


def follow_champion(client, name: str, root: Path | None) -> str | None:
    """Point ``<root>/CURRENT`` at the champion's index (restored from the registry if missing);
    returns that index version, or None without a root or a champion. The caller holds
    :func:`champion_transaction`: this repairs a ``CURRENT`` that a killed switch left behind,
    and never moves it to anything but the champion."""
    from pinsage_model.serving.index import set_current

    champion = alias_version(client, name, CHAMPION)
    if root is None or champion is None:
        return None
    index = ensure_index(client, name, champion, root)
    set_current(root, index)
    return index


def history(client, name: str) -> list[int]:
    """Champion versions in the order they were promoted (last = current)."""
    return [int(v) for v in json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))]


def rollback(client, name: str, root: Path | None = None) -> tuple[int, int]:
    """Point ``champion`` back at the previous champion, and ``CURRENT`` with it; returns ``(from,
    to)`` versions. The caller holds :func:`champion_transaction`; :class:`RegistryError` when there
    is no previous champion or its index can be neither found nor restored (nothing moves)."""
    hist = history(client, name)
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"registered model '{name}' has no {CHAMPION}; nothing to roll back")
    if hist and hist[-1] == current:
        hist = hist[:-1]
    if not hist:
        raise RegistryError(f"'{name}' version {current} is the first {CHAMPION}; there is no previous one")
    switch_champion(client, name, hist[-1], expected=current, root=root, history_after=hist)
    log.info("%s: %s rolled back from version %s to %s", name, CHAMPION, current, hist[-1])
    return current, hist[-1]


def protected_indexes(client, name: str, keep: int) -> set[str]:
    """The index versions of the champion and of the ``keep`` latest champions before it (rollback
    targets): what pruning a publish root must leave."""
    champions = history(client, name)[-(keep + 1) :]
    current = alias_version(client, name, CHAMPION)
    wanted = set(champions) | ({current} if current is not None else set())
    return {version_tags(client, name, v).get(INDEX_TAG, "") for v in wanted} - {""}


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
