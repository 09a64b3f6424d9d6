"""``pinsage recommend``: related items for an item, or a homefeed for a user, from a published index.

``--item ID``: the k nearest items to the item's embedding (related pins, paper 4.1).
``--user ID``: (a) items related to any of the user's most recent items (the paper's multi-query
homefeed, 4.1), and (b) the homefeed from the user's collection embedding (the pooled embedding
of the collections the user engaged with), both excluding items the user already engaged with.

The index is the one the run published (``<run dir>/index``) unless ``--index-root`` names a
publish root (whose ``CURRENT`` version is used). Every lookup is a call of the query API of
:mod:`pinsage_model.serving.query` (``related_items``, ``related_to_any``, ``homefeed``), which
adds the version's query or user shift. Titles come from ``raw/items.parquet`` when it has a
``title`` column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# The user's recent items one homefeed query reads (the registered model's default max_ids_per_row).
MAX_RECENT = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--run-dir", required=True, help="run directory with raw/, graph/, embeddings/ and index/")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--item", help="item id: print its nearest items")
    who.add_argument("--user", help="user id: print a homefeed from their recent items and collections")
    parser.add_argument("-k", type=int, default=10, help="number of recommendations, 1 to 1000 (default 10)")
    parser.add_argument(
        "--recent", type=int, default=5, help="how many of the user's most recent items to use, 1 to 500 (default 5)"
    )
    parser.add_argument("--index-root", default=None, help="publish root to read instead of <run-dir>/index")


def titles_of(raw_dir: Path) -> dict[str, str]:
    """item_id -> title from the raw stage's ``items.parquet`` (empty when there are no titles)."""
    import pyarrow.parquet as pq

    path = raw_dir / "items.parquet"
    if not path.exists() or "title" not in pq.read_schema(path).names:
        return {}
    t = pq.read_table(path, columns=["item_id", "title"])
    return {i: (s or "") for i, s in zip(t.column("item_id").to_pylist(), t.column("title").to_pylist())}


def example_ids(run_dir: Path) -> tuple[str | None, str | None]:
    """The run's most engaged item and most active user (ties: the smaller id), to show a query
    that has an answer; (None, None) before the raw stage."""
    import pyarrow.parquet as pq

    path = run_dir / "raw" / "interactions.parquet"
    if not path.exists():
        return None, None
    t = pq.read_table(path, columns=["user_id", "item_id"])

    def top(column: str) -> str | None:
        counts = t.column(column).value_counts().to_pylist()
        return min(counts, key=lambda c: (-c["counts"], c["values"]))["values"] if counts else None

    return top("item_id"), top("user_id")


def user_history(run_dir: Path, user_id: str) -> tuple[list[str], list[str]]:
    """The user's items, most recent first (distinct), and their collection ids."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = run_dir / "raw" / "interactions.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run the 'raw' stage first)")
    cols = [c for c in ("user_id", "item_id", "timestamp", "collection_id") if c in pq.read_schema(path).names]
    t = pq.read_table(path, columns=cols, filters=[("user_id", "=", user_id)])
    if t.num_rows == 0:
        raise KeyError(f"user '{user_id}' has no interactions in {path}")
    t = t.sort_by([("timestamp", "descending"), ("item_id", "ascending")])
    items = list(dict.fromkeys(t.column("item_id").to_pylist()))
    colls = pc.unique(t.column("collection_id")).to_pylist() if "collection_id" in cols else [user_id]
    return items, [c for c in colls if c is not None]


def user_vector(run_dir: Path, collection_ids: list[str]) -> np.ndarray | None:
    """(d,) mean of the user's collection vectors as the embeddings stage wrote them (unit means,
    or the user head's vectors), so a user of one collection is queried exactly as evaluation
    ranks it; None when none is known."""
    import pyarrow.parquet as pq

    ids_path, emb_path = run_dir / "graph" / "collection_ids.parquet", run_dir / "embeddings" / "collections.npy"
    if not ids_path.exists() or not emb_path.exists():
        return None
    t = pq.read_table(ids_path, columns=["collection_idx", "collection_id"])
    row_of = dict(zip(t.column("collection_id").to_pylist(), t.column("collection_idx").to_pylist()))
    rows = [row_of[c] for c in collection_ids if c in row_of]
    if not rows:
        return None
    return np.asarray(np.load(emb_path, mmap_mode="r")[rows], dtype=np.float32).mean(axis=0)


def print_neighbours(title: str, nb, titles: dict[str, str]) -> None:
    """A numbered list of the answer's items, scores and titles."""
    print(f"{title}  (index version {nb.version})")
    for rank, (item, score) in enumerate(zip(nb.item_ids, nb.scores), 1):
        label = f"  {titles[item]}" if item in titles else ""
        print(f"{rank:>3}. {item:<16} {score:7.4f}{label}")


def recommend_for_user(version, run_dir: Path, args: argparse.Namespace, titles: dict[str, str]) -> None:
    """Print (a) the items related to any of the user's recent items and (b) the homefeed from
    the user's collection embedding, neither holding an item the user already has."""
    from pinsage_model.serving.query import Neighbours

    items, colls = user_history(run_dir, args.user)
    recent = items[: args.recent]
    print(f"user {args.user}: {len(items)} items, most recent: {', '.join(recent)}\n")
    related = version.related_to_any(recent, args.k + len(items))
    kept = [(i, s) for i, s in zip(related.item_ids, related.scores) if i not in set(items)][: args.k]
    related = Neighbours(related.version, [i for i, _ in kept], [s for _, s in kept])
    print_neighbours("related to any of the most recent items", related, titles)
    vec = user_vector(run_dir, colls)
    if vec is not None:
        print()
        feed = version.homefeed(vec, args.k, exclude=items)
        print_neighbours(
            f"homefeed: closest to the user's collection embedding ({len(colls)} collections)", feed, titles
        )


def main(args: argparse.Namespace) -> int:
    from pinsage_model.serving.index import IndexVersionError
    from pinsage_model.serving.query import IndexReader, checked_k

    run_dir = Path(args.run_dir)
    try:
        checked_k(args.k)
        if not 1 <= args.recent <= MAX_RECENT:
            raise ValueError(f"--recent must be from 1 to {MAX_RECENT}, got {args.recent}")
    except ValueError as exc:
        print(f"error: {exc}".replace("k must", "-k must"), file=sys.stderr)
        return 2
    titles = titles_of(run_dir / "raw")
    try:
        version = IndexReader(args.index_root or run_dir / "index").current()
        if args.item:
            (nb,) = version.related_items([args.item], args.k)
            head = f"items related to {args.item}" + (f" ({titles[args.item]})" if args.item in titles else "")
            print_neighbours(head, nb, titles)
        else:
            recommend_for_user(version, run_dir, args, titles)
        return 0
    except (KeyError, FileNotFoundError, IndexVersionError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
