"""Adjacency lists: lines ``user item item ...`` (the NGCF/LightGCN benchmark format), a train file
and an optional test file. The files carry no times: the result says so (``event_times`` False,
recorded by the raw stage in the files it writes), and an item's ``timestamp`` is only its 0-based
position in its line, which the pipeline does not read as an order (the line order is whatever the
benchmark's preprocessing left). The user is the collection; ``weight`` is 1. Bad input as in
:mod:`pinsage_model.data.reading`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pinsage_model.data.checks import InputRules, RowChecker
from pinsage_model.data.inputs import LoaderError, read_lines
from pinsage_model.data.quarantine import Quarantine
from pinsage_model.data.reading import LoadResult, Records, examples, interactions_table


def _read_adjacency(path: Path, q: Quarantine) -> pa.Table:
    what = "an adjacency list (lines 'user item item ...', whitespace-separated integers)"
    tl = read_lines(path, what)
    q.note(str(path), tl.note())
    rows = np.flatnonzero(~tl.blank).astype(np.int64)
    lines = pc.utf8_trim_whitespace(tl.lines.take(pa.array(rows)))
    tokens = pc.split_pattern_regex(lines, r"\s+")
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)  # (L,) incl. the user
    user = pc.list_element(tokens, 0).to_numpy(zero_copy_only=False).astype(object)
    items = pc.list_flatten(tokens).to_numpy(zero_copy_only=False).astype(object)
    line_of = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False)
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    pos = np.arange(len(items)) - starts[line_of]  # 0 = the user token
    is_item = pos > 0
    item, item_line, position = items[is_item], line_of[is_item], pos[is_item] - 1
    if len(rows) and not len(item) and pc.any(pc.match_substring(lines, ",")).as_py():
        raise LoaderError(
            f"{path}: line {rows[0] + 1}: ids are separated by ',', expected whitespace "
            f"({what}); replace the commas by spaces"
        )
    df = pd.DataFrame({"user_id": user[item_line], "item_id": item})
    chk = RowChecker(df)
    chk.ident("user_id", integer=True)
    chk.ident("item_id", integer=True)
    chk.values["_line"] = pd.Series(item_line)
    chk.duplicates(["_line", "item_id"], "item repeated on its line (first kept)")
    read = Records(df, rows[item_line], rows[item_line] + 1, len(item))
    keep = chk.quarantine(q, str(path), read)
    if not len(item) and len(rows):
        q.note(str(path), f"{len(rows)} lines hold a user and no items")
    q.record(str(path), len(item), int(keep.sum()))
    u = chk.values["user_id"][keep].to_numpy(dtype=object)
    return interactions_table(
        u, chk.values["item_id"][keep].to_numpy(dtype=object), position[keep], u, np.ones(int(keep.sum()))
    )


def load_adjacency(
    train_path: str | Path, test_path: str | Path | None = None, rules: InputRules | None = None
) -> LoadResult:
    """Load "user item item ..." adjacency-list files (train, optional test).

    Each item token of a line becomes one interaction of the line's user, with its 0-based
    position in the line as ``timestamp`` (not a time: ``event_times`` is False); ids must be
    non-negative integers within int64; an item repeated on its line is quarantined. Counts are
    per item token.

    Returns:
      :class:`LoadResult` with interactions (train) and test_interactions; items is None.

    Raises:
      LoaderError: a file unusable as a whole, or test pairs that also occur in train (unless
        ``rules.allow_leaks``).
    """
    rules = rules or InputRules.of()
    q = Quarantine()
    train = _read_adjacency(Path(train_path), q)
    test = _read_adjacency(Path(test_path), q) if test_path else None
    sources = {"interactions": str(train_path)}
    findings: dict[str, dict] = {}
    if test is not None:
        sources["test"] = str(test_path)
        findings = _test_findings(train, test, str(train_path), str(test_path), rules)
    return LoadResult(train, None, test, q.table(), q.counts, findings, sources, event_times=False)


def _test_findings(train: pa.Table, test: pa.Table, train_file: str, test_file: str, rules: InputRules) -> dict:
    """Cold test users/items and test pairs that also occur in train (a leak: an error by default)."""
    out: dict[str, dict] = {}
    for col, key in (("user_id", "test_users_not_in_train"), ("item_id", "test_items_not_in_train")):
        cold = pc.invert(pc.is_in(test[col], value_set=pc.unique(train[col])))
        n = pc.sum(cold).as_py() or 0
        if n:
            vals = test[col].filter(cold)
            out[key] = {
                "file": test_file,
                "rows": n,
                "distinct": pc.count_distinct(vals).as_py(),
                "examples": examples(vals),
            }
    keys = ["user_id", "item_id"]
    seen = train.select(keys).group_by(keys).aggregate([])
    leak = (
        test.select(keys)
        .append_column("_row", pa.array(np.arange(test.num_rows)))
        .join(seen, keys, join_type="left semi")
    )
    if leak.num_rows:
        first = leak.sort_by("_row").slice(0, 1).to_pylist()[0]
        out["test_pairs_in_train"] = {
            "file": test_file,
            "train_file": train_file,
            "rows": leak.num_rows,
            "first": {"user_id": first["user_id"], "item_id": first["item_id"]},
        }
        if not rules.allow_leaks:
            raise LoaderError(
                f"{test_file}: {leak.num_rows} test pairs (user, item) also occur in {train_file} "
                f"(a leak; first: user '{first['user_id']}', item '{first['item_id']}'); remove them from "
                "the test file, or set data.allow_leaks: true to keep them"
            )
    return out
