"""Item features with TensorFlow Transform: the preprocessing function, its Beam analysis, and
applying the saved transform to any item rows (training-time and later items alike).

Input columns (one row per item, built by :func:`item_rows`):

* ``vector`` float32 (F0,): the item table's precomputed ``features`` vector (zeros when missing)
  and ``has_vector`` (1/0);
* ``log_degree`` float32: ``log(1 + degree)`` in the FULL graph (paper: degree is a feature);
* ``has_features`` (1/0): the item has a vector or any text;
* ``title`` (text), ``genres`` and ``tags`` ("|"-separated categories), "" when missing.

Output: one dense float32 row ``x`` of fixed width, the concatenation (in this order) of

* the vector, z-scored per dimension with mean and variance over the items that HAVE a vector
  (missing vectors become 0, i.e. the mean);
* ``log_degree`` z-scored over all items (mean and variance from the analysis): unscaled it was
  the largest input of the model, a popularity signal louder than the content;
* ``has_features``, only when ``features.missing_features == "id_embedding"``: the trainer then
  learns an id embedding (``features.id_embedding_dim``) for the items flagged 0, the paper's
  transductive fallback; with ``"zeros"`` the content block of such items is simply zero;
* the title's lower-cased word tokens hashed into ``features.experimental.text_hash_buckets`` (multi-hot);
* genres and tags through a vocabulary (``compute_and_apply_vocabulary``, the
  ``features.experimental.categorical_vocab_top_k`` most frequent, plus ``categorical_oov_buckets``
  out-of-vocabulary buckets) as multi-hot of width ``top_k + oov`` (unused slots stay 0).

Only the columns the item table has take part. The analysis (means, variances, vocabularies)
runs as a Beam pipeline (``features.beam_runner``; DirectRunner locally) fed Arrow record
batches through TFXIO, and is saved with ``WriteTransformFn``; :func:`transform_batches` applies
that saved graph, so items that appear later are featurised exactly like the training items.
"""

from __future__ import annotations

import atexit
import gc
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa
    from apache_beam.runners.runner import PipelineRunner

    from pinsage_model.config import FeaturesConfig

TEXT_COLUMNS = ("title",)
CATEGORICAL_COLUMNS = ("genres", "tags")
OUTPUT_KEY = "x"


def item_rows(
    items: "pa.Table | None", item_ids: "pa.Table", degree: np.ndarray
) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """Transform inputs for every graph item, aligned with ``item_idx``.

    Args:
      items: the items table (contract ``ITEMS``), or None when the data has no item table.
      item_ids: the graph's ``item_ids`` table (``item_idx`` 0..N-1, ``item_id``).
      degree: (N,) item degree in the full graph.

    Returns:
      ``(rows, rejected)``. ``rows``: column name -> array of N rows: ``item_idx`` int64,
      ``log_degree``/``has_features`` float32, ``vector`` float32 (N, F0) and ``has_vector``
      when the table has vectors, object arrays of str for its text/categorical columns.
      ``rejected``: ``(row in items, reason)`` for item rows not used: ``null_item_id``,
      ``unknown_item_id`` (not in the graph), ``duplicate_item_id`` (a later repeat),
      ``bad_vector`` (NaN/inf or a length other than the most common one). An item whose vector
      is rejected keeps its text columns.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = item_ids.num_rows
    rows: dict[str, np.ndarray] = {
        "item_idx": np.arange(n, dtype=np.int64),
        "log_degree": np.log1p(np.asarray(degree, dtype=np.float64)).astype(np.float32),
    }
    rejected: list[tuple[int, str]] = []
    has_any = np.zeros(n, dtype=bool)
    if items is not None and items.num_rows:
        ids = items.column("item_id")
        pos = pc.fill_null(pc.index_in(ids, value_set=item_ids.column("item_id")), -1).to_numpy()
        null_id = pc.is_null(ids).to_numpy(zero_copy_only=False)
        first = np.zeros(len(pos), dtype=bool)
        _, first_rows = np.unique(pos, return_index=True)
        first[first_rows] = True
        ok = (pos >= 0) & first  # (R,) rows of the item table that feed an item
        for r in np.nonzero(~ok)[0]:
            reason = "null_item_id" if null_id[r] else "unknown_item_id" if pos[r] < 0 else "duplicate_item_id"
            rejected.append((int(r), reason))
        src = np.nonzero(ok)[0]
        dst = pos[src]
        if "features" in items.column_names:
            vec, has_vec, bad = _vectors(items.column("features").combine_chunks(), src, pos, n)
            rejected += [(int(r), "bad_vector") for r in bad]
            rows["vector"] = vec
            rows["has_vector"] = has_vec.astype(np.float32)
            has_any |= has_vec
        for name in TEXT_COLUMNS + CATEGORICAL_COLUMNS:
            if name not in items.column_names:
                continue
            vals = np.full(n, "", dtype=object)
            col = pc.fill_null(items.column(name).cast(pa.string()), "").to_numpy(zero_copy_only=False)
            vals[dst] = col[src]
            rows[name] = vals
            has_any |= vals != ""
    rows["has_features"] = has_any.astype(np.float32)
    return rows, sorted(rejected)


def _vectors(col, src: np.ndarray, pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """((n, F0) float32 vectors, (n,) has a vector, item-table rows of rejected vectors) from the
    list column ``col``; item-table row ``src[k]`` feeds item ``pos[src[k]]``. A vector is
    rejected for NaN/inf or a length other than the most common one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.list_value_length(col), -1).to_numpy()
    valid_lengths = lengths[lengths > 0]
    width = int(np.bincount(valid_lengths).argmax()) if len(valid_lengths) else 0
    good = lengths == width
    flat = np.asarray(pc.list_flatten(col.filter(pa.array(good))).to_numpy(zero_copy_only=False), dtype=np.float32)
    vec_src = np.zeros((len(lengths), width), dtype=np.float32)
    vec_src[good] = flat.reshape(-1, width)
    good &= np.isfinite(vec_src).all(axis=1)
    vec = np.zeros((n, width), dtype=np.float32)
    has_vec = np.zeros(n, dtype=bool)
    use = src[good[src]]
    vec[pos[use]] = vec_src[use]
    has_vec[pos[use]] = True
    return vec, has_vec, src[~good[src] & (lengths[src] >= 0)]


def feature_spec(rows: dict[str, np.ndarray]) -> dict:
    """The raw ``tf.io`` feature spec of :func:`item_rows`' columns."""
    import tensorflow as tf

    spec = {
        "item_idx": tf.io.FixedLenFeature([], tf.int64),
        "log_degree": tf.io.FixedLenFeature([], tf.float32),
        "has_features": tf.io.FixedLenFeature([], tf.float32),
    }
    if "vector" in rows:
        spec["vector"] = tf.io.FixedLenFeature([rows["vector"].shape[1]], tf.float32)
        spec["has_vector"] = tf.io.FixedLenFeature([], tf.float32)
    for name in TEXT_COLUMNS + CATEGORICAL_COLUMNS:
        if name in rows:
            spec[name] = tf.io.FixedLenFeature([], tf.string)
    return spec


def make_preprocessing_fn(columns: tuple[str, ...], cfg: "FeaturesConfig") -> Callable[[dict], dict]:
    """The TF Transform ``preprocessing_fn`` for the given input columns (see module doc)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    width_cat = cfg.experimental.categorical_vocab_top_k + cfg.experimental.categorical_oov_buckets

    def multi_hot(ids, depth: int):
        # ids: (B, None) ragged int -> (B, depth) float32 with 1 where any id hits the slot
        hot = tf.math.bincount(tf.cast(ids, tf.int32), minlength=depth, maxlength=depth, binary_output=True, axis=-1)
        return tf.reshape(tf.cast(hot, tf.float32), [-1, depth])

    def preprocessing_fn(inputs: dict) -> dict:
        parts = []
        if "vector" in columns:
            # Statistics in float64: Beam combines partial sums in a run-dependent order, and in
            # float32 that changed the last bits of the output from one process to the next.
            x = tf.cast(inputs["vector"], tf.float64)  # (B, F0)
            m = tf.expand_dims(tf.cast(inputs["has_vector"], tf.float64), 1)  # (B, 1)
            n = tf.maximum(tft.sum(tf.cast(inputs["has_vector"], tf.float64)), 1.0)
            mean = tft.sum(x * m, reduce_instance_dims=False) / n  # (F0,)
            var = tft.sum(tf.square(x - mean) * m, reduce_instance_dims=False) / n  # (F0,)
            scale = tf.where(var > 0, tf.math.rsqrt(tf.where(var > 0, var, 1.0)), 1.0)
            z = tf.where(m > 0, (x - mean) * scale, 0.0)  # missing -> 0 (the mean)
            parts.append(tf.cast(z, tf.float32))
        # float64 analysers for the same reason as the vector's: reruns give identical bytes
        degree = tf.cast(inputs["log_degree"], tf.float64)  # (B,)
        d_mean = tft.mean(degree)
        d_var = tft.var(degree)
        d_scale = tf.where(d_var > 0, tf.math.rsqrt(tf.where(d_var > 0, d_var, 1.0)), 1.0)
        parts.append(tf.expand_dims(tf.cast((degree - d_mean) * d_scale, tf.float32), 1))
        if cfg.missing_features == "id_embedding":
            parts.append(tf.expand_dims(inputs["has_features"], 1))
        if "title" in columns:
            text = tf.strings.regex_replace(tf.strings.lower(inputs["title"]), r"[^a-z0-9]+", " ")
            tokens = tf.strings.split(text)  # (B, None) ragged
            ids = tf.ragged.map_flat_values(tf.strings.to_hash_bucket_fast, tokens, cfg.experimental.text_hash_buckets)
            parts.append(multi_hot(ids, cfg.experimental.text_hash_buckets))
        for name in CATEGORICAL_COLUMNS:
            if name not in columns:
                continue
            tokens = tf.strings.split(tf.strings.strip(inputs[name]), sep="|")  # (B, None) ragged
            tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tf.strings.strip(tokens)) > 0)
            tokens = tf.ragged.map_flat_values(tf.strings.strip, tokens)
            ids = tft.compute_and_apply_vocabulary(
                tokens,
                top_k=cfg.experimental.categorical_vocab_top_k,
                num_oov_buckets=cfg.experimental.categorical_oov_buckets,
                vocab_filename=name,
            )
            parts.append(multi_hot(ids, width_cat))
        return {OUTPUT_KEY: tf.concat(parts, axis=1), "item_idx": inputs["item_idx"]}

    return preprocessing_fn


def feature_names(columns: tuple[str, ...], cfg: "FeaturesConfig", vector_width: int, transform_dir: Path) -> list[str]:
    """Names of the output columns, in order; vocabulary slots are named by their token."""
    import tensorflow_transform as tft

    out = [f"vector_{i}" for i in range(vector_width)] if "vector" in columns else []
    out.append("log_degree")
    if cfg.missing_features == "id_embedding":
        out.append("has_features")
    if "title" in columns:
        out += [f"title_hash_{i}" for i in range(cfg.experimental.text_hash_buckets)]
    tft_out = tft.TFTransformOutput(str(transform_dir))
    for name in CATEGORICAL_COLUMNS:
        if name not in columns:
            continue
        vocab = [v.decode("utf-8", "replace") for v in tft_out.vocabulary_by_name(name)]
        slots = [f"{name}={v}" for v in vocab[: cfg.experimental.categorical_vocab_top_k]]
        slots += [f"{name}_oov_{i}" for i in range(cfg.experimental.categorical_oov_buckets)]
        # vocabulary ids: tokens 0..V-1, then the OOV buckets V..V+oov-1; the rest never fire
        slots += [f"{name}_unused_{i}" for i in range(cfg.experimental.categorical_vocab_top_k - len(vocab))]
        out += slots
    return out


def analyze(rows: dict[str, np.ndarray], cfg: "FeaturesConfig", transform_dir: Path, temp_dir: Path) -> None:
    """Run the TF Transform analysis as a Beam pipeline and save the transform to ``transform_dir``.

    The rows reach Beam as Arrow record batches through TFXIO: they are written as Parquet shards
    of ``cfg.batch_rows`` rows under ``temp_dir`` (a folder TF Transform already needs every
    worker to reach) and read back by :class:`tfx_bsl.tfxio.parquet_tfxio.ParquetTFXIO`, whose
    ``TensorAdapterConfig`` maps each column to its tensor. No element passes through the
    pipeline definition, so a cluster runner's workers read the shards themselves. (Python
    dicts through ``beam.Create``, encoded to ``tf.Example``s and decoded again, took 1,077 s
    and 9.2 GB at 1M items.)
    """
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
    from tfx_bsl.tfxio.parquet_tfxio import ParquetTFXIO

    # The TF objects TFT's Beam analysis leaves behind crash the interpreter's final garbage
    # collection (segfault at exit, rc 139, after all work is done: the TF "remove_function at
    # shutdown" pattern). Freezing the heap at exit skips that collection; the OS frees it.
    atexit.register(gc.freeze)
    spec = feature_spec(rows)
    schema = schema_utils.schema_from_feature_spec(spec)
    input_dir = Path(temp_dir) / "input"
    source = ParquetTFXIO(str(input_dir / "*.parquet"), schema=schema, telemetry_descriptors=["pinsage", "features"])
    write_record_batches(rows, source.ArrowSchema(), input_dir, cfg.batch_rows)
    runner: str | PipelineRunner = cfg.beam_runner
    options = list(cfg.beam_options)
    if runner == "DirectRunner":
        # Beam 2.77's DirectRunner first tries Prism, which downloads a binary (minutes offline
        # before it falls back); the FnApiRunner is what it falls back to.
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
        options += [
            f"--direct_running_mode={cfg.direct_running_mode}",
            f"--direct_num_workers={cfg.direct_num_workers}",
        ]
    with beam.Pipeline(runner=runner, options=PipelineOptions(options)) as pipeline:
        # Deep copy: each analysis phase (the vector's variance needs its mean first) reads the
        # shards again instead of the runner holding every record batch between phases (at 1M
        # items 0.55 GB less peak memory, no slower).
        with tft_beam.Context(temp_dir=str(temp_dir), force_tf_compat_v1=False, use_deep_copy_optimization=True):
            raw = pipeline | "ItemRows" >> source.BeamSource()
            transform_fn = (raw, source.TensorAdapterConfig()) | "Analyze" >> tft_beam.AnalyzeDataset(
                make_preprocessing_fn(tuple(spec), cfg)
            )
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(str(transform_dir))
    # The raw schema too, so transform_batches can rebuild the inputs of items seen later.
    metadata = dataset_metadata.DatasetMetadata(schema)
    metadata_io.write_metadata(metadata, str(transform_dir / tft.TFTransformOutput.RAW_METADATA_DIR))


def record_batch(rows: dict[str, np.ndarray], arrow_schema: "pa.Schema", lo: int, hi: int) -> "pa.RecordBatch":
    """Rows ``lo:hi`` in TFXIO's layout: each feature a ``large_list`` column of its values.

    This is the layout TFXIO's own decoders give a ``FixedLenFeature`` (the same tensors the
    analysis saw when it was fed ``tf.Example``s): numbers as float32/int64, text as UTF-8 bytes.
    """
    import pyarrow as pa

    arrays = []
    for field in arrow_schema:
        vals = rows[field.name][lo:hi]
        width = int(np.prod(vals.shape[1:], dtype=np.int64))
        offsets = pa.array(np.arange(0, (hi - lo) * width + 1, width, dtype=np.int64))
        value_type = field.type.value_type
        if pa.types.is_large_binary(value_type):
            flat = pa.array(vals, type=pa.large_string()).cast(value_type)  # UTF-8 bytes, no copy
        else:
            flat = pa.array(vals.reshape(-1), type=value_type)
        arrays.append(pa.LargeListArray.from_arrays(offsets, flat))
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)


def write_record_batches(
    rows: dict[str, np.ndarray], arrow_schema: "pa.Schema", out_dir: Path, batch_rows: int
) -> None:
    """Write the rows as Parquet shards of ``batch_rows`` rows (one record batch each) for TFXIO."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(rows["item_idx"])
    for shard, lo in enumerate(range(0, max(n, 1), batch_rows)):
        batch = record_batch(rows, arrow_schema, lo, min(lo + batch_rows, n))
        # uncompressed: the shards live for one analysis, and decompression would cost CPU
        pq.write_table(
            pa.Table.from_batches([batch]),
            out_dir / f"part-{shard:05d}.parquet",
            row_group_size=batch_rows,
            compression="none",
        )


def feature_width(transform_dir: str | Path) -> int:
    """Width F of the saved transform's output rows."""
    import tensorflow_transform as tft

    return int(tft.TFTransformOutput(str(transform_dir)).transformed_feature_spec()[OUTPUT_KEY].shape[0])


def transform_batches(
    transform_dir: str | Path, rows: dict[str, np.ndarray], batch_size: int = 65536, progress: bool = False
) -> Iterator[np.ndarray]:
    """Apply the SAVED transform to item rows (from :func:`item_rows` or built the same way).

    This is how the feature stage itself featurises every item, and how items that appear after
    training are featurised: the same saved graph with the same analyzer constants. The
    transform is row-wise, so the batch size changes the memory held, never the values.

    Args:
      transform_dir: the ``transform/`` folder written by :func:`analyze`.
      rows: input columns; only those the transform was analysed with are used.
      batch_size: rows per call of the transform layer.
      progress: show a tqdm bar.

    Yields:
      (b, F) float32 blocks of consecutive rows, in row order.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    from pinsage_model.progress import progress_bar

    tft_out = tft.TFTransformOutput(str(transform_dir))
    layer = tft_out.transform_features_layer()
    raw_spec = tft_out.raw_feature_spec()
    n = len(rows["item_idx"])
    for lo in progress_bar(range(0, n, batch_size), desc="transform items", disable=not progress, unit="batch"):
        hi = min(lo + batch_size, n)
        batch = {}
        for name, spec in raw_spec.items():
            if name in rows:
                vals = rows[name][lo:hi]
            else:  # a column the new rows lack: empty text, or a missing vector
                vals = np.full((hi - lo, *spec.shape), "" if spec.dtype == tf.string else 0)
            if spec.dtype == tf.string:
                vals = np.asarray([str(v) for v in vals], dtype=object)
            batch[name] = tf.constant(vals, dtype=spec.dtype)
        yield layer(batch)[OUTPUT_KEY].numpy()


def transform_items(transform_dir: str | Path, rows: dict[str, np.ndarray], batch_size: int = 65536) -> np.ndarray:
    """:func:`transform_batches` gathered into one (len(rows["item_idx"]), F) float32 matrix."""
    out = np.empty((len(rows["item_idx"]), feature_width(transform_dir)), dtype=np.float32)
    lo = 0
    for block in transform_batches(transform_dir, rows, batch_size):
        out[lo : lo + len(block)] = block
        lo += len(block)
    return out


def transform_new_items(transform_dir: str | Path, items: "pa.Table", degree: np.ndarray) -> np.ndarray:
    """Featurise item rows that were not part of the analysis (e.g. items added after training).

    Args:
      transform_dir: the feature stage's saved ``transform/`` folder.
      items: an items table (contract ``ITEMS``) with unique ``item_id``s; columns the transform
        was analysed with but the table lacks count as missing.
      degree: (len(items),) each item's degree in the current graph.

    Returns:
      (len(items), F) float32, rows in the order of ``items``, exactly as the feature stage would
      have featurised them.
    """
    import pyarrow as pa

    ids = pa.table({"item_id": items.column("item_id")})
    rows, rejected = item_rows(items, ids, degree)
    bad = [r for r in rejected if r[1] in ("null_item_id", "duplicate_item_id")]
    if bad:
        raise ValueError(f"items table: row {bad[0][0]} has a {bad[0][1].replace('_', ' ')}")
    return transform_items(transform_dir, rows)
