"""``pinsage recommend``: related items for an item, or a homefeed for a user, from a published index.

``--item ID``: the k nearest items to the item's embedding (related pins, paper 4.1).
``--user ID``: (a) items closest to any of the user's most recent items (homefeed, paper 4.1),
and (b) items closest to the user's collection embedding (the pooled embedding of the
collections the user engaged with), both excluding items the user already engaged with.
Every query vector gets the model's learned query shift (``embeddings/query_shift.npy``, zero
when absent) before the inner product with the unit item vectors of the index.

The index is the one the run published (``<run dir>/index``) unless ``--index-root`` names a
publish root (whose ``CURRENT`` version is used). Titles come from ``raw/items.parquet`` when it
has a ``title`` column. The same lookups are library calls: ``pinsage_model.serving.index.IndexReader``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--run-dir", required=True, help="run directory with raw/, graph/, embeddings/ and index/")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--item", help="item id: print its nearest items")
    who.add_argument("--user", help="user id: print a homefeed from their recent items and collections")
    parser.add_argument("-k", type=int, default=10, help="number of recommendations (default 10)")
    parser.add_argument(
        "--recent", type=int, default=5, help="how many of the user's most recent items to use (default 5)"
    )
    parser.add_argument("--index-root", default=None, help="publish root to read instead of <run-dir>/index")


def titles_of(run_dir: Path) -> dict[str, str]:
    """item_id -> title from ``raw/items.parquet`` (empty when there are no titles)."""
    import pyarrow.parquet as pq

    path = run_dir / "raw" / "items.parquet"
    if not path.exists() or "title" not in pq.read_schema(path).names:
        return {}
    t = pq.read_table(path, columns=["item_id", "title"])
    return {i: (s or "") for i, s in zip(t.column("item_id").to_pylist(), t.column("title").to_pylist())}


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
    """(1, d) mean of the user's collection vectors (None when none is known)."""
    import pyarrow.parquet as pq

    ids_path, emb_path = run_dir / "graph" / "collection_ids.parquet", run_dir / "embeddings" / "collections.npy"
    if not ids_path.exists() or not emb_path.exists():
        return None
    t = pq.read_table(ids_path, columns=["collection_idx", "collection_id"])
    row_of = dict(zip(t.column("collection_id").to_pylist(), t.column("collection_idx").to_pylist()))
    rows = [row_of[c] for c in collection_ids if c in row_of]
    if not rows:
        return None
    emb = np.load(emb_path, mmap_mode="r")
    # as written by the embeddings stage (unit means, or the user head's vectors): a user of one
    # collection is queried exactly as evaluation ranks it
    return np.asarray(emb[rows], dtype=np.float32).mean(axis=0, keepdims=True)


def query_shift(run_dir: Path, dim: int) -> np.ndarray:
    """The run's (dim,) query shift; zero for runs without one."""
    from pinsage_model.data.contracts import read_query_shift

    return read_query_shift(run_dir / "embeddings", dim)


def _print(title: str, nb, titles: dict[str, str]) -> None:
    print(f"{title}  (index version {nb.version})")
    for rank, (item, score) in enumerate(zip(nb.item_ids, nb.scores), 1):
        label = f"  {titles[item]}" if item in titles else ""
        print(f"{rank:>3}. {item:<16} {score:7.4f}{label}")


def homefeed(reader, recent: list[str], k: int, shift: np.ndarray):
    """Items closest to any of ``recent`` (each queried with the shift), recent items excluded;
    unknown ids skipped, none known raises KeyError (as ``IndexReader.homefeed``)."""
    from pinsage_model.serving.index import Neighbours

    v = reader.current()
    known = [i for i in recent if i in v.row_of]
    if not known:
        raise KeyError(f"none of the recent items is in index version {v.name}")
    best: dict[str, float] = {}
    for nb in reader.search_vectors(np.asarray(v.embeddings[v.rows(known)]) + shift, k, [known] * len(known)):
        for item, score in zip(nb.item_ids, nb.scores):
            best[item] = max(score, best.get(item, -np.inf))
    top = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return Neighbours(v.name, [t[0] for t in top], [t[1] for t in top])


def main(args: argparse.Namespace) -> int:
    from pinsage_model.serving.index import IndexReader, IndexVersionError, Neighbours

    run_dir = Path(args.run_dir)
    reader = IndexReader(args.index_root or run_dir / "index")
    titles = titles_of(run_dir)
    try:
        version = reader.current()
        shift = query_shift(run_dir, version.embeddings.shape[1])
        if args.item:
            row = version.rows([args.item])
            (nb,) = reader.search_vectors(np.asarray(version.embeddings[row]) + shift, args.k, exclude=[[args.item]])
            head = f"items related to {args.item}" + (f" ({titles[args.item]})" if args.item in titles else "")
            _print(head, nb, titles)
            return 0
        items, colls = user_history(run_dir, args.user)
        recent = items[: args.recent]
        print(f"user {args.user}: {len(items)} items, most recent: {', '.join(recent)}\n")
        feed = homefeed(reader, recent, args.k + len(items), shift)
        kept = [(i, s) for i, s in zip(feed.item_ids, feed.scores) if i not in set(items)][: args.k]
        feed = Neighbours(feed.version, [i for i, _ in kept], [s for _, s in kept])
        _print("closest to the most recent items (homefeed)", feed, titles)
        vec = user_vector(run_dir, colls)
        if vec is not None:
            print()
            from pinsage_model.data.contracts import read_user_shift

            user_shift = read_user_shift(run_dir / "embeddings", vec.shape[1])  # the user head's, else the query shift
            (by_coll,) = reader.search_vectors(vec + user_shift, args.k, exclude=[items])
            _print(f"closest to the user's collection embedding ({len(colls)} collections)", by_coll, titles)
        return 0
    except (KeyError, FileNotFoundError, IndexVersionError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
