"""Typed, frozen pipeline configuration loaded from YAML (pydantic v2).

One schema validates every config file before any stage runs: each section is a frozen pydantic
model with ``extra="forbid"``, field constraints and defaults beside the code, so an unknown key,
a wrong type or a value out of range raises :class:`ConfigError` naming the file, the key path
(``train.batch_size``) and what is allowed. Where a key's meaning depends on another, the schema
nests it: the loss's parameters live under ``train.loss`` (``kind: xent`` or ``kind:
max_margin``), the approximate index's under ``index.ann`` (``kind: hnsw`` or ``kind: ivf``).

The defaults are the tuned general-purpose settings (those of ml-latest-small, see
``configs/ml-latest-small.yaml``): a config file only states what it changes. One top-level
``seed``; each stage derives its own with :meth:`PipelineConfig.seed_for`.

``load_config`` returns the resolved tree; ``config_to_dict`` turns it back into plain YAML-able
data (saved with every run, logged as MLflow params); ``config_diff`` keeps only what differs
from the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

# Scalars are strict (no "3" for 3, no 1 for true, no 2.5 for an int); a float also takes an int.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
PosInt = Annotated[int, Strict(), Field(gt=0)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
PosFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegFloat = Annotated[float, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1)]


class ConfigError(ValueError):
    """A configuration file does not match the schema."""


class _KeyedError(ValueError):
    """A cross-field rule broken; ``key`` (relative to the model that checks it) is to blame."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    """A frozen config section: unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def replace(self, **changes: Any) -> Any:
        """A validated copy with ``changes`` applied (as ``dataclasses.replace``)."""
        return type(self).model_validate({**dict(self), **changes})


class DataConfig(Section):
    """Where the raw inputs come from.

    ``source`` picks the loader: ``synthetic`` generates the preset, ``movielens`` reads a
    MovieLens folder, ``adjacency`` reads "user item item ..." train/test files, ``table`` reads
    generic CSV/Parquet interactions plus an optional item table.

    Relative paths resolve against the working directory, then the repository root. ``path`` is
    the MovieLens folder, or for ``adjacency`` a folder with ``train.txt``/``test.txt``
    (``interactions_path``/``test_path`` name the files directly). The ``*_column`` fields map a
    generic table's columns (``table`` source); empty collection/weight columns mean
    ``collection_id`` / ``weight`` or ``rating`` when present.

    Bad-input rules (docs/bad-input.md): timestamps later than the run's logical time plus
    ``future_tolerance_s`` are quarantined; ``timestamp_unit`` is the unit of integer timestamps
    (``auto``: detected from their magnitude, with a note in the report); test pairs that also
    occur in train are an error unless ``allow_leaks``.
    """

    source: Literal["synthetic", "movielens", "adjacency", "table"] = "synthetic"
    preset: Literal["demo", "bench", "tiny"] = "demo"  # synthetic only
    path: Str = ""
    interactions_path: Str = ""
    items_path: Str = ""
    test_path: Str = ""
    item_vectors_path: Str = ""
    item_vector_ids_path: Str = ""
    user_column: Str = "user_id"
    item_column: Str = "item_id"
    # "": the table has no time column; events are then unordered (a seeded random hold-out)
    timestamp_column: Str = "timestamp"
    collection_column: Str = ""
    weight_column: Str = ""
    vector_column: Str = "features"
    future_tolerance_s: NonNegInt = 86_400
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"
    allow_leaks: Bool = False
    seed: int = 0  # derived: PipelineConfig.seed_for("data")


class SparkConfig(Section):
    master: Str = "local[2]"
    driver_memory: Str = "4g"
    shuffle_partitions: PosInt = 4
    app_name: Str = "pinsage"


class PairsConfig(Section):
    """Engagement pairs (paper 4.1): consecutive distinct items of a user within ``max_gap_s``."""

    max_gap_s: PosInt = 86400
    min_rating: Float | None = None
    min_item_support: PosInt = 1
    # temporal (default): each user's latest events (temporal_scope "user") or the events after
    # a global time cut ("global") are validation and test, and only earlier events reach the
    # graph; hash: a seeded hash of the unordered pair decides (paper-style), the graph holds
    # every event. fractions: (train, validation, test) shares of events (temporal) or pairs (hash).
    split: Literal["temporal", "hash"] = "temporal"
    temporal_scope: Literal["user", "global"] = "user"
    fractions: tuple[Fraction, Fraction, Fraction] = (0.7, 0.1, 0.2)
    # Training pairs also join each event to its next ``train_window`` - 1 events after the
    # successor (each within max_gap_s of the event): a wider co-engagement context, as a
    # skip-gram window, for data whose consecutive events are only loosely ordered (ratings
    # entered in bulk). Validation and test pairs stay consecutive: the protocol is unchanged.
    train_window: Annotated[int, Strict(), Field(ge=1)] = 1
    seed: int = 0  # derived: PipelineConfig.seed_for("pairs")

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"must be three non-negative fractions summing to 1, got {list(v)}")
        return v


class GraphConfig(Section):
    """Bipartite item-collection graph; the training subgraph keeps a fraction of collections."""

    train_collection_fraction: Annotated[float, Strict(), Field(gt=0, le=1)] = 1.0
    seed: int = 0  # derived: PipelineConfig.seed_for("graph")


class FeaturesExperimental(Section):
    """Feature encodings no shipped config, search or ablation has changed: widths of the
    title's hashed word buckets and of each categorical column's vocabulary (top-k plus OOV)."""

    text_hash_buckets: PosInt = 64
    categorical_vocab_top_k: PosInt = 200
    categorical_oov_buckets: NonNegInt = 1


class FeaturesConfig(Section):
    """TF Transform feature stage (Beam DirectRunner locally)."""

    # Beam runner of the analysis: "DirectRunner" runs it on this machine (Beam's FnApiRunner);
    # a cluster names its runner ("FlinkRunner", "SparkRunner", "DataflowRunner") and passes
    # that runner's flags in ``beam_options``.
    beam_runner: Str = "DirectRunner"
    # Extra Beam pipeline flags, verbatim, e.g. ["--flink_master=host:8081",
    # "--environment_type=LOOPBACK"]; the analysis temp folder must be reachable by the workers.
    beam_options: tuple[Str, ...] = ()
    # DirectRunner only: how bundles run and on how many workers (0 = one per core). in_memory
    # is the fastest on 2 cores (bench/results/features.json: 24.5 s vs 28.9 s multi_threading and
    # 35.1 s multi_processing at 1M items): the analysis is ~10 s of the stage, less than what
    # more workers cost (each multi_processing worker imports TensorFlow).
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "in_memory"
    direct_num_workers: NonNegInt = 1
    # Rows per Arrow record batch fed to the analysis (one Parquet shard each): large enough
    # that TF runs the analysis graph on big batches, small enough to spread over workers.
    batch_rows: PosInt = 65536
    # width of the id embedding the features stage asks for items without features (when
    # model.id_embedding_dim is 0; otherwise the model's own id embedding serves them)
    id_embedding_dim: PosInt = 16
    missing_features: Literal["id_embedding", "zeros"] = "id_embedding"
    experimental: FeaturesExperimental = Field(default_factory=FeaturesExperimental)

    @model_validator(mode="after")
    def _in_memory_is_one_worker(self) -> FeaturesConfig:
        if self.direct_running_mode == "in_memory" and self.direct_num_workers != 1:
            raise _KeyedError(
                "direct_num_workers", "must be 1 with direct_running_mode in_memory (one in-process worker)"
            )
        return self


class SamplerConfig(Section):
    """Random-walk importance neighbourhoods (paper 3.2) and PPR hard negatives (3.3).

    ``backend`` picks where the neighbourhoods stage runs the walks: ``numba`` in process on
    ``num_threads`` threads (0 = all cores), or ``spark``: one Spark job whose tasks are seed
    ranges, each running the same kernel on the graph memory-mapped from the run area
    (:mod:`pinsage_model.spark.sampler`; master from ``spark.master``, ``spark.task.cpus``
    threads per task), for graphs whose walks outgrow one machine. Rows depend only on (graph,
    item, seed), so both backends write byte-identical files.

    ``hard_negative_band`` is (lo, hi), fractions of the item count: hard negatives are drawn
    from the PPR ranks [floor(lo N), floor(hi N)) of the query (the paper's ranks 2000-5000 of
    its catalogue are a band of fractions of it).
    """

    num_walks: PosInt = 200
    walk_length: PosInt = 5
    restart_prob: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.5
    top_t: PosInt = 20
    backend: Literal["numba", "spark"] = "numba"
    num_threads: NonNegInt = 0
    hard_negative_band: tuple[Fraction, Fraction] = (0.02, 0.06)
    hard_negative_walks: PosInt = 400
    seed: int = 0  # derived: PipelineConfig.seed_for("sampler")

    @field_validator("hard_negative_band")
    @classmethod
    def _band_order(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"must be (lo, hi) with lo < hi, got {list(v)}")
        return v


class ModelConfig(Section):
    """PinSage network (paper 3.2): K conv layers of width m (pooling space) and d (output)."""

    num_layers: PosInt = 2
    hidden_dim: PosInt = 128
    output_dim: PosInt = 64
    pooling: Literal["importance", "mean", "max"] = "importance"
    # > 0: a learned id embedding of this width is concatenated to every item's features
    # (transductive; items never trained keep their small random initialisation). 0 = the
    # paper's purely feature-based, inductive model (the features stage may still request one
    # for items that have no features at all).
    id_embedding_dim: NonNegInt = 32
    # Identity table of the learned id embedding: 0 = one row per item; B > 0 = B rows shared
    # through ``id_num_hashes`` seeded hash functions (an item's vector is the sum of its rows),
    # so the table stays bounded at web scale. Items absent from the training graph get no
    # identity (feature-only path): their id vector is zero.
    id_hash_buckets: NonNegInt = 0
    id_num_hashes: PosInt = 2
    # A learned vector w added to every query embedding: a candidate's score z_q·z_c gains w·z_c,
    # a per-candidate prior (how often an item is engaged next, whatever the query) that unit
    # vectors compared by cosine cannot express. Candidates stay unit vectors, so one inner-product
    # index serves related items (query z_q + w) and homefeed (user vector + w).
    query_shift: Bool = False


class UserHeadExperimental(Section):
    """User-head knobs no shipped config, search or ablation has changed."""

    # a training example's input is the first fraction f ~ U[min_input_fraction, 1) of the user's
    # items in time order, its targets the rest
    min_input_fraction: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.5
    # candidates of the softmax: 0 = every item; K > 0 = a shared uniform sample of K items per step
    # plus the step's targets (for catalogues too large to score in full each step)
    negatives: NonNegInt = 0


class UserHeadConfig(Section):
    """A learned user (collection) vector for homefeed: PinSage's convolution over the user's items.

    With ``enabled``, the model stage fits, after the item model and on its frozen item
    embeddings, ``u = p + relu(p W1 + b1) W2`` where ``p`` is the recency-weighted
    mean of the user's item embeddings, and a user query shift ``w_u``; a homefeed query is
    ``u + w_u``. The objective is the one a deployment faces: from each training user's earlier
    items predict the later ones (softmax over all items, the user's input items masked, as
    evaluation masks training items). Off: collections are the uniform mean of their items.
    """

    enabled: Bool = True
    hidden_dim: PosInt = 256
    # recency importance exp(-age / h), age = how many of the user's items came later; 0 = uniform
    recency_half_life: NonNegFloat = 10.0
    steps: PosInt = 2000
    batch_size: PosInt = 128
    lr: PosFloat = 0.001
    experimental: UserHeadExperimental = Field(default_factory=UserHeadExperimental)
    seed: int = 0  # derived: PipelineConfig.seed_for("user_head")


class MaxMarginLoss(Section):
    """The paper's max-margin loss (Eq. 1) over shared and hard negatives."""

    kind: Literal["max_margin"] = "max_margin"
    margin: PosFloat = 0.1
    # How Eq. 1 is reduced over an example's negatives (pinsage_model.model.loss.max_margin_loss).
    reduction: Literal["mean", "mean_per_source", "sum"] = "mean"


class XentLoss(Section):
    """Sampled softmax cross-entropy over the negatives (embeddings are unit vectors)."""

    kind: Literal["xent"] = "xent"
    temperature: PosFloat = 0.1
    # the other examples' positives are negatives too (drawn by popularity), and logits are
    # corrected by -log Q (expected draws of the item as a candidate; Yi et al. 2019)
    in_batch_negatives: Bool = True
    logq_correction: Bool = True


def _loss_kind(v: Any) -> Any:
    """``loss: xent`` is short for ``loss: {kind: xent}``."""
    return {"kind": v} if isinstance(v, str) else v


Loss = Annotated[Union[MaxMarginLoss, XentLoss], Discriminator("kind")]


class TrainExperimental(Section):
    """Training knobs no shipped config, search or ablation has changed: the user term's
    neighbourhoods (``user_loss_weight`` > 0)."""

    # a training user's neighbourhood: at most this many of its input items, the most important
    # (latest) first; a cost cap of the producer (evaluation pools over all of a user's items)
    user_neighbours: PosInt = 50
    # user importance exp(-age / h), age = how many of the user's input items came later; 0 =
    # uniform (data without times is always uniform)
    user_recency_half_life: NonNegFloat = 10.0


class TrainConfig(Section):
    """Training (paper 3.3): the loss, shared negatives, hard-negative curriculum.

    ``user_loss_weight`` w > 0 adds a user->item term: every step also draws ``batch_size``
    training users (collections of the training graph), each a query node whose neighbourhood is
    its input items; its vector is the last layer's convolution over their layer-(K-1)
    representations (a learned vector in place of the user's own features) and the model's head,
    and its target a held-out one of its training items (the next one after the input where the
    data has times), scored with the item loss's negatives and log-Q correction. The loss is
    item loss + w * user loss, and homefeed user vectors are that convolution
    (:mod:`pinsage_model.model.users`). 0 = the item loss alone.
    """

    epochs: PosInt = 10
    batch_size: PosInt = 256
    # Peak learning rate is base_lr * batch_size / 256 (linear scaling rule), reached over the
    # first epoch, then decayed by pinsage_model.model.schedule.EPOCH_DECAY per epoch.
    base_lr: PosFloat = 0.003
    loss: Loss = Field(default_factory=XentLoss)
    num_negatives: PosInt = 500
    max_hard_negatives: NonNegInt = 6
    use_hard_negatives: Bool = True
    # mirrored: tf.distribute.MirroredStrategy over num_devices devices of this machine.
    # multi_worker: tf.distribute.MultiWorkerMirroredStrategy over the workers that TF_CONFIG
    # names, num_devices GPUs each (1 on CPU), so a model outgrowing one box trains on several
    # (paper 3.3 trains on one machine; this is the scale-out path). Every worker runs the same
    # stage on the same inputs; only the chief writes its outputs (training.worker_role).
    strategy: Literal["mirrored", "multi_worker"] = "mirrored"
    num_devices: PosInt = 1
    # Threads building minibatches; 0 = half the cores, at least one. The producer's kernels and
    # TensorFlow's ops share the cores: on 2 cores one thread measured faster than two.
    producer_threads: NonNegInt = 0
    queue_size: PosInt = 8
    early_stopping_patience: NonNegInt = 2
    validation_pairs: NonNegInt = 10000
    steps_per_epoch: NonNegInt = 0
    deterministic: Bool = False
    # Early-stopping evaluation ranks each validation positive among all items when there are at
    # most this many, else among this many sampled items plus the positives.
    eval_candidates: PosInt = 20000
    # 1.0: chosen on the validation users of ml-latest-small and yelp2018-subset together (issue
    # #25; docs/results.md): homefeed recall/NDCG@20 rose on both, item->item held level
    user_loss_weight: NonNegFloat = 1.0
    experimental: TrainExperimental = Field(default_factory=TrainExperimental)
    seed: int = 0  # derived: PipelineConfig.seed_for("train")

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_shorthand(cls, v: Any) -> Any:
        return _loss_kind(v)


class InferenceConfig(Section):
    """Layer-wise inference (paper 3.4): in process (``numpy``) or as Spark jobs.

    ``spark_strategy`` picks how the Spark backend joins projections with neighbourhoods
    (``pinsage_model.spark.inference``): ``shuffle`` (MapReduce join, any scale), ``broadcast``
    or ``gather`` (map-side, when the (N, hidden_dim) projections fit ``spark_broadcast_max_mb``);
    ``auto`` uses ``gather`` when they fit and ``shuffle`` otherwise.
    """

    backend: Literal["numpy", "spark"] = "numpy"
    batch_size: PosInt = 4096  # rows per block of the numpy backend: cache-sized, see inference.embed_all
    spark_strategy: Literal["auto", "shuffle", "broadcast", "gather"] = "auto"
    spark_broadcast_max_mb: PosInt = 1024


class EvaluationConfig(Section):
    """Offline evaluation (paper 4.2).

    ``candidate_pool`` 0 ranks against all items, n > 0 against a seeded sample of n items;
    pools above ``exact_max_pool`` use faiss top-k. ``max_pairs`` > 0 evaluates a seeded sample of
    that many pairs per split. Graph baselines (pixie, popularity, itemknn, svd, ease) read the
    ``baseline_graph`` ("full", the default: the graph PinSage's inference uses, so baselines see
    everything PinSage sees and are as strong as they can be; "train": the training subgraph).
    User-level metrics (adjacency data with a test file, or the temporal split of user-item data)
    use ``user_ks`` and the user's ``recent_items`` latest training items (0 = all of them).
    ``ease`` inverts a dense N x N matrix (8 N^2 bytes at the peak, blocked on 64-bit BLAS; about
    N^3 / 40 GFLOP/s seconds on 2 cores: 20 min at 37.6k items): above ``ease_max_items`` items it
    is skipped with a note in the report.
    """

    ks: Annotated[tuple[PosInt, ...], Field(min_length=1)] = (10, 50, 100)
    candidate_pool: NonNegInt = 0
    mrr_scale: PosFloat = 1.0
    similarity_pairs: PosInt = 100000
    baselines: tuple[Str, ...] = ("content", "pixie", "popularity", "itemknn", "svd", "ease")
    exact_max_pool: PosInt = 200000
    max_pairs: NonNegInt = 0
    baseline_graph: Literal["train", "full"] = "full"
    svd_dim: PosInt = 64
    pixie_walks: PosInt = 1000
    # EASE's L2 weight lambda. Steck used 500 on ML-20M; validation hit@10 is flat from 250 to
    # 1000 on ml-latest-small (0.065-0.066) and on the demo data rises to 1000 and stays
    # (0.102 at 500, 0.111 at 1000, 0.113 at 5000), so 1000 suits both.
    ease_lambda: PosFloat = 1000.0
    # Above this many items EASE is skipped (the inverse is dense: 20k items need ~3 GiB and
    # about 3 min on 2 cores; 40k items ~12 GiB and about 25 min).
    ease_max_items: PosInt = 20000
    user_ks: Annotated[tuple[PosInt, ...], Field(min_length=1)] = (20,)
    recent_items: NonNegInt = 0
    seed: int = 0  # derived: PipelineConfig.seed_for("evaluation")


class HnswIndex(Section):
    """faiss HNSW graph: ``m`` links per node, ``ef_search`` candidates per query."""

    kind: Literal["hnsw"] = "hnsw"
    m: PosInt = 32
    ef_search: PosInt = 128


class IvfIndex(Section):
    """faiss inverted file: ``nlist`` clusters, ``nprobe`` of them scanned per query."""

    kind: Literal["ivf"] = "ivf"
    nlist: PosInt = 1024
    nprobe: PosInt = 32


class IndexConfig(Section):
    """faiss index publishing (paper 3.5).

    Below ``exact_threshold`` items the index is exact inner product; from there on it is the
    approximate ``ann`` index (``kind: hnsw`` or ``kind: ivf`` with that kind's parameters),
    checked against ``recall_floor`` on ``recall_queries`` queries.

    ``publish_root`` is the persistent folder that keeps every published version and the serving
    ``CURRENT`` pointer across runs; empty means ``<run dir>/../published/<run dir name>``
    (beside the run directories, so successive runs into one run dir share one history). The run's own
    ``index/`` folder holds a copy of the version that run published.

    ``keep_versions`` > 0 prunes the publish root after each publish down to that many newest
    versions, never the champion's, never those of the ``keep_versions`` champions before it
    (rollback targets) and never one installed or serving within the last ``prune_grace_s``
    seconds of wall-clock time (readers that resolved ``CURRENT`` just before a switch may still
    be loading it); 0 keeps every version. ``pinsage rollback`` restores a pruned champion's index
    from the registry.
    """

    exact_threshold: NonNegInt = 200000
    ann: Annotated[Union[HnswIndex, IvfIndex], Discriminator("kind")] = Field(default_factory=HnswIndex)
    recall_floor: Fraction = 0.95
    recall_queries: PosInt = 1000
    publish_root: Str = ""
    keep_versions: NonNegInt = 0
    prune_grace_s: NonNegInt = 3600
    # What one request to the registered model may ask (components.registry.servable): query ids
    # per row (a user's recent items) and rows per request; k is 1..1000 in any case.
    max_ids_per_row: Annotated[int, Strict(), Field(ge=1, le=100_000)] = 500
    max_rows_per_request: Annotated[int, Strict(), Field(ge=1, le=1_000_000)] = 1000

    @field_validator("ann", mode="before")
    @classmethod
    def _ann_shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v


class TrackingConfig(Section):
    """MLflow tracking; an empty URI means a SQLite store inside the run area."""

    enabled: Bool = True
    tracking_uri: Str = ""
    experiment: Str = "pinsage"
    registered_model: Str = "pinsage"
    promotion_tolerance: NonNegFloat = 0.0


class OrchestrationConfig(Section):
    """Airflow DAG and Kubeflow pipeline settings.

    ``run_root`` holds one run directory per data interval (``<run_root>/<interval>``) and the
    local MLflow store; ``start_date`` (ISO date, UTC) is the DAG's first data interval;
    ``stop_after`` names the last stage the DAG and the Kubeflow pipeline run (empty: all), e.g.
    ``pairs`` for a data-only schedule.
    """

    schedule: Str = "@weekly"
    retries: NonNegInt = 2
    retry_delay_s: NonNegInt = 300
    start_date: Str = "2026-01-05"
    run_root: Str = "runs/airflow"
    stop_after: Str = ""
    image: Str = "ghcr.io/pinsage/pinsage:0.1.0"
    submit_to_kfp: Bool = False
    kfp_host: Str = ""
    # Kubeflow only: N > 0 makes the pipeline's model task a launcher (components.orchestration.tfjob) that
    # runs the model stage as a Training Operator TFJob of N workers (train.num_devices GPUs
    # each; needs train.strategy multi_worker) on the shared run area, built from the manifest
    # tfjob_template (relative: to the working directory, then the repository root); 0 trains
    # inside the pipeline task itself.
    tfjob_workers: NonNegInt = 0
    tfjob_template: Str = "infra/training/tfjob.yaml"
    # How long an attempt waits for another one holding the run directory, the publish root or the
    # registered model (pinsage_model.locks) before it gives up naming the holder; 0 = not at all.
    lock_timeout_s: NonNegInt = 6 * 3600


# Offsets of each stage's seed from the top-level one (seed_for). The synthetic data and the
# split keep the seed itself (so data sets split as they always have: the split's only random
# draw is a tie-break or a hash, never the generator's stream); the others differ so that no two
# stages that draw from a random stream replay the same one. Sections with a
# ``seed`` field receive theirs when the config is validated.
SEED_OFFSETS: dict[str, int] = {
    "data": 0,
    "pairs": 0,
    "graph": 2,
    "sampler": 3,
    "model": 4,
    "train": 5,
    "user_head": 6,
    "evaluation": 7,
    "index": 8,
}

# Keys that change how fast or where a stage runs, never what it writes: left out of the stage
# fingerprints (components.orchestration.execution), so changing them reruns nothing.
OUTPUT_NEUTRAL: frozenset[str] = frozenset(
    {
        "spark.driver_memory",
        "spark.app_name",
        "sampler.num_threads",
        "sampler.backend",  # both backends write byte-identical neighbourhoods (SamplerConfig)
        "features.direct_num_workers",
        "train.producer_threads",
        "train.queue_size",
    }
)


class PipelineConfig(Section):
    """The whole pipeline's configuration."""

    name: Str = "pinsage"
    seed: NonNegInt = 0
    data: DataConfig = Field(default_factory=DataConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    user_head: UserHeadConfig = Field(default_factory=UserHeadConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)

    def seed_for(self, stage: str) -> int:
        """The seed of ``stage``'s random draws: the top-level seed plus the stage's offset."""
        return self.seed + SEED_OFFSETS[stage]

    @model_validator(mode="before")
    @classmethod
    def _derive_seeds(cls, raw: Any) -> Any:
        """Give every seeded section its derived seed; a section may not set its own."""
        if not isinstance(raw, dict):
            return raw
        seed = raw.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            return raw  # the field's own check names the bad top-level seed
        out = dict(raw)
        for section, field in cls.model_fields.items():
            if "seed" not in getattr(field.annotation, "model_fields", {}) or section not in SEED_OFFSETS:
                continue
            value = out.get(section, {})
            derived = seed + SEED_OFFSETS[section]
            if isinstance(value, BaseModel):
                out[section] = value.model_copy(update={"seed": derived})
            elif isinstance(value, dict):
                if "seed" in value:
                    raise _KeyedError(
                        f"{section}.seed", "is derived from the top-level seed (seed_for); set `seed` at the top level"
                    )
                out[section] = {**value, "seed": derived}
        return out

    @model_validator(mode="after")
    def _the_gate_can_decide(self) -> PipelineConfig:
        """With tracking the promotion gate compares hit_rate_at_10 and MRR on the validation split:
        both must be computed, or every model would be refused forever."""
        if not self.tracking.enabled:
            return self
        if GATE_K not in self.evaluation.ks:
            raise _KeyedError(
                "evaluation.ks",
                f"must include {GATE_K} while tracking.enabled is true: the promotion gate compares "
                f"hit_rate_at_{GATE_K} on the validation split (got {list(self.evaluation.ks)})",
            )
        if self.pairs.fractions[1] <= 0:
            raise _KeyedError(
                "pairs.fractions",
                "needs a validation share > 0 while tracking.enabled is true: the promotion gate compares "
                f"validation metrics (got {list(self.pairs.fractions)})",
            )
        return self

    @model_validator(mode="after")
    def _sampler_fits_the_graph(self) -> PipelineConfig:
        """``top_t`` and the hard-negative band against the item count, where the config knows it
        (the synthetic presets); other data sets are checked by the stages that read the graph."""
        if self.data.source != "synthetic":
            return self
        from pinsage_model.data.synthetic import PRESETS

        check_sampler(self.sampler, PRESETS[self.data.preset].num_items, "sampler.", self.train.use_hard_negatives)
        return self

    @model_validator(mode="after")
    def _tfjob_needs_multi_worker(self) -> PipelineConfig:
        if self.orchestration.tfjob_workers and self.train.strategy != "multi_worker":
            raise _KeyedError(
                "orchestration.tfjob_workers",
                f"= {self.orchestration.tfjob_workers} launches a multi-worker TFJob, which needs "
                f"train.strategy: multi_worker (got {self.train.strategy!r})",
            )
        return self


# The promotion gate's k (pinsage_model.evaluation.gate.GATE_METRICS: hit_rate_at_10 and MRR).
GATE_K = 10


def check_sampler(
    sampler: SamplerConfig, num_items: int, prefix: str = "sampler.", hard_negatives: bool = True
) -> None:
    """Raise a ValueError naming the key when ``top_t`` or (with ``hard_negatives``) the
    hard-negative band cannot work on a graph of ``num_items`` items (the neighbourhoods stage
    calls it with the real count)."""
    if sampler.top_t >= num_items:
        raise _KeyedError(
            f"{prefix}top_t",
            f"= {sampler.top_t} must be below the number of items ({num_items}): a neighbourhood excludes the item",
        )
    lo, hi = (math.floor(f * num_items) for f in sampler.hard_negative_band)
    if hard_negatives and hi <= lo:
        raise _KeyedError(
            f"{prefix}hard_negative_band",
            f"= {list(sampler.hard_negative_band)} holds no PPR rank of {num_items} items "
            f"(ranks [{lo}, {hi})); widen it",
        )


# --- errors ---------------------------------------------------------------------------------------

_EXPECTS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "string_type": "a string",
    "tuple_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
}


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, dict[str, type[BaseModel]]]:
    """(the section model, or {tag: model} of a tagged union) an annotation holds."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, {}
    members = getattr(annotation, "__args__", ())
    for arg in members:  # Annotated[Union[...], Discriminator] -> Union[...]
        _, tags = _model_of(arg)
        if tags:
            return None, tags
    tagged: dict[str, type[BaseModel]] = {
        m.model_fields["kind"].default: m for m in members if isinstance(m, type) and issubclass(m, Section)
    }
    return None, tagged


def _describe(error: Any) -> tuple[str, type[BaseModel] | None, Any]:
    """An error's key path (``train.loss.temperature``; union tags dropped), the model there and
    the field's annotation."""
    parts: list[str] = []
    model: type[BaseModel] | None = PipelineConfig
    tags: dict[str, type[BaseModel]] = {}
    annotation: Any = PipelineConfig
    for elem in error["loc"]:
        if isinstance(elem, int):
            parts[-1] += f"[{elem}]"
            continue
        if tags:  # a tagged union's loc names the tag before the member's fields
            model, tags = tags.get(elem), {}
            continue
        parts.append(str(elem))
        field = model.model_fields.get(elem) if model else None
        annotation = field.annotation if field else None
        model, tags = _model_of(annotation) if field else (None, {})
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyedError):
        parts.append(ctx_error.key)
    return ".".join(parts), model, annotation


def _config_error(exc: ValidationError, source: str) -> ConfigError:
    error = exc.errors()[0]
    kind, given, loc = error["type"], error.get("input"), error["loc"]
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a tuple of fixed length too short
        key, _, annotation = _describe({**error, "loc": loc[:-1]})
        return ConfigError(f"{source}: key '{key}' expects a list of {len(annotation.__args__)} items")
    key, model, annotation = _describe(error)
    if kind == "extra_forbidden":
        _, parent, _ = _describe({**error, "loc": loc[:-1]})
        allowed = ", ".join(f for f in parent.model_fields if not _derived(parent, f)) if parent else ""
        return ConfigError(f"{source}: unknown key '{key}'; allowed here: {allowed}")
    if kind == "union_tag_not_found":
        tags = ", ".join(repr(t) for t in _model_of(annotation)[1])
        return ConfigError(f"{source}: key '{key}' needs a 'kind': one of {tags}")
    if kind in ("literal_error", "union_tag_invalid"):
        ctx = error.get("ctx") or {}
        expected = str(ctx.get("expected_tags") or ctx.get("expected")).replace(" or ", ", ")
        if kind == "union_tag_invalid":
            given = ctx.get("tag")
        return ConfigError(f"{source}: key '{key}' expects one of {expected}, got {given!r}")
    if kind in _EXPECTS:
        return ConfigError(f"{source}: key '{key}' expects {_EXPECTS[kind]}, got {type(given).__name__} {given!r}")
    if kind in ("too_short", "too_long") and "max_length" not in (error.get("ctx") or {}):
        return ConfigError(f"{source}: key '{key}' expects a non-empty list, got {given!r}")
    if kind in ("too_short", "too_long"):
        return ConfigError(f"{source}: key '{key}' expects a list of {error['ctx']['max_length']} items, got {given!r}")
    message = error["msg"].removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if kind != "value_error":
        message = f"must be {message.removeprefix('input should be ')}, got {given!r}"
    return ConfigError(f"{source}: key '{key}' {message}")


# --- loading and dumping ------------------------------------------------------------------------


def config_from_dict(raw: dict, source: str = "<dict>") -> PipelineConfig:
    """Validate an already-parsed mapping (same rules as :func:`load_config`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, source) from None


def load_config(path: str | Path, overrides: dict | None = None, sets: Sequence[str] = ()) -> PipelineConfig:
    """Load and validate a YAML config; ``overrides`` is a nested dict applied on top, then the
    command line's ``sets`` (``section.key=value``, :func:`parse_sets`). An error the sets
    introduce names the ``--set`` key, one the file holds the file."""
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
    return config_with_sets(raw, str(path), sets)


def config_with_sets(raw: dict, source: str, sets: Sequence[str] = ()) -> PipelineConfig:
    """Validate ``raw`` (errors name ``source``), then ``raw`` with the command line's ``sets``
    applied (errors name ``--set``)."""
    cfg = config_from_dict(raw, source)
    return config_from_dict(_merge(raw, parse_sets(sets)), "--set") if sets else cfg


def parse_sets(sets: Sequence[str]) -> dict:
    """``["train.base_lr=0.01", "train.loss=max_margin"]`` as the nested dict they override.

    Each value is typed by the schema: a string field (``name``, ``spark.master``, a ``kind``)
    takes the text as it is; any other field parses it as YAML (``0.01``, ``true``, ``[10, 50]``,
    ``null``), which the schema then checks strictly. An unknown key is left for validation to
    name with the keys allowed there.
    """
    out: dict = {}
    for item in sets:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.base_lr=0.01")
        try:
            value = text if _is_text(_annotation_at(parts)) else yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set: key '{key}' has a value that is not valid YAML: {text!r}") from None
        node = out
        for part in parts[:-1]:
            if isinstance(node.get(part), str):  # `train.loss=max_margin` then train.loss.margin
                node[part] = {"kind": node[part]}
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set: key '{key}' is inside a value set by another --set")
        node[parts[-1]] = value
    return out


def _annotation_at(parts: list[str]) -> Any:
    """The annotation of the field at a dotted path (any member of a tagged union on the way), or
    None where the path names no field."""
    models: list[type[BaseModel]] = [PipelineConfig]
    annotation: Any = None
    for part in parts:
        field = next((m.model_fields[part] for m in models if part in m.model_fields), None)
        if field is None:
            return None
        annotation = field.annotation
        model, tags = _model_of(annotation)
        models = [model] if model else list(tags.values())
    return annotation


def _is_text(annotation: Any) -> bool:
    """Whether a field holds text: ``str`` (strict or not) or a Literal of strings."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_text(get_args(annotation)[0])
    if origin is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    return annotation is str


def _merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` applied key by key; a tagged union (``loss``, ``ann``) given another
    ``kind`` is replaced whole, its old kind's keys dropped."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, str):  # `loss: xent`, then loss.temperature
            old = {"kind": old}
        if isinstance(value, dict) and isinstance(old, dict) and value.get("kind", old.get("kind")) == old.get("kind"):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def _derived(model: type[BaseModel], name: str) -> bool:
    """Whether ``model.name`` is set by validation, not by files: a section's derived seed."""
    return name == "seed" and model is not PipelineConfig


def _derived_keys(model: type[BaseModel]) -> Any:
    """The ``exclude`` argument of ``model_dump`` that leaves the derived seeds out."""
    if model is PipelineConfig:
        return {
            s: {"seed"} for s, f in model.model_fields.items() if "seed" in getattr(f.annotation, "model_fields", {})
        }
    return {"seed"} if "seed" in model.model_fields else None


def config_to_dict(cfg: BaseModel) -> dict:
    """Plain nested dict (tuples as lists) for YAML/JSON dumps; derived seeds left out."""
    return cfg.model_dump(mode="json", exclude=_derived_keys(type(cfg)))


def fingerprint_dict(cfg: PipelineConfig) -> dict:
    """The config with its derived seeds and without the :data:`OUTPUT_NEUTRAL` keys: what stage
    fingerprints hash (a section seed set in code, as a bench does, counts too)."""
    out = cfg.model_dump(mode="json")
    for dotted in OUTPUT_NEUTRAL:
        section, key = dotted.split(".")
        del out[section][key]
    return out


def config_diff(cfg: BaseModel, base: BaseModel | None = None) -> dict:
    """The nested keys of ``cfg`` whose values differ from ``base`` (default: the defaults).

    A tagged union of another kind than the default's (``train.loss: {kind: max_margin}``)
    keeps its ``kind`` and what differs from that kind's own defaults.
    """
    base = base if base is not None else type(cfg)()
    out: dict[str, Any] = {}
    for name, info in type(cfg).model_fields.items():
        if _derived(type(cfg), name):
            continue
        value, default = getattr(cfg, name), getattr(base, name)
        if isinstance(value, BaseModel):
            if type(value) is not type(default):
                out[name] = {"kind": value.kind, **config_diff(value)}  # type: ignore[attr-defined]
            elif sub := config_diff(value, default):
                out[name] = sub
        elif value != default:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def round_floats(tree: Any, digits: int = 3) -> Any:
    """``tree`` with every float rounded to ``digits`` significant digits (tuned values)."""
    if isinstance(tree, dict):
        return {k: round_floats(v, digits) for k, v in tree.items()}
    if isinstance(tree, list):
        return [round_floats(v, digits) for v in tree]
    if isinstance(tree, float) and tree != 0 and math.isfinite(tree):
        return round(tree, digits - 1 - math.floor(math.log10(abs(tree))))
    return tree


def flatten(cfg: BaseModel | dict) -> dict[str, Any]:
    """``{"train.batch_size": 256, ...}``: the form logged as MLflow params (of a config, or of a
    nested dict such as :func:`config_diff`'s)."""
    return _flatten_dict(cfg if isinstance(cfg, dict) else config_to_dict(cfg), "")


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
