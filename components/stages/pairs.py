"""Stage "pairs": cleaned interactions, engagement pairs (q, i) and their splits, as a Spark job (paper 4.1).

Reads ``raw/interactions.parquet``; writes ``pairs.parquet`` (``q_item``, ``pos_item``, ``count``,
``split``), ``interactions.parquet`` (the cleaned interactions: every row that passed rule 1 but
for the rating filter, which selects engagements for pairs rather than cleaning; the graph stage
takes its edges from this file), ``quarantine.parquet`` (rows not used for pairs, with a
``reason``) and a report.

Rules, in order:

1. Rows with a null/empty user or item id, an unparsable timestamp, a NaN/inf weight, a null
   collection id (when the column exists), a weight below ``pairs.min_rating``, or an exact
   repeat of an earlier (user, item, timestamp) row are quarantined. In = kept + quarantined.
2. Each user's kept events are ordered by time. Events with the same timestamp have no true
   order, so ties are broken by a seeded hash of (user, item, timestamp, seed), never by item id
   (an id order would plant a pattern a model could learn); their share is reported.
3. A pair is an event followed by the user's next event, if that is a different item no more
   than ``pairs.max_gap_s`` seconds later (a repeat of the same item yields no pair, the last
   repeat pairs with the next item).
4. Pairs are deduplicated with a count; pairs touching an item with fewer than
   ``pairs.min_item_support`` kept interactions are dropped.
5. ``pairs.split: temporal`` (default): each user's last cleaned events (``pairs.fractions``,
   per user or after a global time cut, ``temporal_scope``) are test and validation events; a
   pair takes the split of its later event, and only train events reach the graph
   (:func:`event_splits`), because a deployed model predicts engagements not yet in its graph.
   ``hash``: the split comes from a hash of the unordered pair {q, i} and the seed, so it does not
   depend on partitioning, and (q, i) and (i, q) always share a split; the graph holds every event.
6. Data without event times (the raw stage records it: adjacency files, a table without a time
   column) has no "latest" events and no "next" one: under ``temporal`` a seeded random share
   of each user's events is held out instead (a hash of (user, item, seed) orders them), and the
   data's own test file, where the raw stage wrote one, is the test split (the train file then
   gives train and validation events only). Pairs are co-engagements within a collection: each
   event and the next one(s) in that seeded random order of the collection's events, train
   events first, so a train pair never touches a held-out event; ``max_gap_s`` does not apply.

The same code runs under ``spark-submit`` on a cluster (the master comes from ``spark.master``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.orchestration.execution import StageError, print_table, stage_main
from pinsage_model.data.contracts import (
    INTERACTIONS,
    QUARANTINE,
    SPLITS,
    ContractError,
    has_event_times,
    times_metadata,
)
from pinsage_model.io import atomic_write_parquet
from pinsage_model.spark.session import spark_to_arrow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from components.stages import StageContext
    from pinsage_model.config import PipelineConfig

# Split buckets: the hash is reduced modulo this before comparing with the split fractions.
_SPLIT_BUCKETS = 1_000_000

QUARANTINE_REASONS = (
    "null_user_id",
    "null_item_id",
    "bad_timestamp",
    "bad_weight",
    "null_collection_id",
    "below_min_rating",
    "duplicate",
)


def check_interactions_schema(path: Path) -> list[str]:
    """Fail with a clear error when the interactions file or a required column is missing.

    Returns:
      The file's column names.
    """
    import pyarrow.parquet as pq

    if not path.exists():
        raise ContractError(f"{path}: file not found (expected the interactions table)")
    names = pq.read_schema(path).names
    for col in INTERACTIONS.required:
        if col not in names:
            raise ContractError(f"{path}: missing required column '{col}' for interactions (has: {', '.join(names)})")
    return names


def label_interactions(spark: "SparkSession", path: Path, min_rating: float | None) -> "DataFrame":
    """Read interactions and attach a quarantine ``reason`` (null for rows that are kept).

    The result has the typed columns ``user_id``, ``item_id``, ``timestamp`` (long), ``collection_id``
    (the user when the file has none), ``weight`` (double, null when absent), the 0-based file row
    ``row``, the raw columns as strings (``raw_*``, for the quarantine file) and ``reason``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = check_interactions_schema(path)
    has_coll = "collection_id" in names
    has_weight = "weight" in names
    df = spark.read.parquet(str(path.resolve())).select(
        *[F.col(c) for c in names if c in INTERACTIONS.required or c in INTERACTIONS.optional],
        F.col("_metadata.row_index").alias("row"),
    )
    raw_cols = [c for c in ("user_id", "item_id", "timestamp", "collection_id", "weight") if c in names]
    df = df.select(
        "row",
        *[F.col(c).cast("string").alias(f"raw_{c}") for c in raw_cols],
        F.col("user_id").cast("string").alias("user_id"),
        F.col("item_id").cast("string").alias("item_id"),
        # try_cast: Spark 4 runs in ANSI mode, where a plain cast of "abc" raises instead of null.
        F.col("timestamp").try_cast("long").alias("timestamp"),
        (F.col("collection_id").cast("string") if has_coll else F.col("user_id").cast("string")).alias("collection_id"),
        (F.col("weight").try_cast("double") if has_weight else F.lit(None).cast("double")).alias("weight"),
    )

    def empty(c: str):
        return F.col(c).isNull() | (F.trim(F.col(c)) == "")

    bad_weight = F.isnan("weight") | (F.abs("weight") == float("inf"))
    reason = (
        F.when(empty("user_id"), "null_user_id")
        .when(empty("item_id"), "null_item_id")
        .when(F.col("timestamp").isNull(), "bad_timestamp")
        .when(F.col("weight").isNotNull() & bad_weight, "bad_weight")
    )
    if has_coll:
        reason = reason.when(empty("collection_id"), "null_collection_id")
    if min_rating is not None:
        reason = reason.when(F.col("weight").isNull() | (F.col("weight") < F.lit(min_rating)), "below_min_rating")
    df = df.withColumn("reason", reason)
    # Exact repeats of (user, item, timestamp): the first row of the file is kept.
    first = Window.partitionBy("user_id", "item_id", "timestamp", F.col("reason").isNull()).orderBy("row")
    rank = F.when(F.col("reason").isNull(), F.row_number().over(first))
    return df.withColumn("reason", F.when((rank > 1), F.lit("duplicate")).otherwise(F.col("reason")))


def reason_counts(labelled: "DataFrame") -> dict[str, int]:
    """``{"kept": n, reason: n, ...}`` over a labelled interactions frame (one small collect)."""
    from pyspark.sql import functions as F

    rows = labelled.groupBy(F.coalesce("reason", F.lit("kept")).alias("r")).count().collect()
    return {r["r"]: int(r["count"]) for r in rows}


def write_quarantine(labelled: "DataFrame", source: Path, out_path: Path, tmp_dir: Path) -> int:
    """Write the quarantined rows (raw columns as strings, ``reason``, ``source``, ``row``)."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    raw_cols = [c for c in labelled.columns if c.startswith("raw_")]
    bad = labelled.where(F.col("reason").isNotNull()).select(
        *[F.col(c).alias(c[4:]) for c in raw_cols],
        "reason",
        F.lit(str(source)).alias("source"),
        F.col("row").cast("long").alias("row"),
    )
    schema = pa.schema(
        [pa.field(c[4:], pa.string()) for c in raw_cols] + [pa.field(c, t) for c, t in QUARANTINE.required.items()]
    )
    table = spark_to_arrow(bad, tmp_dir, schema).sort_by("row")
    atomic_write_parquet(out_path, table)
    return table.num_rows


def event_splits(
    labelled: "DataFrame", cfg: "PipelineConfig", event_times: bool = True, test_file: bool = False
) -> "DataFrame":
    """The cleaned events (rule 1 passed, the rating filter aside) with ``split`` and order keys.

    ``pairs.split: temporal``: per user (``temporal_scope: user``) the last ``fractions[2]`` of the
    user's cleaned events are ``test`` and the ``fractions[1]`` before them ``validation``; with
    ``global`` the events after the time quantiles ``1 - f_val - f_test`` and ``1 - f_test`` are.
    Only ``train`` events become graph edges, so every later stage and every baseline sees only
    the engagements before the ones it is scored on. ``hash``: every event is ``train``; the
    pair hash decides the pair's split (rule 5).

    Without ``event_times`` (rule 6) ``temporal`` holds out per user the events last in a seeded
    random order (``tie`` hashes user, item and seed, not the timestamp): ``fractions[2]`` test
    (none when ``test_file``: the data's own test file is the test split) and ``fractions[1]``
    validation, whatever ``temporal_scope`` says.

    Columns: the labelled columns plus ``tie`` (rule 2) and ``split``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    p = cfg.pairs
    clean = labelled.where(F.col("reason").isNull() | (F.col("reason") == "below_min_rating"))
    # Seeded tie-break for same-timestamp events; the file row only separates 64-bit collisions.
    tie = F.xxhash64("user_id", "item_id", "timestamp", F.lit(p.seed)) if event_times else random_order(p.seed)
    clean = clean.withColumn("tie", tie)
    if p.split == "hash":
        return clean.withColumn("split", F.lit(SPLITS[0]))
    f_val, f_test = p.fractions[1], (0.0 if test_file else p.fractions[2])
    if p.temporal_scope == "user" or not event_times:
        keys = ("timestamp", "tie", "row") if event_times else ("tie", "row")
        order = Window.partitionBy("user_id").orderBy(*keys)
        position = F.row_number().over(order).cast("double")  # 1 = the user's first event
        events = F.count(F.lit(1)).over(Window.partitionBy("user_id")).cast("double")
        is_test = position > events * (1.0 - f_test)
        is_held = position > events * (1.0 - f_test - f_val)
    else:
        t_val, t_test = clean.approxQuantile("timestamp", [1.0 - f_test - f_val, 1.0 - f_test], 0.0) or [0, 0]
        is_test = (F.col("timestamp") > F.lit(t_test)) if f_test > 0 else F.lit(False)
        is_held = (F.col("timestamp") > F.lit(t_val)) if f_val + f_test > 0 else F.lit(False)
    return clean.withColumn("split", F.when(is_test, SPLITS[2]).when(is_held, SPLITS[1]).otherwise(SPLITS[0]))


def random_order(seed: int):
    """The seeded order key of events without times: a hash of (user, item, seed), so the order
    depends neither on the source's line order nor on partitioning."""
    from pyspark.sql import functions as F

    return F.xxhash64("user_id", "item_id", F.lit(seed))


def test_file_events(spark: "SparkSession", path: Path, cfg: "PipelineConfig", first_row: int) -> "DataFrame":
    """The kept events of the data's own test file (``raw/test_interactions.parquet``) as
    ``test`` events with the columns :func:`extract_pairs` reads; ``row`` continues after the
    train file's rows (``first_row``) so the two files' rows stay distinct."""
    from pyspark.sql import functions as F

    labelled = label_interactions(spark, path, cfg.pairs.min_rating)
    return labelled.where(F.col("reason").isNull()).select(
        "user_id",
        "item_id",
        "timestamp",
        "collection_id",
        (F.col("row") + F.lit(first_row)).alias("row"),
        random_order(cfg.pairs.seed).alias("tie"),
        F.lit(SPLITS[2]).alias("split"),
        F.lit(None).cast("string").alias("reason"),
    )


def write_clean_interactions(
    events: "DataFrame", out_path: Path, tmp_dir: Path, metadata: dict[str, str] | None = None
) -> int:
    """Write the cleaned events of :func:`event_splits`, in file order.

    Columns: ``user_id``, ``item_id``, ``timestamp``, ``collection_id`` (the user when the file has
    none) and ``weight`` (null when absent), as in the interactions contract, plus ``split``: the
    graph stage takes its edges from the ``train`` rows.
    """
    import pyarrow as pa
    from pyspark.sql import functions as F

    columns = ("user_id", "item_id", "timestamp", "collection_id", "weight")
    contract = {**INTERACTIONS.required, **INTERACTIONS.optional}
    schema = pa.schema(
        [pa.field(c, contract[c]) for c in columns] + [pa.field("split", pa.string()), pa.field("row", pa.int64())]
    )
    table = spark_to_arrow(events.select(*columns, "split", F.col("row").cast("long").alias("row")), tmp_dir, schema)
    atomic_write_parquet(out_path, table.sort_by("row").drop_columns(["row"]), metadata=metadata)
    return table.num_rows


def extract_pairs(
    events: "DataFrame", cfg: "PipelineConfig", event_times: bool = True, test_events: "DataFrame | None" = None
) -> tuple["DataFrame", "DataFrame"]:
    """Ordered consecutive-event transitions and the deduplicated, split pairs.

    Args: ``events``: :func:`event_splits` (pairs come from its rows that passed the rating filter);
    ``event_times`` False: successors within the collection in rule 6's seeded order (train, then
    validation, then test), every gap 0; ``test_events``: :func:`test_file_events` (no times).

    Returns ``(transitions, pairs)``: one row per kept event with its successor (``next_item``,
      ``gap``) and the final pairs frame with ``q_item``, ``pos_item``, ``count``, ``split``. A
      temporal split gives a pair the split of its later event (the engagement to predict), so
      one (q, i) can occur once per split; the hash split gives it the split of the unordered pair.
      With ``pairs.train_window`` W > 1, an event and each of its next W events within
      ``max_gap_s`` form a pair too, kept only when that pair's split is train.
    """
    from pyspark.sql import functions as F

    p = cfg.pairs
    kept, w = _ordered(events, event_times, test_events)
    transitions = (
        kept.withColumn("next_item", F.lead("item_id").over(w))
        .withColumn("next_ts", F.lead("timestamp").over(w))
        .withColumn("next_split", F.lead("split").over(w))
        .select(
            "user_id",
            "item_id",
            "next_item",
            (F.col("next_ts") - F.col("timestamp")).alias("gap"),
            "next_split",
        )
    )
    candidates = transitions.withColumn("lag", F.lit(1))
    # Successors 2..W of each event, kept below only as training pairs (see pair_split).
    for d in range(2, p.train_window + 1):
        successor = [F.lead(c, d).over(w) for c in ("item_id", "timestamp", "split")]
        candidates = candidates.unionByName(
            kept.select(
                "user_id",
                "item_id",
                successor[0].alias("next_item"),
                (successor[1] - F.col("timestamp")).alias("gap"),
                successor[2].alias("next_split"),
                F.lit(d).alias("lag"),
            )
        )
    pair_split = _pair_split(p)
    pairs = (
        candidates.where(
            F.col("next_item").isNotNull()
            & (F.col("next_item") != F.col("item_id"))
            & (F.col("gap") <= F.lit(p.max_gap_s))
            & ((F.col("lag") == 1) | (pair_split == F.lit(SPLITS[0])))
        )
        .groupBy(F.col("item_id").alias("q_item"), F.col("next_item").alias("pos_item"), pair_split.alias("split"))
        .agg(F.count(F.lit(1)).cast("long").alias("count"))
    )
    if p.min_item_support > 1:
        pairs = _supported(pairs, kept, p.min_item_support)
    return transitions.drop("next_split"), pairs.select("q_item", "pos_item", "count", "split")


def _ordered(events: "DataFrame", event_times: bool, test_events: "DataFrame | None") -> tuple["DataFrame", Any]:
    """The kept events and the window that orders each user's (with times) or each collection's
    (without: rule 6's seeded order, held-out events last) events for the successor pairs."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cols = ["user_id", "item_id", "timestamp", "row", "tie", "split"]
    kept = events.where(F.col("reason").isNull())
    if event_times:
        return kept.select(*cols), Window.partitionBy("user_id").orderBy("timestamp", "tie", "row")
    kept = kept.select(*cols, "collection_id")
    if test_events is not None:
        kept = kept.unionByName(test_events.select(*cols, "collection_id"))
    # no times: a constant timestamp makes every gap 0; held-out events come last, so the
    # successor of a train event is a train event until the collection's train events run out
    held = F.when(F.col("split") == SPLITS[0], 0).when(F.col("split") == SPLITS[1], 1).otherwise(2)
    kept = kept.withColumn("timestamp", F.lit(0).cast("long")).withColumn("held", held)
    return kept, Window.partitionBy("collection_id").orderBy("held", "tie", "row")


def _supported(pairs: "DataFrame", kept: "DataFrame", min_support: int) -> "DataFrame":
    """The pairs whose two items each have ``min_support`` training events or more (support counts
    what the graph will hold)."""
    from pyspark.sql import functions as F

    support = kept.where(F.col("split") == SPLITS[0]).groupBy("item_id").count()
    support = support.where(F.col("count") >= min_support).select("item_id")
    return pairs.join(support.withColumnRenamed("item_id", "q_item"), "q_item", "left_semi").join(
        support.withColumnRenamed("item_id", "pos_item"), "pos_item", "left_semi"
    )


def _pair_split(p):
    """The split column of a pair: its later event's (temporal), or by a hash of the unordered pair."""
    from pyspark.sql import functions as F

    if p.split != "hash":
        return F.col("next_split")
    u = F.pmod(
        F.xxhash64(F.least("item_id", "next_item"), F.greatest("item_id", "next_item"), F.lit(p.seed)),
        F.lit(_SPLIT_BUCKETS),
    )
    lo, mid = p.fractions[0] * _SPLIT_BUCKETS, (p.fractions[0] + p.fractions[1]) * _SPLIT_BUCKETS
    return F.when(u < F.lit(lo), SPLITS[0]).when(u < F.lit(mid), SPLITS[1]).otherwise(SPLITS[2])


def transition_stats(labelled: "DataFrame", transitions: "DataFrame", max_gap_s: int) -> dict[str, int]:
    """Counts of same-timestamp events, repeats and over-gap transitions (one small collect)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kept = labelled.where(F.col("reason").isNull())
    same_ts = Window.partitionBy("user_id", "timestamp")
    tied = kept.select((F.count(F.lit(1)).over(same_ts) > 1).alias("tied")).agg(
        F.sum(F.col("tied").cast("long")).alias("tied_events")
    )
    t = transitions.agg(
        F.sum((F.col("next_item").isNotNull()).cast("long")).alias("transitions"),
        F.sum((F.col("next_item") == F.col("item_id")).cast("long")).alias("repeat_transitions"),
        F.sum(((F.col("next_item") != F.col("item_id")) & (F.col("gap") > max_gap_s)).cast("long")).alias(
            "over_gap_transitions"
        ),
        F.sum(((F.col("next_item") != F.col("item_id")) & (F.col("gap") == 0)).cast("long")).alias(
            "same_timestamp_pairs"
        ),
    )
    row = tied.crossJoin(t).collect()[0]
    return {k: int(row[k] or 0) for k in row.asDict()}


def run(cfg: "PipelineConfig", inputs: dict[str, Path], out_dir: Path, ctx: "StageContext") -> dict:
    """Extract pairs from ``inputs["raw"]/interactions.parquet`` into ``out_dir``."""
    import pyarrow as pa
    from pyspark import StorageLevel

    from pinsage_model.data.contracts import PAIRS
    from pinsage_model.spark.session import get_spark

    source = Path(inputs["raw"]) / "interactions.parquet"
    check_interactions_schema(source)
    times = has_event_times(source)
    # the data's own test file is the test split where the order gives no "latest" events to hold out
    test_path = Path(inputs["raw"]) / "test_interactions.parquet"
    test_file = not times and cfg.pairs.split == "temporal" and test_path.exists()
    spark = get_spark(cfg.spark, visible=[source] + ([test_path] if test_file else []), writable=[out_dir])
    labelled = label_interactions(spark, source, cfg.pairs.min_rating).persist(StorageLevel.MEMORY_AND_DISK)
    transitions = events = None
    try:
        n_in, n_kept, n_quarantined, quarantined = _write_quarantine_checked(labelled, source, out_dir)
        # read three times (clean file, event counts, pairs): keep the per-user windows
        events = event_splits(labelled, cfg, times, test_file).persist(StorageLevel.MEMORY_AND_DISK)
        n_clean = write_clean_interactions(
            events, out_dir / "interactions.parquet", out_dir / "_spark_clean", times_metadata(times)
        )
        test_events = test_file_events(spark, test_path, cfg, n_in) if test_file else None
        transitions, pairs = extract_pairs(events, cfg, times, test_events)
        # read twice (stats, pairs): keep the sorted windows instead of recomputing them
        transitions = transitions.persist(StorageLevel.MEMORY_AND_DISK)
        stats = transition_stats(labelled, transitions, cfg.pairs.max_gap_s)
        schema = pa.schema([(c, PAIRS.required[c]) for c in ("q_item", "pos_item", "count", "split")])
        table = spark_to_arrow(pairs, out_dir / "_spark_pairs", schema).sort_by(
            [("q_item", "ascending"), ("pos_item", "ascending"), ("split", "ascending")]
        )
        events_per_split = {r["split"]: int(r["count"]) for r in events.groupBy("split").count().collect()}
    finally:
        for frame in (transitions, events):
            if frame is not None:
                frame.unpersist()
        labelled.unpersist()
    if table.num_rows == 0:
        raise StageError(
            f"{source}: no pairs: {n_kept} kept interactions gave no consecutive distinct items within "
            f"pairs.max_gap_s={cfg.pairs.max_gap_s} s (min_item_support={cfg.pairs.min_item_support})"
        )
    atomic_write_parquet(out_dir / "pairs.parquet", table)
    counts = {"read": n_in, "kept": n_kept, "quarantined": n_quarantined, "clean": n_clean}
    return _report(cfg, times, test_file, counts, stats, quarantined, events_per_split, table)


def _report(
    cfg: "PipelineConfig",
    times: bool,
    test_file: bool,
    counts: dict[str, int],
    stats: dict,
    quarantined: dict,
    events_per_split: dict,
    table: Any,
) -> dict:
    """The stage's report (printed as a table too)."""
    report = {
        "interactions_read": counts["read"],
        "interactions_kept": counts["kept"],
        "interactions_quarantined": counts["quarantined"],
        "clean_interactions": counts["clean"],
        "event_times": times,
        "split_protocol": _protocol(cfg, times, test_file),
        "pairs_from": (
            f"consecutive events of a user within pairs.max_gap_s={cfg.pairs.max_gap_s} s"
            if times
            else "co-engagements within a collection, in a seeded random order: the input has no timestamps"
        ),
        "events_per_split": {s: events_per_split.get(s, 0) for s in SPLITS},
        "quarantined_by_reason": quarantined,
        "same_timestamp_event_share": stats["tied_events"] / counts["kept"],
        **{k: stats[k] for k in ("transitions", "repeat_transitions", "over_gap_transitions", "same_timestamp_pairs")},
        **_pairs_report(table),
    }
    if not times:  # positions in a line, not times: their ties and gaps mean nothing
        for key in ("same_timestamp_event_share", "over_gap_transitions", "same_timestamp_pairs"):
            report.pop(key)
    rows = [(k, v) for k, v in report.items() if not isinstance(v, dict)]
    rows += [(f"quarantined: {k}", v) for k, v in quarantined.items()]
    rows += [(f"pairs: {k}", v) for k, v in report["pairs_per_split"].items()]
    print_table("pairs stage", [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in rows])
    return report


def _protocol(cfg: "PipelineConfig", event_times: bool, test_file: bool) -> str:
    """The split protocol that ran, and why when it is not the configured one (rule 6)."""
    p = cfg.pairs
    if p.split == "hash":
        return "hash"
    if event_times:
        return f"temporal ({p.temporal_scope})"
    test = "the data's own test file" if test_file else "a seeded random per-user hold-out"
    return f"random per-user hold-out (seeded; test: {test}): the input has no timestamps"


def _write_quarantine_checked(labelled: "DataFrame", source: Path, out_dir: Path) -> tuple[int, int, int, dict]:
    """Write ``quarantine.parquet``; (read, kept, quarantined, quarantined by reason), checked to
    add up and to keep something."""
    counts = reason_counts(labelled)
    n_in = sum(counts.values())
    n_kept = counts.get("kept", 0)
    quarantined = {r: counts.get(r, 0) for r in QUARANTINE_REASONS if counts.get(r, 0)}
    n_quarantined = write_quarantine(labelled, source, out_dir / "quarantine.parquet", out_dir / "_spark_quarantine")
    if n_in != n_kept + n_quarantined:
        raise StageError(f"{source}: row accounting failed: {n_in} read != {n_kept} kept + {n_quarantined} quarantined")
    if n_kept == 0:
        raise StageError(
            f"{source}: all {n_in} interactions were quarantined ({quarantined}); "
            f"see {out_dir.name}/quarantine.parquet and check pairs.min_rating"
        )
    return n_in, n_kept, n_quarantined, quarantined


def _pairs_report(table) -> dict:
    """Occurrences, distinct pairs, pairs per split and distinct items of the pairs table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    split_counts = {d["values"]: int(d["counts"]) for d in pc.value_counts(table.column("split")).to_pylist()}
    return {
        "pair_occurrences": int(pc.sum(table.column("count")).as_py()),
        "pairs": table.num_rows,
        "pairs_per_split": {s: split_counts.get(s, 0) for s in SPLITS},
        "items_in_pairs": len(
            pc.unique(pa.chunked_array(table.column("q_item").chunks + table.column("pos_item").chunks))
        ),
    }


if __name__ == "__main__":
    sys.exit(stage_main(__name__))
