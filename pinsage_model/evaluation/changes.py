"""What changes for users if a challenger replaces the champion: top-k answers of both on one
fixed, seeded sample of queries.

For each query (an item for related items, a user's recent items for a homefeed) both index
versions answer their top ``k``. Per query the overlap is ``|before ∩ after| / max(|before|,
|after|)`` (1 when both answers are empty); the report gives, per kind of query:

* ``mean_overlap_at_<k>``: the mean overlap over the queries;
* ``share_changed_entirely``: the share of queries whose two answers share no item;
* ``new_items``: how many distinct items enter some top ``k`` of the challenger while in no top
  ``k`` of the champion (``new_item_examples``: the first few, sorted).

Operators read these before a weekly run replaces what users see: a model can pass the gate by a
hair and still reshuffle every homefeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

EXAMPLES = 5


def overlap_key(k: int) -> str:
    """``mean_overlap_at_<k>``, spelled as the other ranking keys (:mod:`pinsage_model.metric_keys`)."""
    return f"mean_overlap_at_{k}"


def top_k_changes(before: Sequence[Sequence[str]], after: Sequence[Sequence[str]], k: int = 10) -> dict[str, Any]:
    """The change between the champion's (``before``) and the challenger's (``after``) answers to
    the same queries, in the same order (see the module docstring)."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} champion answers for {len(after)} challenger answers")
    overlaps = []
    for b, a in zip(before, after):
        b_set, a_set = set(b[:k]), set(a[:k])
        overlaps.append(len(b_set & a_set) / max(len(b_set), len(a_set)) if b_set or a_set else 1.0)
    seen_before = {i for b in before for i in b[:k]}
    new = sorted({i for a in after for i in a[:k]} - seen_before)
    return {
        "queries": len(overlaps),
        overlap_key(k): float(np.mean(overlaps)) if overlaps else float("nan"),
        "share_changed_entirely": float(np.mean([o == 0 for o in overlaps])) if overlaps else float("nan"),
        "new_items": len(new),
        "new_item_examples": new[:EXAMPLES],
    }


def sample_items(champion_ids: Sequence[str], challenger_ids: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` items both versions hold, drawn with ``seed`` from their sorted common ids."""
    common = sorted(set(champion_ids) & set(challenger_ids))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(common), size=min(n, len(common)), replace=False) if common else np.empty(0, np.int64)
    return [common[i] for i in sorted(picked)]


def compare_versions(
    champion, challenger, items: Sequence[str], users: Sequence[Sequence[str]], k: int = 10
) -> dict[str, dict[str, Any]]:
    """:func:`top_k_changes` of related items for ``items`` and of homefeeds for ``users`` (each
    its recent item ids, oldest first), between two :class:`~pinsage_model.serving.query.LoadedVersion`.

    A user none of whose items one of the versions holds is left out of the homefeeds.
    """
    out = {}
    if items:
        before = [nb.item_ids for nb in champion.related_items(items, k)]
        after = [nb.item_ids for nb in challenger.related_items(items, k)]
        out["related_items"] = top_k_changes(before, after, k)
    both = [u for u in users if champion.known(u) and challenger.known(u)]
    if both:
        before = [champion.homefeed_from_recent(u, k).item_ids for u in both]
        after = [challenger.homefeed_from_recent(u, k).item_ids for u in both]
        out["homefeeds"] = top_k_changes(before, after, k)
    return out


def sample_users(interactions_path, n: int, seed: int, recent: int = 10) -> list[tuple[str, list[str]]]:
    """``n`` users drawn with ``seed`` from the sorted user ids of an interactions table (the
    ``raw`` stage's contract), each with their ``recent`` latest distinct items, oldest first (the
    served model's homefeed row); empty when the file is missing."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not Path(interactions_path).exists():
        return []
    t = pq.read_table(interactions_path, columns=["user_id", "item_id", "timestamp"])
    users = sorted(pc.unique(t.column("user_id")).to_pylist())
    rng = np.random.default_rng(seed)
    picked = [users[i] for i in sorted(rng.choice(len(users), size=min(n, len(users)), replace=False))] if users else []
    t = t.filter(pc.is_in(t.column("user_id"), pa.array(picked, pa.string()))).sort_by(
        [("user_id", "ascending"), ("timestamp", "ascending"), ("item_id", "ascending")]
    )
    items: dict[str, list[str]] = {u: [] for u in picked}
    for u, i in zip(t.column("user_id").to_pylist(), t.column("item_id").to_pylist()):
        items[u].append(i)
    # the latest occurrence of each item decides its place: dict.fromkeys over the reversed list
    return [(u, list(reversed(list(dict.fromkeys(reversed(items[u])))))[-recent:]) for u in picked]
