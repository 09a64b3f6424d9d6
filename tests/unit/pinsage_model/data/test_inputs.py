"""File-level checks and per-line decoding of users' input files, on tiny files written here."""

import gzip
import os

import numpy as np
import pytest

from pinsage_model.data.inputs import LoaderError, check_file, join_lines, read_lines, read_npy, read_parquet


def test_lines_keep_physical_numbering_without_bom_and_crlf(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes(b"\xef\xbb\xbfh1,h2\r\n1,x\r\n   \r\n2,y")  # no final line end
    tl = read_lines(p, "a CSV")
    assert tl.lines.to_pylist() == ["h1,h2", "1,x", "   ", "2,y"]
    assert tl.blank.tolist() == [False, False, True, False]
    assert tl.note() == [] and len(tl.latin1) == 0
    assert join_lines(tl.lines) == b"h1,h2\n1,x\n   \n2,y\n"


def test_only_the_lines_that_are_not_utf8_are_decoded_as_latin1(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes("id,title\n1,Amélie\n".encode() + "2,Amélie\n".encode("latin-1") + "3,千\n".encode())
    tl = read_lines(p, "a CSV")
    assert tl.lines.to_pylist() == ["id,title", "1,Amélie", "2,Amélie", "3,千"]
    assert tl.latin1.tolist() == [2]
    assert tl.note() == ["1 lines not valid UTF-8 were decoded as latin-1 (only these lines; lines 3)"]


def test_file_level_refusals_name_the_file_and_what_was_expected(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "zipped.csv").write_bytes(gzip.compress(b"a,b\n1,2\n"))
    os.symlink("loop.csv", tmp_path / "loop.csv")
    os.symlink("nowhere.csv", tmp_path / "dangling.csv")
    cases = {
        "empty.csv": "empty file (0 bytes), expected ratings",
        "folder.csv": "is a folder, expected a file (ratings)",
        "zipped.csv": "is gzip-compressed, expected ratings (plain text); decompress it first",
        "loop.csv": "symlink loop",
        "dangling.csv": "dangling symlink to 'nowhere.csv'",
        "missing.csv": "file not found (ratings)",
    }
    for name, words in cases.items():
        with pytest.raises(LoaderError) as err:
            read_lines(tmp_path / name, "ratings")
        assert str(err.value).startswith(str(tmp_path / name)) and words in str(err.value), str(err.value)
    assert check_file(tmp_path / "zipped.csv", "ratings") == tmp_path / "zipped.csv"


def test_npy_without_pickle_and_parquet_with_its_footer(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(LoaderError, match=r"obj\.npy: holds pickled Python objects .*pickles are refused"):
        read_npy(tmp_path / "obj.npy", "vectors")
    np.save(tmp_path / "ok.npy", np.eye(2, dtype=np.int32))
    assert read_npy(tmp_path / "ok.npy", "vectors").tolist() == [[1, 0], [0, 1]]
    np.save(tmp_path / "b.npy", np.array([True, False]))
    with pytest.raises(LoaderError, match=r"b\.npy: dtype bool"):
        read_npy(tmp_path / "b.npy", "vectors")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "t.parquet")
    table, n = read_parquet(tmp_path / "t.parquet", "a table")
    assert n == 3 and table["x"].to_pylist() == [1, 2, 3]
    data = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[:-10])
    with pytest.raises(LoaderError, match=r"cut\.parquet: truncated Parquet file"):
        read_parquet(tmp_path / "cut.parquet", "a table")
