"""Loaders on tiny fixtures written here, including malformed rows and missing columns."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pinsage_model.data.adjacency import load_adjacency
from pinsage_model.data.inputs import LoaderError
from pinsage_model.data.movielens import load_movielens
from pinsage_model.data.reading import resolve_path
from pinsage_model.data.table import ColumnMap, load_table


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _quarantined(result, source):
    q = result.quarantine.to_pandas()
    q = q[q["source"] == str(source)]
    return sorted(zip(q["row"].tolist(), q["reason"].tolist()))


def _balanced(result):
    for counts in result.counts.values():
        assert counts["in"] == counts["kept"] + counts["quarantined"]
        assert counts["quarantined"] == sum(counts["reasons"].values())


def test_movielens_csv_flavour_with_malformed_rows(tmp_path):
    _write(
        tmp_path / "ratings.csv",
        (
            "userId,movieId,rating,timestamp\n"
            "1,10,4.0,964982703\n"  # row 0
            "1,20,3.5,964982710\n"  # row 1
            "2,abc,5.0,964982800\n"  # row 2: bad int movieId
            ",10,2.0,964982900\n"  # row 3: null userId
            "2,20,4.5,yesterday\n"  # row 4: unparsable timestamp
            "2,30,x,964983000\n"  # row 5: bad rating
            "3,10,1.0\n"  # row 6: wrong field count
            "3,030,inf,964983100\n"  # row 7: infinite rating
            "3,030,2.0,964983100\n"  # row 8: "030" is movie 30
        ),
    )
    _write(
        tmp_path / "movies.csv",
        (
            "movieId,title,genres\n"
            '10,"Heat, Part One (1995)",Action|Crime\n'
            "20,Empty (2000),(no genres listed)\n"
            "20,Again (2001),Drama\n"  # row 2: duplicate movieId
            "30,Thirty (1930),Drama\n"
        ),
    )
    _write(
        tmp_path / "tags.csv",
        ("userId,movieId,tag,timestamp\n1,10,Heist,1\n2,10,heist,2\n2,10,Pacino,3\n4,zz,bad,4\n1,30,,5\n"),
    )
    r = load_movielens(tmp_path)
    inter = r.interactions.to_pydict()
    assert inter["user_id"] == ["1", "1", "3"]
    assert inter["item_id"] == ["10", "20", "30"]
    assert inter["collection_id"] == inter["user_id"]
    assert inter["weight"] == [4.0, 3.5, 2.0]
    assert inter["timestamp"] == [964982703, 964982710, 964983100]
    assert _quarantined(r, tmp_path / "ratings.csv") == [
        (2, "bad int movieId"),
        (3, "null userId"),
        (4, "unparsable timestamp"),
        (5, "bad number rating"),
        (6, "expected 4 comma-separated fields"),
        (7, "bad number rating"),
    ]
    assert r.counts[str(tmp_path / "ratings.csv")]["in"] == 9
    items = r.items.to_pydict()
    assert items["item_id"] == ["10", "20", "30"]
    assert items["title"][0] == "Heat, Part One (1995)"
    assert items["genres"] == ["Action|Crime", None, "Drama"]
    assert items["tags"] == ["heist|pacino", None, None]
    assert _quarantined(r, tmp_path / "movies.csv") == [(2, "duplicate movieId with other values (first copy kept)")]
    assert _quarantined(r, tmp_path / "tags.csv") == [(3, "bad int movieId"), (4, "null tag")]
    _balanced(r)
    assert {"reason", "source", "row", "userId", "line", "text"} <= set(r.quarantine.column_names)
    assert r.quarantine.column_names[-3:] == ["reason", "source", "row"]


def test_movielens_dat_flavour_latin1(tmp_path):
    _write(tmp_path / "ratings.dat", "1::1::5::978300760\n1::2::3\n\n2::1::4::978300761\n", "latin-1")
    _write(tmp_path / "movies.dat", "1::Amélie (2001)::Comedy|Romance\n2::Zoë::Drama\n", "latin-1")
    r = load_movielens(tmp_path)
    assert r.interactions["item_id"].to_pylist() == ["1", "1"]
    assert r.interactions["user_id"].to_pylist() == ["1", "2"]
    assert r.items["title"].to_pylist() == ["Amélie (2001)", "Zoë"]
    # line numbers count every physical line (0-based), blank ones included
    assert _quarantined(r, tmp_path / "ratings.dat") == [(1, "expected 4 fields separated by '::'")]
    _balanced(r)


def test_movielens_100k_flavour(tmp_path):
    _write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\tbad\t878887116\n")
    flags_a = "|".join(["0", "1"] + ["0"] * 17)  # Action
    flags_b = "|".join(["0"] * 5 + ["1", "0", "0", "1"] + ["0"] * 10)  # Comedy, Drama
    _write(
        tmp_path / "u.item",
        (
            f"242|Kolya (1996)|24-Jan-1997||http://x|{flags_a}\n"
            f"302|L.A. Confidential (1997)|01-Jan-1997||http://y|{flags_b}\n"
            f"377|Bad flags|01-Jan-1997||http://z|{flags_b.replace('1', '2', 1)}\n"
        ),
        "latin-1",
    )
    r = load_movielens(tmp_path)
    assert r.interactions["item_id"].to_pylist() == ["242", "302"]
    assert _quarantined(r, tmp_path / "u.data") == [(2, "bad number rating")]
    assert r.items["genres"].to_pylist() == ["Action", "Comedy|Drama"]
    assert _quarantined(r, tmp_path / "u.item") == [(2, "bad genre flag")]
    _balanced(r)


def test_movielens_missing_files_and_columns(tmp_path):
    with pytest.raises(LoaderError, match="no MovieLens ratings file"):
        load_movielens(tmp_path)
    _write(tmp_path / "ratings.csv", "userId,movieId,stars,timestamp\n1,2,3,4\n")
    with pytest.raises(LoaderError, match=r"ratings\.csv: line 1: missing required column 'rating'"):
        load_movielens(tmp_path)


def test_adjacency_lists(tmp_path):
    train = _write(tmp_path / "train.txt", "0 1 2 3\n1 4 x\n\nbad 5\n2\n3  7\t8 \n")
    test = _write(tmp_path / "test.txt", "0 9\n1 1.5\n")
    r = load_adjacency(train, test)
    t = r.interactions.to_pydict()
    assert t["user_id"] == ["0", "0", "0", "1", "3", "3"]
    assert t["item_id"] == ["1", "2", "3", "4", "7", "8"]
    assert t["timestamp"] == [0, 1, 2, 0, 0, 1]  # position within the line
    assert t["collection_id"] == t["user_id"] and t["weight"] == [1.0] * 6
    assert _quarantined(r, train) == [(1, "bad int item_id"), (3, "bad int user_id")]
    assert r.counts[str(train)] == {
        "in": 8,
        "kept": 6,
        "quarantined": 2,
        "reasons": {"bad int item_id": 1, "bad int user_id": 1},
        "notes": [],
    }
    assert r.test_interactions["item_id"].to_pylist() == ["9"]
    assert _quarantined(r, test) == [(1, "bad int item_id")]
    assert r.items is None
    _balanced(r)
    with pytest.raises(LoaderError, match="missing.txt: file not found"):
        load_adjacency(tmp_path / "missing.txt")


def test_generic_csv_with_column_mapping(tmp_path):
    src = _write(
        tmp_path / "events.csv",
        (
            "uid,iid,when,board,score\n"
            "a,x,1700000000,b1,1\n"
            "a,y,2023-11-14T22:13:21Z,b1,2.5\n"
            "b,,1700000100,b2,1\n"  # row 2: null item
            "b,z,not-a-time,b2,1\n"  # row 3
            "b,z,1700000200,b2,nan\n"  # row 4
        ),
    )
    cols = ColumnMap.of(user="uid", item="iid", timestamp="when", collection="board", weight="score")
    r = load_table(src, columns=cols)
    t = r.interactions.to_pydict()
    assert t["item_id"] == ["x", "y"]
    assert t["timestamp"] == [1700000000, 1700000001]
    assert t["collection_id"] == ["b1", "b1"] and t["weight"] == [1.0, 2.5]
    assert _quarantined(r, src) == [(2, "null iid"), (3, "unparsable when"), (4, "bad number score")]
    _balanced(r)
    with pytest.raises(LoaderError, match=r"events\.csv: line 1: missing required column 'user_id'"):
        load_table(src)


def test_generic_parquet_with_item_vectors_column(tmp_path):
    inter = tmp_path / "inter.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "u1", None],
                "item_id": ["a", "b", "c"],
                "timestamp": pa.array([5_000, 6_000, 7_000], pa.timestamp("ms", tz="Europe/Paris")),
                "rating": [4.0, 5.0, 3.0],
            }
        ),
        inter,
    )
    items = tmp_path / "items.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": ["a", "b", "c", "d", "a"],
                "features": [[1.0, 2.0], [float("nan"), 0.0], [1.0], [3.0, 4.0], [0.0, 0.0]],
                "title": ["A", "B", "C", "D", "A2"],
            }
        ),
        items,
    )
    r = load_table(inter, items)
    assert r.interactions["weight"].to_pylist() == [4.0, 5.0]  # "rating" used as weight
    assert r.interactions["timestamp"].to_pylist() == [5, 6]  # Parquet timestamps -> Unix seconds
    assert "collection_id" not in r.interactions.column_names
    assert _quarantined(r, inter) == [(2, "null user_id")]
    assert r.items["item_id"].to_pylist() == ["a", "d"]
    assert r.items["features"].to_pylist() == [[1.0, 2.0], [3.0, 4.0]]
    assert r.items["title"].to_pylist() == ["A", "D"]
    assert _quarantined(r, items) == [
        (1, "non-finite feature (NaN or inf)"),
        (2, "features length != 2"),
        (4, "duplicate item_id with other values (first copy kept)"),
    ]
    _balanced(r)


def test_npy_vectors_with_ids_file(tmp_path):
    inter = _write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\nu,b,2\n")
    items = _write(tmp_path / "items.csv", "item_id,title\na,Alpha\nb,Beta\n")
    vecs = np.array([[0.5, 1.0], [np.inf, 0.0], [2.0, 3.0]], dtype=np.float32)
    np.save(tmp_path / "v.npy", vecs)
    _write(tmp_path / "ids.txt", "b\nz\nc\n")
    r = load_table(inter, items, tmp_path / "v.npy", tmp_path / "ids.txt")
    d = r.items.to_pydict()
    assert d["item_id"] == ["a", "b", "c"]
    assert d["features"] == [None, [0.5, 1.0], [2.0, 3.0]]
    assert d["title"] == ["Alpha", "Beta", None]
    assert _quarantined(r, tmp_path / "v.npy") == [(1, "non-finite feature (NaN or inf)")]
    _balanced(r)
    _write(tmp_path / "ids2.txt", "a\nb\n")
    with pytest.raises(LoaderError, match=r"v\.npy: vectors of shape \(3, 2\) do not match the 2 ids"):
        load_table(inter, None, tmp_path / "v.npy", tmp_path / "ids2.txt")


def test_resolve_path_tries_cwd_then_repo_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path("configs/demo.yaml").name == "demo.yaml"  # found under the repo root
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("x")
    assert resolve_path("configs/demo.yaml") == (tmp_path / "configs" / "demo.yaml").resolve()
    with pytest.raises(LoaderError, match="data.path 'nope' not found"):
        resolve_path("nope", "data.path")


def test_latin1_csv_is_read(tmp_path):
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,10\n")
    _write(tmp_path / "movies.csv", "movieId,title,genres\n1,Am\u00e9lie,NA\n", "latin-1")
    r = load_movielens(tmp_path)
    assert r.items["title"].to_pylist() == ["Am\u00e9lie"]
    assert r.items["genres"].to_pylist() == ["NA"]  # only empty fields are missing, "NA" is a value
