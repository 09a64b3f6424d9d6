"""Typed, frozen pipeline configuration loaded from YAML.

One schema validates every config file before any stage runs: an unknown key or a value of the
wrong type raises :class:`ConfigError` naming the key path and the file. Each section is a frozen
dataclass with defaults beside the code; ``load_config`` returns the resolved tree, and
``config_to_dict`` turns it back into plain YAML-able data (saved with every run, logged as MLflow
params).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration file does not match the schema."""


@dataclass(frozen=True)
class DataConfig:
    """Where the raw inputs come from.

    ``source`` picks the loader: ``synthetic`` generates the preset, ``movielens`` reads a
    MovieLens folder, ``adjacency`` reads "user item item ..." train/test files, ``table`` reads
    generic CSV/Parquet interactions plus an optional item table.

    Relative paths resolve against the working directory, then the repository root. ``path`` is
    the MovieLens folder, or for ``adjacency`` a folder with ``train.txt``/``test.txt``
    (``interactions_path``/``test_path`` name the files directly). The ``*_column`` fields map a
    generic table's columns (``table`` source); empty collection/weight columns mean
    ``collection_id`` / ``weight`` or ``rating`` when present.

    Bad-input rules (README, "Bad input"): timestamps later than the run's logical time plus
    ``future_tolerance_s`` are quarantined; ``timestamp_unit`` is the unit of integer timestamps
    (``auto``: detected from their magnitude, with a note in the report); test pairs that also
    occur in train are an error unless ``allow_leaks``.
    """

    source: Literal["synthetic", "movielens", "adjacency", "table"] = "synthetic"
    preset: Literal["demo", "bench", "tiny"] = "demo"
    path: str = ""
    interactions_path: str = ""
    items_path: str = ""
    test_path: str = ""
    item_vectors_path: str = ""
    item_vector_ids_path: str = ""
    seed: int = 0
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str = "timestamp"
    collection_column: str = ""
    weight_column: str = ""
    vector_column: str = "features"
    future_tolerance_s: int = 86_400
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"
    allow_leaks: bool = False


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[2]"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    app_name: str = "pinsage"


@dataclass(frozen=True)
class PairsConfig:
    """Engagement pairs (paper 4.1): consecutive distinct items of a user within ``max_gap_s``."""

    max_gap_s: int = 86400
    min_rating: float | None = None
    min_item_support: int = 1
    # temporal (default): each user's latest events (temporal_scope "user") or the events after
    # a global time cut ("global") are validation and test, and only earlier events reach the
    # graph; hash: a seeded hash of the unordered pair decides (paper-style), the graph holds
    # every event. fractions: (train, validation, test) shares of events (temporal) or pairs (hash).
    split: Literal["temporal", "hash"] = "temporal"
    temporal_scope: Literal["user", "global"] = "user"
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    # Training pairs also join each event to its next ``train_window`` - 1 events after the
    # successor (each within max_gap_s of the event): a wider co-engagement context, as a
    # skip-gram window, for data whose consecutive events are only loosely ordered (ratings
    # entered in bulk). Validation and test pairs stay consecutive: the protocol is unchanged.
    train_window: int = 1


@dataclass(frozen=True)
class GraphConfig:
    """Bipartite item-collection graph; the training subgraph keeps a fraction of collections."""

    train_collection_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class FeaturesConfig:
    """TF Transform feature stage (Beam DirectRunner locally)."""

    # Beam runner of the analysis: "DirectRunner" runs it on this machine (Beam's FnApiRunner);
    # a cluster names its runner ("FlinkRunner", "SparkRunner", "DataflowRunner") and passes
    # that runner's flags in ``beam_options``.
    beam_runner: str = "DirectRunner"
    # Extra Beam pipeline flags, verbatim, e.g. ["--flink_master=host:8081",
    # "--environment_type=LOOPBACK"]; the analysis temp folder must be reachable by the workers.
    beam_options: tuple[str, ...] = ()
    # DirectRunner only: how bundles run and on how many workers (0 = one per core). in_memory
    # is the fastest on 2 cores (bench/results/features.json: 24.5 s vs 28.9 s multi_threading and
    # 35.1 s multi_processing at 1M items): the analysis is ~10 s of the stage, less than what
    # more workers cost (each multi_processing worker imports TensorFlow).
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "in_memory"
    direct_num_workers: int = 1
    # Rows per Arrow record batch fed to the analysis (one Parquet shard each): large enough
    # that TF runs the analysis graph on big batches, small enough to spread over workers.
    batch_rows: int = 65536
    text_hash_buckets: int = 64
    categorical_vocab_top_k: int = 200
    categorical_oov_buckets: int = 1
    id_embedding_dim: int = 16
    missing_features: Literal["id_embedding", "zeros"] = "id_embedding"


@dataclass(frozen=True)
class SamplerConfig:
    """Random-walk importance neighbourhoods (paper 3.2) and PPR hard negatives (3.3).

    ``backend`` picks where the neighbourhoods stage runs the walks: ``numba`` in process on
    ``num_threads`` threads (0 = all cores), or ``spark``: one Spark job whose tasks are seed
    ranges, each running the same kernel on the graph memory-mapped from the run area
    (:mod:`pinsage_model.spark.sampler`; master from ``spark.master``, ``spark.task.cpus``
    threads per task), for graphs whose walks outgrow one machine. Rows depend only on (graph,
    item, ``seed``), so both backends write byte-identical files.
    """

    num_walks: int = 200
    walk_length: int = 10
    restart_prob: float = 0.5
    top_t: int = 50
    backend: Literal["numba", "spark"] = "numba"
    num_threads: int = 0
    hard_negative_band: tuple[float, float] = (0.02, 0.05)
    hard_negative_walks: int = 400
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """PinSage network (paper 3.2): K conv layers of width m (pooling space) and d (output)."""

    num_layers: int = 2
    hidden_dim: int = 128
    output_dim: int = 64
    pooling: Literal["importance", "mean", "max"] = "importance"
    # > 0: a learned id embedding of this width is concatenated to every item's features
    # (transductive; items never trained keep their small random initialisation). 0 = the
    # paper's purely feature-based, inductive model (the features stage may still request one
    # for items that have no features at all).
    id_embedding_dim: int = 0
    # Identity table of the learned id embedding: 0 = one row per item; B > 0 = B rows shared
    # through ``id_num_hashes`` seeded hash functions (an item's vector is the sum of its rows),
    # so the table stays bounded at web scale. Items absent from the training graph get no
    # identity (feature-only path): their id vector is zero.
    id_hash_buckets: int = 0
    id_num_hashes: int = 2
    # A learned vector w added to every query embedding: a candidate's score z_q·z_c gains w·z_c,
    # a per-candidate prior (how often an item is engaged next, whatever the query) that unit
    # vectors compared by cosine cannot express. Candidates stay unit vectors, so one inner-product
    # index serves related items (query z_q + w) and homefeed (user vector + w).
    query_shift: bool = False


@dataclass(frozen=True)
class UserHeadConfig:
    """A learned user (collection) vector for homefeed: PinSage's convolution over the user's items.

    With ``enabled``, the model stage fits, after the item model and on its frozen item
    embeddings, ``u = p + relu(p W1 + b1) W2`` where ``p`` is the recency-weighted
    mean of the user's item embeddings, and a user query shift ``w_u``; a homefeed query is
    ``u + w_u``. The objective is the one a deployment faces: from each training user's earlier
    items predict the later ones (softmax over all items, the user's input items masked, as
    evaluation masks training items). Off: collections are the uniform mean of their items.
    """

    enabled: bool = False
    hidden_dim: int = 256
    # recency importance exp(-age / h), age = how many of the user's items came later; 0 = uniform
    recency_half_life: float = 0.0
    steps: int = 2000
    batch_size: int = 128
    lr: float = 0.001
    # a training example's input is the first fraction f ~ U[min_input_fraction, 1) of the user's
    # items in time order, its targets the rest
    min_input_fraction: float = 0.5
    # candidates of the softmax: 0 = every item; K > 0 = a shared uniform sample of K items per step
    # plus the step's targets (for catalogues too large to score in full each step)
    negatives: int = 0
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Training (paper 3.3): max-margin loss, shared negatives, hard-negative curriculum."""

    epochs: int = 6
    batch_size: int = 256
    # Peak learning rate is base_lr * batch_size / 256 (linear scaling rule). 1e-2 rather than
    # 1e-3: on the tiny synthetic run validation hit@10 after 4 epochs was 0.12 vs 0.065.
    base_lr: float = 1e-2
    lr_decay: float = 0.9
    margin: float = 0.1
    # How Eq. 1 is reduced over an example's negatives (pinsage_model.model.loss.max_margin_loss).
    margin_reduction: Literal["mean", "mean_per_source", "sum"] = "mean"
    num_negatives: int = 500
    max_hard_negatives: int = 6
    use_hard_negatives: bool = True
    loss: Literal["max_margin", "xent"] = "max_margin"
    # mirrored: tf.distribute.MirroredStrategy over num_devices devices of this machine.
    # multi_worker: tf.distribute.MultiWorkerMirroredStrategy over the workers that TF_CONFIG
    # names, num_devices GPUs each (1 on CPU), so a model outgrowing one box trains on several
    # (paper 3.3 trains on one machine; this is the scale-out path). Every worker runs the same
    # stage on the same inputs; only the chief writes its outputs (training.worker_role).
    strategy: Literal["mirrored", "multi_worker"] = "mirrored"
    num_devices: int = 1
    producer_threads: int = 2
    queue_size: int = 8
    early_stopping_patience: int = 2
    validation_pairs: int = 2000
    steps_per_epoch: int = 0
    deterministic: bool = False
    seed: int = 0
    # Softmax temperature of the cross-entropy ablation loss (embeddings are unit vectors).
    xent_temperature: float = 0.1
    # xent only: the other examples' positives are negatives too, and logits are corrected by
    # -log Q (expected draws of the item as a candidate; Yi et al. 2019).
    in_batch_negatives: bool = False
    logq_correction: bool = False
    # Train on (i, q) as well as (q, i): embeddings are compared by a symmetric cosine.
    reverse_pairs: bool = False
    # Early-stopping evaluation ranks each validation positive among all items when there are at
    # most this many, else among this many sampled items plus the positives.
    eval_candidates: int = 20000


@dataclass(frozen=True)
class InferenceConfig:
    """Layer-wise inference (paper 3.4): in process (``numpy``) or as Spark jobs.

    ``spark_strategy`` picks how the Spark backend joins projections with neighbourhoods
    (``pinsage_model.spark.inference``): ``shuffle`` (MapReduce join, any scale), ``broadcast``
    or ``gather`` (map-side, when the (N, hidden_dim) projections fit ``spark_broadcast_max_mb``);
    ``auto`` uses ``gather`` when they fit and ``shuffle`` otherwise.
    """

    backend: Literal["numpy", "spark"] = "numpy"
    batch_size: int = 4096  # rows per block of the numpy backend: cache-sized, see inference.embed_all
    spark_strategy: Literal["auto", "shuffle", "broadcast", "gather"] = "auto"
    spark_broadcast_max_mb: int = 1024


@dataclass(frozen=True)
class EvaluationConfig:
    """Offline evaluation (paper 4.2).

    ``candidate_pool`` 0 ranks against all items, n > 0 against a seeded sample of n items;
    pools above ``exact_max_pool`` use faiss top-k. ``max_pairs`` > 0 evaluates a seeded sample of
    that many pairs per split. Graph baselines (pixie, popularity, itemknn, svd, ease) read the
    ``baseline_graph`` ("full", the default: the graph PinSage's inference uses, so baselines see
    everything PinSage sees and are as strong as they can be; "train": the training subgraph).
    User-level metrics (adjacency data with a test file, or the temporal split of user-item data)
    use ``user_ks`` and the user's ``recent_items`` latest training items (0 = all of them). ``ease`` inverts a dense N x N matrix (about
    12 N^2 bytes): above ``ease_max_items`` items it is skipped with a note in the report.
    """

    ks: tuple[int, ...] = (10, 50, 100)
    candidate_pool: int = 0
    mrr_scale: float = 1.0
    similarity_pairs: int = 100000
    baselines: tuple[str, ...] = ("content", "pixie", "popularity", "itemknn", "svd", "ease")
    seed: int = 0
    exact_max_pool: int = 200000
    max_pairs: int = 0
    baseline_graph: Literal["train", "full"] = "full"
    svd_dim: int = 64
    pixie_walks: int = 1000
    # EASE's L2 weight lambda. Steck used 500 on ML-20M; validation hit@10 is flat from 250 to
    # 1000 on ml-latest-small (0.065-0.066) and on the demo data rises to 1000 and stays
    # (0.102 at 500, 0.111 at 1000, 0.113 at 5000), so 1000 suits both.
    ease_lambda: float = 1000.0
    # Above this many items EASE is skipped (the inverse is dense: 20k items need ~4.5 GiB).
    ease_max_items: int = 20000
    user_ks: tuple[int, ...] = (20,)
    recent_items: int = 0


@dataclass(frozen=True)
class IndexConfig:
    """faiss index publishing (paper 3.5).

    ``publish_root`` is the persistent folder that keeps every published version and the serving
    ``CURRENT`` pointer across runs; empty means ``<run dir>/../published/<run dir name>``
    (beside the run directories, so successive runs into one run dir share one history). The run's own
    ``index/`` folder holds a copy of the version that run published.

    ``keep_versions`` > 0 prunes the publish root after each publish down to that many newest
    versions, never the serving one and never one younger than ``prune_grace_s`` seconds (readers
    that resolved ``CURRENT`` just before a switch may still be loading it); 0 keeps every
    version. Keep enough for ``pinsage rollback`` to find the previous champion's index.
    """

    exact_threshold: int = 200000
    kind: Literal["hnsw", "ivf"] = "hnsw"
    hnsw_m: int = 32
    ef_search: int = 128
    ivf_nlist: int = 1024
    ivf_nprobe: int = 32
    recall_floor: float = 0.95
    recall_queries: int = 1000
    publish_root: str = ""
    keep_versions: int = 0
    prune_grace_s: int = 3600


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking; an empty URI means a SQLite store inside the run area."""

    enabled: bool = True
    tracking_uri: str = ""
    experiment: str = "pinsage"
    registered_model: str = "pinsage"
    promotion_tolerance: float = 0.0


@dataclass(frozen=True)
class OrchestrationConfig:
    """Airflow DAG and Kubeflow pipeline settings.

    ``run_root`` holds one run directory per data interval (``<run_root>/<interval>``) and the
    local MLflow store; ``start_date`` (ISO date, UTC) is the DAG's first data interval;
    ``stop_after`` names the last stage the DAG and the Kubeflow pipeline run (empty: all), e.g.
    ``pairs`` for a data-only schedule.
    """

    schedule: str = "@weekly"
    retries: int = 2
    retry_delay_s: int = 300
    start_date: str = "2026-01-05"
    run_root: str = "runs/airflow"
    stop_after: str = ""
    image: str = "ghcr.io/pinsage/pinsage:0.1.0"
    submit_to_kfp: bool = False
    kfp_host: str = ""
    # Kubeflow only: N > 0 makes the pipeline's model task a launcher (components.orchestration.tfjob) that
    # runs the model stage as a Training Operator TFJob of N workers (train.num_devices GPUs
    # each; needs train.strategy multi_worker) on the shared run area, built from the manifest
    # tfjob_template (relative: to the working directory, then the repository root); 0 trains
    # inside the pipeline task itself.
    tfjob_workers: int = 0
    tfjob_template: str = "infra/training/tfjob.yaml"


@dataclass(frozen=True)
class PipelineConfig:
    """The whole pipeline's configuration."""

    name: str = "pinsage"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    user_head: UserHeadConfig = field(default_factory=UserHeadConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the dataclass's form."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{source}: key '{where}' expects {expected}, got {type(value).__name__} {value!r}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail("a mapping")
        return _build(tp, value, where, source)
    if origin is Literal:
        if value not in args:
            raise fail("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, source)
            except ConfigError as exc:
                errors.append(exc)
        raise fail(" or ".join(_type_name(a) for a in args))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_type_name(tp)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise fail(f"a list of {len(args)} items")
        return tuple(_coerce(v, a, f"{where}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("a boolean")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    raise ConfigError(f"{source}: key '{where}' has an unsupported type {tp!r}")


def _build(cls: type, raw: dict, prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{source}: unknown key '{key}'; allowed here: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in raw.items():
        where = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], where, source)
    obj = cls(**kwargs)
    _check_values(obj, prefix, source)
    return obj


def _check_values(obj: Any, prefix: str, source: str) -> None:
    """Range checks that types alone cannot express."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: key '{prefix + '.' if prefix else ''}{key}' {why}")

    if isinstance(obj, DataConfig) and obj.future_tolerance_s < 0:
        raise bad("future_tolerance_s", f"must be >= 0, got {obj.future_tolerance_s}")
    if isinstance(obj, PairsConfig):
        if abs(sum(obj.fractions) - 1.0) > 1e-6 or min(obj.fractions) < 0:
            raise bad("fractions", f"must be three non-negative fractions summing to 1, got {obj.fractions}")
        if obj.train_window < 1:
            raise bad("train_window", f"must be >= 1 (1 = consecutive pairs only), got {obj.train_window}")
    if isinstance(obj, GraphConfig) and not 0.0 < obj.train_collection_fraction <= 1.0:
        raise bad("train_collection_fraction", "must be in (0, 1]")
    if isinstance(obj, SamplerConfig):
        if obj.top_t < 1 or obj.num_walks < 1:
            raise bad("top_t", "and num_walks must be >= 1")
        if not 0.0 <= obj.restart_prob < 1.0:
            raise bad("restart_prob", "must be in [0, 1)")
    if isinstance(obj, UserHeadConfig):
        if obj.hidden_dim < 1 or obj.steps < 1 or obj.batch_size < 1 or obj.negatives < 0:
            raise bad("hidden_dim", "steps and batch_size must be >= 1 and negatives >= 0")
        if not 0.0 <= obj.min_input_fraction < 1.0 or obj.recency_half_life < 0 or obj.lr <= 0:
            raise bad("min_input_fraction", "must be in [0, 1), recency_half_life >= 0 and lr > 0")
    if isinstance(obj, FeaturesConfig):
        if obj.direct_num_workers < 0 or obj.batch_rows < 1:
            raise bad(
                "direct_num_workers",
                f"must be >= 0 and batch_rows >= 1, got {obj.direct_num_workers} and {obj.batch_rows}",
            )
        if obj.direct_running_mode == "in_memory" and obj.direct_num_workers != 1:
            raise bad("direct_num_workers", "must be 1 with direct_running_mode in_memory (one in-process worker)")
    if isinstance(obj, TrainConfig):
        if obj.batch_size < 1:
            raise bad("batch_size", "must be >= 1")
        if obj.num_devices < 1:
            raise bad("num_devices", f"must be >= 1, got {obj.num_devices}")
    if isinstance(obj, OrchestrationConfig) and obj.tfjob_workers < 0:
        raise bad("tfjob_workers", f"must be >= 0 (0 = train inside the pipeline task), got {obj.tfjob_workers}")
    if isinstance(obj, PipelineConfig) and obj.orchestration.tfjob_workers and obj.train.strategy != "multi_worker":
        raise ConfigError(
            f"{source}: key 'orchestration.tfjob_workers' = {obj.orchestration.tfjob_workers} launches a multi-worker "
            f"TFJob, which needs train.strategy: multi_worker (got {obj.train.strategy!r})"
        )
    if isinstance(obj, IndexConfig) and (obj.keep_versions < 0 or obj.prune_grace_s < 0):
        raise bad("keep_versions", f"and prune_grace_s must be >= 0, got {obj.keep_versions} and {obj.prune_grace_s}")


def load_config(path: str | Path, overrides: dict | None = None) -> PipelineConfig:
    """Load and validate a YAML config; ``overrides`` is a nested dict applied on top."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    if overrides:
        raw = _merge(raw, overrides)
    return _build(PipelineConfig, raw, "", str(path))


def config_from_dict(raw: dict, source: str = "<dict>") -> PipelineConfig:
    """Validate an already-parsed mapping (same rules as :func:`load_config`)."""
    return _build(PipelineConfig, raw, "", source)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples as lists) for YAML/JSON dumps and fingerprints."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def flatten(cfg: Any) -> dict[str, Any]:
    """``{"train.batch_size": 256, ...}``: the form logged as MLflow params."""
    return _flatten_dict(config_to_dict(cfg), "")


def _flatten_dict(d: dict, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def save_resolved(cfg: PipelineConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from pinsage_model.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
