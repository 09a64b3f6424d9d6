"""The analysis input: item rows as the Arrow record batches TFXIO turns into tensors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pinsage_model.features.transform import record_batch, write_record_batches

ROWS = {
    "item_idx": np.arange(3, dtype=np.int64),
    "log_degree": np.array([0.5, 0.0, 2.0], np.float32),
    "vector": np.array([[1, 2], [3, 4], [5, 6]], np.float32),
    "title": np.array(["Toy Story", "", "Amélie"], dtype=object),
}
SCHEMA = pa.schema(
    [
        ("item_idx", pa.large_list(pa.int64())),
        ("log_degree", pa.large_list(pa.float32())),
        ("vector", pa.large_list(pa.float32())),
        ("title", pa.large_list(pa.large_binary())),
    ]
)


def test_record_batch_holds_each_row_as_a_list_of_its_values():
    batch = record_batch(ROWS, SCHEMA, 1, 3)
    assert batch.schema == SCHEMA and batch.num_rows == 2
    assert batch.column("item_idx").to_pylist() == [[1], [2]]
    assert batch.column("log_degree").to_pylist() == [[0.0], [2.0]]
    assert batch.column("vector").to_pylist() == [[3.0, 4.0], [5.0, 6.0]]
    assert batch.column("title").to_pylist() == [[b""], ["Amélie".encode("utf-8")]]


def test_record_batch_gives_tfxio_the_rows_tensors(tmp_path):
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.tfxio.parquet_tfxio import ParquetTFXIO
    from tfx_bsl.tfxio.tensor_adapter import TensorAdapter

    spec = {
        "item_idx": tf.io.FixedLenFeature([], tf.int64),
        "log_degree": tf.io.FixedLenFeature([], tf.float32),
        "vector": tf.io.FixedLenFeature([2], tf.float32),
        "title": tf.io.FixedLenFeature([], tf.string),
    }
    # the source the analysis reads with: its Arrow columns are those above (in its own order)
    source = ParquetTFXIO(str(tmp_path / "*.parquet"), schema=schema_utils.schema_from_feature_spec(spec))
    assert {f.name: f.type for f in source.ArrowSchema()} == {f.name: f.type for f in SCHEMA}
    adapter = TensorAdapter(source.TensorAdapterConfig())
    tensors = adapter.ToBatchTensors(record_batch(ROWS, source.ArrowSchema(), 0, 3))
    np.testing.assert_array_equal(tensors["item_idx"], [0, 1, 2])
    np.testing.assert_array_equal(tensors["log_degree"], [0.5, 0.0, 2.0])
    np.testing.assert_array_equal(tensors["vector"], [[1, 2], [3, 4], [5, 6]])
    assert tensors["title"].numpy().tolist() == [b"Toy Story", b"", "Amélie".encode("utf-8")]


def test_shards_split_the_rows_in_order(tmp_path):
    write_record_batches(ROWS, SCHEMA, tmp_path, batch_rows=2)
    shards = sorted(tmp_path.glob("*.parquet"))
    assert [p.name for p in shards] == ["part-00000.parquet", "part-00001.parquet"]
    tables = [pq.read_table(p) for p in shards]
    assert [t.num_rows for t in tables] == [2, 1] and all(t.schema == SCHEMA for t in tables)
    assert pa.concat_tables(tables).column("vector").to_pylist() == [[1, 2], [3, 4], [5, 6]]
