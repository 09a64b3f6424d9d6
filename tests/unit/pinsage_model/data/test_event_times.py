"""Whether the data has event times: the loaders say it, the interactions files record it (issue #25)."""

import pyarrow as pa
import pyarrow.parquet as pq

from pinsage_model.data.adjacency import load_adjacency
from pinsage_model.data.contracts import TIMES_KEY, has_event_times, times_metadata
from pinsage_model.data.table import ColumnMap, load_table
from pinsage_model.io import atomic_write_parquet


def test_adjacency_has_no_times_and_a_table_with_a_time_column_has(tmp_path):
    (tmp_path / "train.txt").write_text("0 5 3\n1 4\n")
    (tmp_path / "test.txt").write_text("0 4\n")
    adj = load_adjacency(tmp_path / "train.txt", tmp_path / "test.txt")
    assert adj.event_times is False
    assert adj.interactions["timestamp"].to_pylist() == [0, 1, 0]  # positions in the line, not times
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\nu,a,100\nu,b,200\n")
    assert load_table(tmp_path / "log.csv").event_times is True


def test_a_table_without_a_time_column_has_no_times_and_keeps_repeats(tmp_path):
    # rows 0..4; row 2 has no item (quarantined), row 3 repeats row 0 (a repeat engagement, kept)
    (tmp_path / "log.csv").write_text("user_id,item_id\nu,a\nu,b\nv,\nu,a\nv,c\n")
    result = load_table(tmp_path / "log.csv", columns=ColumnMap.of(timestamp=""))
    assert result.event_times is False
    got = result.interactions.select(["user_id", "item_id", "timestamp"]).to_pylist()
    assert [(r["user_id"], r["item_id"], r["timestamp"]) for r in got] == [
        ("u", "a", 0),
        ("u", "b", 1),
        ("u", "a", 3),
        ("v", "c", 4),
    ]  # timestamp = the row's position in the file, not a time
    assert result.counts[str(tmp_path / "log.csv")]["quarantined"] == 1


def test_the_flag_is_written_into_the_file_and_read_back(tmp_path):
    table = pa.table({"user_id": ["0"], "item_id": ["5"], "timestamp": pa.array([0], pa.int64())})
    atomic_write_parquet(tmp_path / "none.parquet", table, metadata=times_metadata(False))
    atomic_write_parquet(tmp_path / "timed.parquet", table, metadata=times_metadata(True))
    assert pq.read_schema(tmp_path / "none.parquet").metadata == {TIMES_KEY.encode(): b"none"}
    assert not has_event_times(tmp_path / "none.parquet")
    assert pq.read_schema(tmp_path / "timed.parquet").metadata is None  # timed files are written as before
    assert has_event_times(tmp_path / "timed.parquet")
