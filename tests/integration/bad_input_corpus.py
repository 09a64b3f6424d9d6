"""A corpus of broken and awkward inputs for the raw stage, written by the tests (no binaries here).

Each :class:`Case` writes its files into a folder (``build``) and returns the ``data`` config
section that points at them; the expectation is either a refusal (exit code 1 and words the
one-line error must contain: file, line or row, column) or a load (per file: kept rows and
quarantine reasons with counts; notes and cross-file findings that must be reported; extra
checks on the written tables). Classes follow issue 14: 1 entry points (every case runs through
every entry point), 2 errors that name the file, 3 bad values, 4 duplicates, 5 cross-file
consistency, 6 rows swallowed without a count, 7 encoding; ``valid`` inputs must load exactly.
``in`` is counted here from the files themselves (:func:`count_records`), never from the loader.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# The logical time the corpus runs at (SOURCE_DATE_EPOCH): 2026-01-01T00:00:00Z.
NOW = 1_767_225_600
FUTURE = 4_102_444_800  # 2100-01-01
FUTURE_REASON = "timestamp in the future (after the run's logical time + data.future_tolerance_s)"
ML_SCALE = "rating outside 0.5-5 (the MovieLens ratings.csv scale)"
UNBALANCED = "unbalanced quote (a quoted field is not closed on its line)"

R_HEAD = "userId,movieId,rating,timestamp\n"
R_OK = "1,1,4.0,964982703\n1,2,3.5,964982710\n2,1,5.0,964982800\n2,3,1.0,964982900\n"
MOVIES = "movieId,title,genres\n1,One (1995),Drama\n2,Two (1996),Comedy\n3,Three (1997),Action\n"
EV_HEAD = "user_id,item_id,timestamp\n"
EV_OK = "u1,a,1700000000\nu1,b,1700000100\nu2,a,1700000200\n"


@dataclass
class Case:
    """One input and its exact expected outcome.

    Attributes:
      name: test id.
      cls: the issue's class (1-7) or ``valid``.
      fmt: ``movielens``, ``adjacency``, ``csv``, ``parquet`` or ``npy``.
      build: writes the files into a folder, returns the ``data`` config section.
      rc: expected exit code (0 loads, 1 refused, 2 config error).
      words: for a refusal, words the one-line error must contain.
      files: per file name (basename), (kept, {reason: count}) — the exact quarantine.
      notes: per file name, words one of its notes must contain.
      findings: finding name -> fields it must have (subset).
      check: extra assertions on the raw output folder.
    """

    name: str
    cls: str
    fmt: str
    build: Callable[[Path], dict]
    rc: int = 0
    words: tuple[str, ...] = ()
    files: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    findings: dict[str, dict] = field(default_factory=dict)
    check: Callable[[Path], None] | None = None


def _w(path: Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def count_records(path: Path) -> int:
    """Records a file holds, counted without any of the loaders' parsers."""
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".npy":
        return int(np.load(path, mmap_mode="r").shape[0])
    lines = [ln for ln in path.read_bytes().split(b"\n") if ln.strip()]
    if path.name in ("train.txt", "test.txt"):  # adjacency: item tokens after the user
        return sum(len(ln.split()) - 1 for ln in lines)
    if path.suffix == ".csv":
        return len(lines) - 1  # the header
    return len(lines)


def _table(raw: Path) -> dict:
    return pq.read_table(raw / "interactions.parquet").to_pydict()


def _items(raw: Path) -> dict:
    return pq.read_table(raw / "items.parquet").to_pydict()


# --------------------------------------------------------------------------------------------
# MovieLens folder


def _ml(
    ratings: str | bytes | None = R_HEAD + R_OK,
    movies: str | bytes | None = MOVIES,
    tags: str | None = None,
    ratings_name: str = "ratings.csv",
    movies_name: str = "movies.csv",
    encoding: str = "utf-8",
):
    def build(d: Path) -> dict:
        ml = d / "ml"
        ml.mkdir()
        if ratings is not None:
            _w(ml / ratings_name, ratings, encoding)
        if movies is not None:
            _w(ml / movies_name, movies, encoding)
        if tags is not None:
            _w(ml / "tags.csv", tags)
        return {"source": "movielens", "path": str(ml)}

    return build


def _ml_special(kind: str):
    def build(d: Path) -> dict:
        cfg = _ml()(d)
        target = Path(cfg["path"]) / "ratings.csv"
        target.unlink()
        if kind == "gzip":
            target.write_bytes(gzip.compress((R_HEAD + R_OK).encode()))
        elif kind == "folder":
            target.mkdir()
        elif kind == "loop":
            os.symlink("ratings.csv", target)
        return cfg

    return build


def _ml_awkward_check(raw: Path) -> None:
    t = _table(raw)
    assert t["user_id"] == ["2", "1", "1", "2"] and t["item_id"] == ["3", "1", "2", "1"]
    assert t["timestamp"] == [964982900, 964982703, 964982710, 964982800]  # file order, unsorted
    assert t["weight"] == [1.0, 4.0, 3.5, 5.0]
    it = _items(raw)
    assert it["title"] == ['Heat, "The Remake" (1995)', "Amélie (2001)", "千と千尋の神隠し (2001)"]
    assert it["genres"] == ["Action|Crime", "Comedy|Romance", "Animation"]
    assert it["tags"] == ["heist", None, "spirits"]


def _ml_latin1_check(raw: Path) -> None:
    assert _items(raw)["title"] == ["Amélie (2001)", "Zoë (1999)", "Plain"]
    assert _table(raw)["timestamp"] == [978300760, 978300761, 978300762]


def _ml_millis_check(raw: Path) -> None:
    assert _table(raw)["timestamp"] == [964982703, 964982710, 964982800, 964982900]


def _ml_quote_check(raw: Path) -> None:
    assert _items(raw)["title"] == ["One (1995)", "Three (1997)", "Four, Five (1998)", "Six (1999)"]


def _ml_mixed_check(raw: Path) -> None:
    assert _items(raw)["title"] == ["Amélie (2001)", "Amélie encore (2002)", "Zoë (1999)"]


def _ml_no_movies_check(raw: Path) -> None:
    it = _items(raw)
    assert it["item_id"] == ["1", "2", "3"] and it["tags"] == ["funny|heist", None, None]


MOVIELENS = [
    Case(
        "ml_valid_bom_crlf_quotes_unicode_reordered_unsorted",
        "valid",
        "movielens",
        _ml(
            ratings="\ufefftimestamp,rating,movieId,userId\r\n964982900,1.0,3,2\r\n964982703,4.0,1,1\r\n"
            "964982710,3.5,2,1\r\n964982800,5.0,1,2\r\n",
            movies='movieId,title,genres\r\n1,"Heat, ""The Remake"" (1995)",Action|Crime\r\n'
            "2,Amélie (2001),Comedy|Romance\r\n3,千と千尋の神隠し (2001),Animation\r\n",
            tags="userId,movieId,tag,timestamp\n1,1,Heist,5\n2,3,spirits,6\n",
        ),
        files={"ratings.csv": (4, {}), "movies.csv": (3, {}), "tags.csv": (2, {})},
        findings={"tags_file": {"status": "read", "tags": 2}},
        check=_ml_awkward_check,
    ),
    Case(
        "ml_dat_latin1_file",
        "7",
        "movielens",
        _ml(
            ratings="1::1::5::978300760\n1::2::3::978300761\n2::3::4::978300762\n",
            movies="1::Amélie (2001)::Comedy\n2::Zoë (1999)::Drama\n3::Plain::Drama\n",
            ratings_name="ratings.dat",
            movies_name="movies.dat",
            encoding="latin-1",
        ),
        files={"ratings.dat": (3, {}), "movies.dat": (3, {})},
        notes={"movies.dat": ("2 lines not valid UTF-8", "latin-1", "every non-ASCII line")},
        check=_ml_latin1_check,
    ),
    Case(
        "ml_wrong_separator",
        "2",
        "movielens",
        _ml(ratings=R_HEAD.replace(",", ";") + R_OK.replace(",", ";")),
        rc=1,
        words=("ratings.csv", "line 1", "separated by ';'", "expected ','"),
    ),
    Case(
        "ml_ratings_gzip_named_csv",
        "2",
        "movielens",
        _ml_special("gzip"),
        rc=1,
        words=("ratings.csv", "gzip-compressed", "expected MovieLens ratings CSV", "gunzip"),
    ),
    Case(
        "ml_ratings_is_a_folder",
        "2",
        "movielens",
        _ml_special("folder"),
        rc=1,
        words=("ratings.csv", "is a folder, expected a file"),
    ),
    Case(
        "ml_ratings_symlink_loop",
        "2",
        "movielens",
        _ml_special("loop"),
        rc=1,
        words=("ratings.csv", "symbolic links", "symlink loop"),
    ),
    Case(
        "ml_every_row_bad",
        "2",
        "movielens",
        _ml(ratings=R_HEAD + "x,1,4,10\ny,2,4,11\n"),
        rc=1,
        words=("ratings.csv", "no usable interactions", "all 2 records", "first at line 2", "bad int userId"),
    ),
    Case(
        "ml_unknown_config_key",
        "1",
        "movielens",
        lambda d: {**_ml()(d), "pathh": "x"},
        rc=2,
        words=("config.yaml", "unknown key 'data.pathh'"),
    ),
    Case(
        "ml_bad_values",
        "3",
        "movielens",
        _ml(
            ratings=R_HEAD + R_OK + "3,1,7.0,964982703\n3,2,0,964982703\n"
            f"3,3,4.0,-5\n3,1,4.0,{FUTURE}\n3,99999999999999999999,4.0,964982703\n"
        ),
        files={
            "ratings.csv": (4, {ML_SCALE: 2, "negative timestamp": 1, FUTURE_REASON: 1, "movieId beyond int64": 1}),
            "movies.csv": (3, {}),
        },
    ),
    Case(
        "ml_milliseconds",
        "3",
        "movielens",
        _ml(
            ratings=R_HEAD + "1,1,4.0,964982703000\n1,2,3.5,964982710000\n2,1,5.0,964982800123\n2,3,1.0,964982900999\n"
        ),
        files={"ratings.csv": (4, {}), "movies.csv": (3, {})},
        notes={"ratings.csv": ("'timestamp' looks like milliseconds", "converted to seconds")},
        check=_ml_millis_check,
    ),
    Case(
        "ml_dat_rating_scale",
        "3",
        "movielens",
        _ml(ratings="1::1::5::978300760\n1::2::0.5::978300761\n", movies=None, ratings_name="ratings.dat"),
        files={"ratings.dat": (1, {"rating outside 1-5 (the MovieLens ratings.dat scale)": 1})},
        findings={"movies_file": {"file": None, "items": 1}},
    ),
    Case(
        "ml_duplicates",
        "4",
        "movielens",
        _ml(
            ratings=R_HEAD + R_OK + "1,1,4.0,964982703\n1,1,2.0,964999999\n",
            movies=MOVIES + "2,Two (1996),Comedy\n3,Three again (1997),Action\n",
        ),
        files={
            "ratings.csv": (5, {"duplicate rating (same user, movie, timestamp)": 1}),
            "movies.csv": (
                3,
                {"duplicate movieId (identical row)": 1, "duplicate movieId with other values (first copy kept)": 1},
            ),
        },
        notes={"ratings.csv": ("1 repeated (user, item) engagements at other times kept",)},
    ),
    Case(
        "ml_ratings_of_unknown_movies",
        "5",
        "movielens",
        _ml(ratings=R_HEAD + R_OK + "2,9,3.0,964983000\n"),
        files={"ratings.csv": (5, {}), "movies.csv": (3, {})},
        findings={"items_missing_from_item_table": {"interactions": 1, "items": 1, "examples": ["9"]}},
    ),
    Case(
        "ml_no_movies_file_tags_still_read",
        "5",
        "movielens",
        _ml(movies=None, tags="userId,movieId,tag,timestamp\n1,1,Heist,5\n2,1,funny,6\n2,7,orphan,7\n"),
        files={"ratings.csv": (4, {}), "tags.csv": (3, {})},
        findings={"movies_file": {"file": None, "items": 3}, "tags_file": {"status": "read", "tags": 3}},
        check=_ml_no_movies_check,
    ),
    Case(
        "ml_unbalanced_quote_in_movies",
        "6",
        "movielens",
        _ml(
            movies='movieId,title,genres\n1,One (1995),Drama\n2,"Two (1996),Comedy\n3,Three (1997),Action\n'
            '4,"Four, Five (1998)",Drama\n6,Six (1999),Drama\n'
        ),
        files={"ratings.csv": (4, {}), "movies.csv": (4, {UNBALANCED: 1})},
        findings={"items_missing_from_item_table": {"interactions": 1, "examples": ["2"]}},
        check=_ml_quote_check,
    ),
    Case(
        "ml_dat_field_counts_and_blank_lines",
        "6",
        "movielens",
        _ml(
            ratings="1::1::5::978300760\n\n1::2::3\n2::3::4::978300762::extra\n\n2::1::4::978300763\n",
            movies=None,
            ratings_name="ratings.dat",
        ),
        files={"ratings.dat": (2, {"expected 4 fields separated by '::'": 2})},
        findings={"movies_file": {"file": None, "items": 1}},
    ),
    Case(
        "ml_one_latin1_line_in_utf8",
        "7",
        "movielens",
        _ml(
            movies="movieId,title,genres\n1,Amélie (2001),Comedy\n".encode()
            + "2,Amélie encore (2002),Comedy\n".encode("latin-1")
            + "3,Zoë (1999),Drama\n".encode()
        ),
        files={"ratings.csv": (4, {}), "movies.csv": (3, {})},
        notes={"movies.csv": ("1 lines not valid UTF-8", "only these lines", "lines 3")},
        check=_ml_mixed_check,
    ),
]


# --------------------------------------------------------------------------------------------
# Adjacency lists


def _adj(train: str | bytes | None = "0 1 2 3\n1 2 3\n", test: str | bytes | None = None, **extra):
    def build(d: Path) -> dict:
        folder = d / "adj"
        folder.mkdir()
        if isinstance(train, str) and train == "<folder>":
            (folder / "train.txt").mkdir()
        elif train is not None:
            _w(folder / "train.txt", train)
        if test is not None:
            _w(folder / "test.txt", test)
        return {"source": "adjacency", "path": str(folder), **extra}

    return build


LONG = 100_000


def _adj_long_check(raw: Path) -> None:
    t = _table(raw)
    assert len(t["item_id"]) == LONG + 3
    assert t["item_id"][:3] == ["1", "2", "3"] and t["item_id"][LONG - 1] == str(LONG)
    assert t["timestamp"][LONG - 1] == LONG - 1
    assert t["user_id"][LONG:] == ["1", "1", "2"]


def _adj_repeat_check(raw: Path) -> None:
    t = _table(raw)
    assert t["item_id"] == ["1", "2", "3", "2", "3"] and t["timestamp"] == [0, 1, 3, 0, 1]


ADJACENCY = [
    Case(
        "adj_valid_very_long_line_tabs_crlf",
        "valid",
        "adjacency",
        _adj(train="0 " + " ".join(str(i) for i in range(1, LONG + 1)) + "\r\n1\t5  6\r\n\r\n2 7\r\n", test="1 7\n"),
        files={"train.txt": (LONG + 3, {}), "test.txt": (1, {})},
        check=_adj_long_check,
    ),
    Case(
        "adj_comma_separated",
        "2",
        "adjacency",
        _adj(train="0,1,2\n1,2,3\n"),
        rc=1,
        words=("train.txt", "line 1", "separated by ','", "expected whitespace"),
    ),
    Case("adj_zero_byte_train", "2", "adjacency", _adj(train=""), rc=1, words=("train.txt", "empty file (0 bytes)")),
    Case(
        "adj_train_is_a_folder",
        "2",
        "adjacency",
        _adj(train="<folder>"),
        rc=1,
        words=("train.txt", "is a folder, expected a file"),
    ),
    Case(
        "adj_bad_values",
        "3",
        "adjacency",
        _adj(train="0 1 2\n1 99999999999999999999 -3 1.5 4\n"),
        files={"train.txt": (3, {"item_id beyond int64": 1, "bad int item_id": 2})},
    ),
    Case(
        "adj_item_repeated_on_line",
        "4",
        "adjacency",
        _adj(train="0 1 2 1 3\n1 2 3\n"),
        files={"train.txt": (5, {"item repeated on its line (first kept)": 1})},
        check=_adj_repeat_check,
    ),
    Case(
        "adj_cold_test_users_and_items",
        "5",
        "adjacency",
        _adj(test="0 4\n7 2\n"),
        files={"train.txt": (5, {}), "test.txt": (2, {})},
        findings={
            "test_users_not_in_train": {"rows": 1, "examples": ["7"]},
            "test_items_not_in_train": {"rows": 1, "examples": ["4"]},
        },
    ),
    Case(
        "adj_leak_is_an_error",
        "5",
        "adjacency",
        _adj(test="0 3\n1 9\n"),
        rc=1,
        words=("test.txt", "1 test pairs", "also occur in", "train.txt", "user '0', item '3'", "data.allow_leaks"),
    ),
    Case(
        "adj_leak_allowed",
        "5",
        "adjacency",
        _adj(test="0 3\n1 9\n", allow_leaks=True),
        files={"train.txt": (5, {}), "test.txt": (2, {})},
        findings={
            "test_pairs_in_train": {"rows": 1, "first": {"user_id": "0", "item_id": "3"}},
            "test_items_not_in_train": {"rows": 1, "examples": ["9"]},
        },
    ),
    Case(
        "adj_user_only_lines_blank_lines_counted",
        "6",
        "adjacency",
        _adj(train="0 1 2 \n\n5\n  1\t3\r\n"),
        files={"train.txt": (3, {})},
    ),
    Case(
        "adj_latin1_byte_in_a_token",
        "7",
        "adjacency",
        _adj(train=b"0 1 2\n1 \xe92 3\n"),
        files={"train.txt": (3, {"bad int item_id": 1})},
        notes={"train.txt": ("1 lines not valid UTF-8", "lines 2")},
    ),
]


# --------------------------------------------------------------------------------------------
# Generic tables: CSV


def _csv(events: str | bytes | None = EV_HEAD + EV_OK, items: str | bytes | None = None, gz: bool = False, **extra):
    def build(d: Path) -> dict:
        data = events.encode() if isinstance(events, str) else events
        ev = _w(d / "events.csv", gzip.compress(data) if gz else data)
        cfg = {"source": "table", "interactions_path": str(ev), **extra}
        if items is not None:
            cfg["items_path"] = str(_w(d / "items.csv", items))
        return cfg

    return build


def _csv_valid_check(raw: Path) -> None:
    t = _table(raw)
    assert t["user_id"] == ["u,2", "u1", "u1"] and t["item_id"] == ["b", "a", "b"]
    assert t["timestamp"] == [1700000100, 1700000000, 1700000001]
    assert t["weight"] == [2.5, 1.0, 3.0]
    it = _items(raw)
    assert it["item_id"] == ["a", "b"] and it["title"] == ['Ça "va" (2001)', "Zoë, or not"]
    assert [[round(x, 6) for x in v] for v in it["features"]] == [[0.1, 0.2], [0.3, 0.4]]


def _csv_quote_check(raw: Path) -> None:
    assert _table(raw)["item_id"] == ["a", "b", "a"]


def _csv_latin1_check(raw: Path) -> None:
    assert _items(raw)["title"] == ["Amélie", "Zoë"]


CSV = [
    Case(
        "csv_valid_bom_crlf_quotes_reordered_iso_unsorted",
        "valid",
        "csv",
        _csv(
            events='\ufeffweight,timestamp,item_id,user_id\r\n2.5,2023-11-14T22:15:00Z,b,"u,2"\r\n'
            "1.0,1700000000,a,u1\r\n3.0,2023-11-14T22:13:21Z,b,u1\r\n",
            items='item_id,title,features\r\na,"Ça ""va"" (2001)","[0.1, 0.2]"\r\nb,"Zoë, or not",0.3 0.4\r\n',
        ),
        files={"events.csv": (3, {}), "items.csv": (2, {})},
        check=_csv_valid_check,
    ),
    Case(
        "csv_gzip_named_csv",
        "2",
        "csv",
        _csv(gz=True),
        rc=1,
        words=("events.csv", "gzip-compressed", "expected an interactions table"),
    ),
    Case(
        "csv_tab_separated_named_csv",
        "2",
        "csv",
        _csv(events=(EV_HEAD + EV_OK).replace(",", "\t")),
        rc=1,
        words=("events.csv", "line 1", "separated by '\\t'", "expected ','"),
    ),
    Case("csv_header_only", "2", "csv", _csv(events=EV_HEAD), rc=1, words=("events.csv", "no records")),
    Case(
        "csv_missing_column",
        "2",
        "csv",
        _csv(events="user_id,item,timestamp\nu1,a,1\n"),
        rc=1,
        words=("events.csv", "line 1", "missing required column 'item_id'", "data.*_column"),
    ),
    Case(
        "csv_bad_values",
        "3",
        "csv",
        _csv(
            events="user_id,item_id,timestamp,weight\nu1,a,1700000000,1\nu1,b,1700000100,-1\n"
            f"u2,a,{FUTURE},1\nu2,b,-7,1\nu3,a,1700000300,0\n"
        ),
        files={"events.csv": (2, {"negative weight": 1, FUTURE_REASON: 1, "negative timestamp": 1})},
    ),
    Case(
        "csv_microseconds",
        "3",
        "csv",
        _csv(events=EV_HEAD + "u1,a,1700000000000000\nu1,b,1700000100000000\n"),
        files={"events.csv": (2, {})},
        notes={"events.csv": ("looks like microseconds",)},
    ),
    Case(
        "csv_duplicates",
        "4",
        "csv",
        _csv(
            events=EV_HEAD + EV_OK + "u1,a,1700000000\nu1,a,1700000900\n",
            items="item_id,features\na,0.1 0.2\nb,0.3 0.4\na,0.5 0.6\n",
        ),
        files={
            "events.csv": (4, {"duplicate event (same user, item, timestamp)": 1}),
            "items.csv": (2, {"duplicate item_id with other values (first copy kept)": 1}),
        },
        notes={"events.csv": ("1 repeated (user, item) engagements",)},
    ),
    Case(
        "csv_items_missing_from_item_table",
        "5",
        "csv",
        _csv(events=EV_HEAD + EV_OK + "u2,c,1700000300\n", items="item_id,title\na,A\nb,B\n"),
        files={"events.csv": (4, {}), "items.csv": (2, {})},
        findings={"items_missing_from_item_table": {"interactions": 1, "items": 1, "examples": ["c"]}},
    ),
    Case(
        "csv_unbalanced_quote",
        "6",
        "csv",
        _csv(events=EV_HEAD + 'u1,a,1700000000\n"u1,b,1700000100\nu2,b,17\nu2,a,1700000200\n'),
        files={"events.csv": (3, {UNBALANCED: 1})},
        check=_csv_quote_check,
    ),
    Case(
        "csv_latin1_title_in_utf8_items",
        "7",
        "csv",
        _csv(items="item_id,title\n".encode() + "a,Amélie\n".encode("latin-1") + "b,Zoë\n".encode()),
        files={"events.csv": (3, {}), "items.csv": (2, {})},
        notes={"items.csv": ("1 lines not valid UTF-8", "lines 2")},
        check=_csv_latin1_check,
    ),
]


# --------------------------------------------------------------------------------------------
# Generic tables: Parquet


def _pq(events: dict | None = None, items: dict | None = None, mangle: str = "", **extra):
    def build(d: Path) -> dict:
        ev = d / "events.parquet"
        table = pa.table(
            events
            or {
                "user_id": ["u1", "u1", "u2"],
                "item_id": ["a", "b", "a"],
                "timestamp": [1700000000, 1700000100, 1700000200],
            }
        )
        pq.write_table(table, ev)
        if mangle == "truncate":
            ev.write_bytes(ev.read_bytes()[: ev.stat().st_size // 2])
        elif mangle == "csv":
            ev.write_text(EV_HEAD + EV_OK)
        cfg = {"source": "table", "interactions_path": str(ev), **extra}
        if items is not None:
            pq.write_table(pa.table(items), d / "items.parquet")
            cfg["items_path"] = str(d / "items.parquet")
        return cfg

    return build


def _pq_valid_check(raw: Path) -> None:
    t = _table(raw)
    assert t["item_id"] == ["b", "a", "a"] and t["timestamp"] == [1700000100, 1700000000, 1700000200]
    assert t["weight"] == [2.0, 1.0, 0.5]
    assert _items(raw)["features"] == [[1.0, 0.0], [0.0, 1.0]]


def _pq_strings_check(raw: Path) -> None:
    assert _table(raw)["timestamp"] == [1700000001, 1700000100]


def _pq_nanos_check(raw: Path) -> None:
    assert _table(raw)["timestamp"] == [1700000000, 1700000100]


PARQUET = [
    Case(
        "pq_valid_reordered_tz_unsorted",
        "valid",
        "parquet",
        _pq(
            events={
                "weight": [2.0, 1.0, 0.5],
                "timestamp": pa.array(
                    [1700000100_000, 1700000000_000, 1700000200_000], pa.timestamp("ms", tz="Europe/Paris")
                ),
                "item_id": ["b", "a", "a"],
                "user_id": ["u1", "u1", "u2"],
            },
            items={"item_id": ["a", "b"], "features": [[1.0, 0.0], [0.0, 1.0]]},
        ),
        files={"events.parquet": (3, {}), "items.parquet": (2, {})},
        check=_pq_valid_check,
    ),
    Case(
        "pq_truncated",
        "2",
        "parquet",
        _pq(mangle="truncate"),
        rc=1,
        words=("events.parquet", "truncated Parquet file", "export it again"),
    ),
    Case(
        "pq_csv_named_parquet",
        "2",
        "parquet",
        _pq(mangle="csv"),
        rc=1,
        words=("events.parquet", "is text, expected an interactions table", "(Parquet)"),
    ),
    Case(
        "pq_missing_column",
        "2",
        "parquet",
        _pq(events={"user_id": ["u"], "item": ["a"], "timestamp": [1]}),
        rc=1,
        words=("events.parquet", "missing required column 'item_id'"),
    ),
    Case(
        "pq_string_timestamps",
        "3",
        "parquet",
        _pq(
            events={
                "user_id": ["u1", "u1", "u2"],
                "item_id": ["a", "b", "a"],
                "timestamp": ["2023-11-14T22:13:21Z", "1700000100", "yesterday"],
            }
        ),
        files={"events.parquet": (2, {"unparsable timestamp": 1})},
        notes={"events.parquet": ("'timestamp' holds strings", "1 parsed as ISO 8601")},
        check=_pq_strings_check,
    ),
    Case(
        "pq_nanoseconds_and_negative_weight",
        "3",
        "parquet",
        _pq(
            events={
                "user_id": ["u1", "u1", "u2"],
                "item_id": ["a", "b", "a"],
                "timestamp": [1700000000_000000000, 1700000100_000000000, 1700000200_000000000],
                "weight": [1.0, 2.0, -1.0],
            }
        ),
        files={"events.parquet": (2, {"negative weight": 1})},
        notes={"events.parquet": ("looks like nanoseconds",)},
        check=_pq_nanos_check,
    ),
    Case(
        "pq_duplicates",
        "4",
        "parquet",
        _pq(
            events={"user_id": ["u1", "u1", "u1"], "item_id": ["a", "a", "b"], "timestamp": [5, 5, 6]},
            items={"item_id": ["a", "b", "a"], "title": ["A", "B", "A"]},
        ),
        files={
            "events.parquet": (2, {"duplicate event (same user, item, timestamp)": 1}),
            "items.parquet": (2, {"duplicate item_id (identical row)": 1}),
        },
    ),
    Case(
        "pq_items_missing_from_item_table",
        "5",
        "parquet",
        _pq(items={"item_id": ["a"], "title": ["A"]}),
        files={"events.parquet": (3, {}), "items.parquet": (1, {})},
        findings={"items_missing_from_item_table": {"interactions": 1, "items": 1, "examples": ["b"]}},
    ),
    Case(
        "pq_null_rows_counted_from_footer",
        "6",
        "parquet",
        _pq(events={"user_id": ["u1", None, "u2", ""], "item_id": ["a", "b", None, "c"], "timestamp": [1, 2, 3, None]}),
        files={"events.parquet": (1, {"null user_id": 2, "null item_id": 1})},
    ),
]


# --------------------------------------------------------------------------------------------
# Item vectors (.npy) with an ids file


def _npy(
    vectors=None,
    ids: str | bytes | np.ndarray | None = "a\nb\n",
    raw_vec: bytes | None = None,
    pickled: bool = False,
    events: str = EV_HEAD + EV_OK,
):
    def build(d: Path) -> dict:
        ev = _w(d / "events.csv", events)
        vec = d / "vec.npy"
        if raw_vec is not None:
            vec.write_bytes(raw_vec)
        else:
            np.save(vec, np.eye(2, dtype=np.float64) if vectors is None else vectors, allow_pickle=pickled)
        if isinstance(ids, np.ndarray):
            np.save(d / "ids.npy", ids, allow_pickle=True)
            ids_path = d / "ids.npy"
        else:
            ids_path = _w(d / "ids.txt", ids)
        return {
            "source": "table",
            "interactions_path": str(ev),
            "item_vectors_path": str(vec),
            "item_vector_ids_path": str(ids_path),
        }

    return build


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npy_valid_check(raw: Path) -> None:
    it = _items(raw)
    assert it["item_id"] == ["a", "b"] and it["features"] == [[0.5, 1.0], [2.0, 3.0]]


def _npy_dup_check(raw: Path) -> None:
    it = _items(raw)
    assert it["item_id"] == ["a", "b"] and it["features"] == [[1.0, 0.0], [0.0, 1.0]]


NPY = [
    Case(
        "npy_valid_float64_ids_crlf",
        "valid",
        "npy",
        _npy(vectors=np.array([[0.5, 1.0], [2.0, 3.0]]), ids="a\r\nb\r\n"),
        files={"events.csv": (3, {}), "vec.npy": (2, {})},
        check=_npy_valid_check,
    ),
    Case(
        "npy_zero_byte", "2", "npy", _npy(raw_vec=b""), rc=1, words=("vec.npy", "empty file (0 bytes)", "item vectors")
    ),
    Case(
        "npy_pickled_object_array",
        "2",
        "npy",
        _npy(vectors=np.array([[0.1], "x"], dtype=object), pickled=True),
        rc=1,
        words=("vec.npy", "pickled Python objects", "pickles are refused"),
    ),
    Case("npy_truncated", "2", "npy", _npy(raw_vec=_npy_bytes(np.eye(64))[:300]), rc=1, words=("vec.npy", "truncated")),
    Case(
        "npy_text_named_npy",
        "2",
        "npy",
        _npy(raw_vec=b"0.1 0.2\n0.3 0.4\n"),
        rc=1,
        words=("vec.npy", "is text, expected item vectors"),
    ),
    Case(
        "npy_string_dtype",
        "2",
        "npy",
        _npy(vectors=np.array([["a", "b"], ["c", "d"]])),
        rc=1,
        words=("vec.npy", "dtype <U1", "expected item vectors"),
    ),
    Case(
        "npy_pickled_ids",
        "2",
        "npy",
        _npy(ids=np.array(["a", 2], dtype=object)),
        rc=1,
        words=("ids.npy", "pickled Python objects"),
    ),
    Case(
        "npy_shape_mismatch",
        "2",
        "npy",
        _npy(ids="a\nb\nc\n"),
        rc=1,
        words=("vec.npy", "shape (2, 2)", "do not match the 3 ids"),
    ),
    Case(
        "npy_non_finite_row",
        "3",
        "npy",
        _npy(vectors=np.array([[np.nan, 1.0], [2.0, 3.0]])),
        files={"events.csv": (3, {}), "vec.npy": (1, {"non-finite feature (NaN or inf)": 1})},
        findings={"items_missing_from_item_table": {"interactions": 2, "items": 1, "examples": ["a"]}},
    ),
    Case(
        "npy_duplicate_ids",
        "4",
        "npy",
        _npy(vectors=np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [5.0, 5.0]]), ids="a\nb\na\nb\n"),
        files={
            "events.csv": (3, {}),
            "vec.npy": (
                2,
                {"duplicate item_id (identical row)": 1, "duplicate item_id with other values (first copy kept)": 1},
            ),
        },
        check=_npy_dup_check,
    ),
    Case(
        "npy_items_without_vectors",
        "5",
        "npy",
        _npy(events=EV_HEAD + EV_OK + "u2,c,1700000300\n"),
        files={"events.csv": (4, {}), "vec.npy": (2, {})},
        findings={"items_missing_from_item_table": {"interactions": 1, "examples": ["c"]}},
    ),
    Case(
        "npy_blank_id_line_counted",
        "6",
        "npy",
        _npy(vectors=np.eye(3), ids="a\n\nb\n"),
        files={"events.csv": (3, {}), "vec.npy": (2, {"null item_id": 1})},
    ),
    Case(
        "npy_latin1_id",
        "7",
        "npy",
        _npy(ids=b"a\n\xe9\n"),
        files={"events.csv": (3, {}), "vec.npy": (2, {})},
        notes={"vec.npy": ("ids.txt", "1 lines not valid UTF-8", "lines 2")},
        findings={"items_missing_from_item_table": {"interactions": 1, "examples": ["b"]}},
    ),
]

CASES: list[Case] = MOVIELENS + ADJACENCY + CSV + PARQUET + NPY
