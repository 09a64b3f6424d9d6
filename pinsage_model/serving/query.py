"""The query API of a published index version: every way the project answers a recommendation.

Load a version directory with :func:`load_version`, or follow a publish root's ``CURRENT`` with
:class:`IndexReader`; then ask the :class:`LoadedVersion`:

* :meth:`LoadedVersion.related_items`: for each item, the items nearest to it (related pins,
  paper 4.1): its embedding plus the version's query shift, the item itself excluded;
* :meth:`LoadedVersion.related_to_any`: the items nearest to any of several items, each scored
  by its best inner product with one of them (the paper's multi-query homefeed, 4.1);
* :meth:`LoadedVersion.homefeed`: a homefeed from a user vector (a collection's vector as the
  embeddings stage writes it), plus the version's user shift;
* :meth:`LoadedVersion.homefeed_from_recent`: a homefeed from a user's recent items, oldest
  first: the version's user vector of them (:meth:`LoadedVersion.user_query`), as evaluation's
  ``pinsage-pooled`` ranks.

The MLflow pyfunc (``components/registry/servable.py``), ``pinsage recommend`` and the tests all
query through these methods.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pinsage_model.io import file_digest
from pinsage_model.serving.index import (
    EMB_FILE,
    IDS_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    SHIFT_FILE,
    VERSIONS,
    IndexVersionError,
    apply_search_params,
    current_version,
)

# What one query may ask for: a request for more is refused, never cut down silently.
MAX_K = 1000


def checked_k(k: Any) -> int:
    """``k`` as an int in 1..:data:`MAX_K`, or ValueError saying what is allowed."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return int(k)


@dataclass(frozen=True)
class Neighbours:
    """A query's answer and the index version that produced it."""

    version: str
    item_ids: list[str]
    scores: list[float]


@dataclass(frozen=True)
class LoadedVersion:
    """One published version, read whole: index, ids and embeddings of the same directory."""

    name: str
    path: Path
    manifest: dict
    index: Any  # a faiss index over ``embeddings``
    item_ids: np.ndarray  # (N,) object str
    item_idx: np.ndarray  # (N,) int32
    embeddings: np.ndarray  # (N, d) float32
    row_of: dict
    query_shift: np.ndarray  # (d,) float32, zero when the version has none
    user_head: dict | None = None  # the model's user head, None when it has none
    user_nodes: dict | None = None  # user_nodes.npz of a model with user nodes, else None
    # the homefeed popularity prior, (N,) row-aligned with the index, and its weight; None: none
    homefeed_prior: tuple[np.ndarray, float] | None = None

    @property
    def user_shift(self) -> np.ndarray:
        """(d,) shift added to a user vector: the user head's, else the query shift; for a model
        with user nodes and a head (whose user vector is the mean of the two), their mean."""
        if self.user_head is None:
            return self.query_shift
        head_shift = np.asarray(self.user_head["shift"], np.float32)
        if self.user_nodes is None:
            return head_shift
        return (0.5 * (self.query_shift + head_shift)).astype(np.float32)

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each item id; KeyError names the ids this version does not hold."""
        missing = [i for i in item_ids if i not in self.row_of]
        if missing:
            raise KeyError(f"item id(s) not in index version {self.name}: {', '.join(map(str, missing[:5]))}")
        return np.array([self.row_of[i] for i in item_ids], dtype=np.int64)

    def known(self, item_ids: Sequence[str]) -> list[str]:
        """The ids this version holds, each once, in their first order."""
        return list(dict.fromkeys(i for i in item_ids if i in self.row_of))

    def user_query(self, item_ids: Sequence[str]) -> np.ndarray:
        """(d,) homefeed query for a user's known items, oldest first, as the embeddings stage
        builds a collection's vector: for a model with user nodes the model's user convolution
        over them plus the query shift (averaged with the head's query when the model also has a
        user head); else the user head over them (recency by position) plus its shift; without a
        head, their mean on the unit sphere plus the query shift."""
        rows = self.rows(item_ids)
        if self.user_nodes is not None:
            from pinsage_model.model.users import recent_user_vector

            conv = recent_user_vector(self.user_nodes, self.item_idx[rows]) + self.query_shift
            if self.user_head is None:
                return conv.astype(np.float32)
            return (0.5 * (conv + self._head_query(rows))).astype(np.float32)
        if self.user_head is None:
            mean = np.asarray(self.embeddings[rows], np.float64).mean(axis=0)
            return (mean / max(float(np.linalg.norm(mean)), 1e-12) + self.query_shift).astype(np.float32)
        return self._head_query(rows)

    def _head_query(self, rows: np.ndarray) -> np.ndarray:
        """(d,) the user head over the items at ``rows`` (oldest first) plus the head's shift."""
        from pinsage_model.model.user_head import apply_head, recency_weights

        head = self.user_head
        if head is None:  # callers check; kept for the type checker
            raise ValueError(f"index version {self.name} has no user head")
        emb = np.asarray(self.embeddings[rows], np.float64)  # (L, d)
        w = recency_weights(np.arange(len(emb) - 1, -1, -1), float(head["recency_half_life"]))
        p = (w[:, None] * emb).sum(axis=0) / w.sum()
        p = p / max(float(np.linalg.norm(p)), 1e-12)
        shift = np.asarray(head["shift"], np.float32)
        return (apply_head(p[None, :].astype(np.float32), head)[0] + shift).astype(np.float32)

    def search(self, vectors: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None) -> list[Neighbours]:
        """Top-k items by inner product for each (B, d) query vector as given, skipping ``exclude[b]`` ids."""
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        extra = max((len(e) for e in exclude), default=0) if exclude else 0
        scores, rows = self.index.search(queries, min(k + extra, self.index.ntotal))
        out = []
        for b in range(len(queries)):
            skip = set(exclude[b]) if exclude else set()
            kept = [(self.item_ids[r], float(s)) for r, s in zip(rows[b], scores[b]) if r >= 0]
            kept = [(item, s) for item, s in kept if item not in skip][:k]
            out.append(Neighbours(self.name, [i for i, _ in kept], [s for _, s in kept]))
        return out

    def related_items(self, item_ids: Sequence[str], k: int = 10) -> list[Neighbours]:
        """For each item, the k best items: inner product with its embedding plus the query shift,
        the item itself excluded. KeyError when an id is not in the version."""
        vectors = np.asarray(self.embeddings[self.rows(item_ids)]) + self.query_shift
        return self.search(vectors, k, [[i] for i in item_ids])

    def related_to_any(self, item_ids: Sequence[str], k: int = 10) -> Neighbours:
        """The k items closest to any of ``item_ids`` (the paper's multi-query homefeed, 4.1).

        Each candidate scores its best inner product with one of the items (each plus the query
        shift); the items themselves are excluded. Unknown ids are skipped; none known raises KeyError.
        """
        known = self._known_or_raise(item_ids)
        vectors = np.asarray(self.embeddings[self.rows(known)]) + self.query_shift
        best: dict[str, float] = {}
        for nb in self.search(vectors, k, [known] * len(known)):
            for item, score in zip(nb.item_ids, nb.scores):
                best[item] = max(score, best.get(item, -np.inf))
        top = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return Neighbours(self.name, [t[0] for t in top], [t[1] for t in top])

    def homefeed(self, user_vector: np.ndarray, k: int = 10, exclude: Sequence[str] = ()) -> Neighbours:
        """Homefeed from a (d,) user vector as the embeddings stage writes a collection's vector
        (the user head's output, or the unit mean of its items): the k best items for the vector
        plus :attr:`user_shift`, the ``exclude`` ids (e.g. what the user already has) left out."""
        vector = np.asarray(user_vector, np.float32).reshape(-1) + self.user_shift
        return self.homefeed_search(vector, k, exclude)

    def homefeed_from_recent(self, recent_items: Sequence[str], k: int = 10) -> Neighbours:
        """Homefeed from a user's recent items, oldest first: the k best items for
        :meth:`user_query` over the known ones, which are excluded. Unknown ids are skipped; none
        known raises KeyError."""
        known = self._known_or_raise(recent_items)
        return self.homefeed_search(self.user_query(known), k, known)

    def homefeed_search(self, query: np.ndarray, k: int, exclude: Sequence[str] = ()) -> Neighbours:
        """The k best items for a (d,) homefeed query: inner product plus the popularity prior
        (``beta * prior_c``, :mod:`pinsage_model.model.prior`) when the version has one.

        Exact over an exact index: the top ``m`` by inner product are rescored, and ``m`` grows
        until the k-th rescored item beats any item outside them (the m-th inner product plus
        ``beta * max(prior)``), or the whole index is read.
        """
        exclude = list(exclude)
        if self.homefeed_prior is None or self.homefeed_prior[1] == 0:
            return self.search(query[None, :], k, [exclude])[0]
        prior, beta = self.homefeed_prior
        bound, skip, total = beta * float(prior.max()), set(exclude), self.index.ntotal
        q = np.ascontiguousarray(query, np.float32).reshape(1, -1)
        m = min(total, 4 * (k + len(skip)))
        while True:
            ip, rows = self.index.search(q, m)
            ip, rows = ip[0][rows[0] >= 0], rows[0][rows[0] >= 0]
            keep = np.array([self.item_ids[r] not in skip for r in rows], bool)
            score, rows = ip[keep] + beta * prior[rows[keep]], rows[keep]
            order = np.lexsort((rows, -score))[:k]
            if m >= total or (len(order) == k and score[order[-1]] >= ip[-1] + bound):
                return Neighbours(self.name, [self.item_ids[r] for r in rows[order]], score[order].tolist())
            m = min(total, 4 * m)

    def _known_or_raise(self, item_ids: Sequence[str]) -> list[str]:
        known = self.known(item_ids)
        if not known:
            raise KeyError(f"none of the items is in index version {self.name}")
        return known


def load_version(path: str | Path, verify: bool = True) -> LoadedVersion:
    """Read a version directory; with ``verify`` check every file against the manifest's sha256."""
    import faiss
    import pyarrow.parquet as pq

    from pinsage_model.model.prior import load_prior
    from pinsage_model.model.user_head import load_head
    from pinsage_model.model.users import load_user_nodes

    path = Path(path)
    mpath = path / MANIFEST_FILE
    if not mpath.exists():
        raise IndexVersionError(f"{mpath}: not found; {path.name} is not a complete published version")
    manifest = json.loads(mpath.read_text())
    if verify:
        for name, digest in manifest["files"].items():
            if file_digest(path / name) != digest:
                raise IndexVersionError(f"{path / name}: checksum differs from {mpath}")
    index = faiss.read_index(str(path / INDEX_FILE))
    apply_search_params(index, manifest["index"])
    ids = pq.read_table(path / IDS_FILE)
    item_ids = np.asarray(ids.column("item_id").to_pylist(), dtype=object)
    emb = np.load(path / EMB_FILE, mmap_mode="r")
    if index.ntotal != len(item_ids) or emb.shape[0] != len(item_ids):
        raise IndexVersionError(
            f"{path}: index ({index.ntotal}), ids ({len(item_ids)}) and embeddings ({emb.shape[0]}) differ in size"
        )
    shift_path = path / SHIFT_FILE
    item_idx = ids.column("item_idx").to_numpy()
    prior = load_prior(path)
    return LoadedVersion(
        name=path.name,
        path=path,
        manifest=manifest,
        index=index,
        item_ids=item_ids,
        item_idx=item_idx,
        embeddings=emb,
        row_of={v: i for i, v in enumerate(item_ids.tolist())},
        query_shift=(
            np.load(shift_path, allow_pickle=False).astype(np.float32)
            if shift_path.exists()
            else np.zeros(emb.shape[1], np.float32)
        ),
        user_head=load_head(path),
        user_nodes=load_user_nodes(path),
        homefeed_prior=None if prior is None else (prior[0][item_idx], prior[1]),
    )


class IndexReader:
    """The version a publish root's ``CURRENT`` names, for live queries.

    Resolve it once per query batch with :meth:`current` and ask that :class:`LoadedVersion`, so
    a batch is answered entirely from one version while new versions are published (each is
    loaded whole, once, and cached). Safe to share between threads.
    """

    def __init__(self, root: str | Path, verify: bool = True, cache_size: int = 2):
        self.root = Path(root)
        self.verify = verify
        self.cache_size = cache_size
        self._cache: dict[str, LoadedVersion] = {}
        self._lock = threading.Lock()

    def current(self) -> LoadedVersion:
        """The version ``CURRENT`` names now (loaded once, then cached)."""
        name = current_version(self.root)
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None:
            return hit
        loaded = load_version(self.root / VERSIONS / name, verify=self.verify)
        with self._lock:
            self._cache[name] = loaded
            while len(self._cache) > self.cache_size:
                self._cache.pop(next(iter(self._cache)))
        return loaded
