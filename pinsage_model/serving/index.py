"""Nearest-neighbour index over item embeddings: build, check recall, publish, read (paper 3.5).

Layout of a publish root (a persistent folder shared by successive pipeline runs)::

    <root>/versions/<version>/index.faiss    faiss.write_index output
                             ids.parquet     row (int64, faiss id), item_id (str), item_idx (int32)
                             embeddings.npy  (N, d) float32, L2-normalised, row-aligned with ids
                             query_shift.npy (d,) float32, added to every query vector (only
                                             when the model learned a non-zero shift)
                             user_head.npz   the model's user head (only when it has one): the
                                             homefeed vector of a user's recent items
                             manifest.json   version, model_version, created_at, metrics, recall,
                                             index kind and parameters, sha256 of every file
    <root>/CURRENT                           the serving version's name (one line)

A version directory is built in a temporary sibling and renamed into place, so it is complete the
moment it has its name, and it is never modified afterwards; ``CURRENT`` is switched with
``os.replace``. A reader that resolves ``CURRENT`` once per query batch and then reads only that
version's directory therefore never sees a half-written or mixed index.

Index kind: exact inner product (``IndexFlatIP``) below ``exact_threshold`` items, HNSW or IVF
above it. The approximate index's recall@10 against exact search on a sample of item queries must
reach ``recall_floor``, or :func:`publish` raises :class:`IndexRecallError` and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pinsage_model.config import IndexConfig
from pinsage_model.io import atomic_write_text, file_digest, json_digest

CURRENT = "CURRENT"
VERSIONS = "versions"
INDEX_FILE, IDS_FILE, EMB_FILE, MANIFEST_FILE = "index.faiss", "ids.parquet", "embeddings.npy", "manifest.json"
SHIFT_FILE = "query_shift.npy"
USER_HEAD_FILE = "user_head.npz"
RECALL_K = 10


class IndexRecallError(RuntimeError):
    """The approximate index's recall against exact search is below the configured floor."""


class IndexVersionError(RuntimeError):
    """A published version is missing, incomplete or fails its checksums."""


def _faiss():
    import faiss

    return faiss


def build_index(emb: np.ndarray, cfg: IndexConfig, seed: int = 0):
    """Build the configured faiss index over (N, d) L2-normalised float32 embeddings.

    Returns:
      (index, params) where params records the kind and its search parameters.
    """
    faiss = _faiss()
    n, d = emb.shape
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if n < cfg.exact_threshold:
        index = faiss.IndexFlatIP(d)
        params = {"kind": "flat_ip"}
    elif cfg.ann.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.ann.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, cfg.ann.ef_search)
        index.hnsw.efSearch = cfg.ann.ef_search
        params = {
            "kind": "hnsw",
            "M": cfg.ann.m,
            "ef_search": cfg.ann.ef_search,
            "ef_construction": index.hnsw.efConstruction,
        }
    else:
        # at least ~39 training points per centroid (faiss warns below that)
        nlist = max(1, min(cfg.ann.nlist, n // 39))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = emb[np.sort(rng.choice(n, size=min(n, 256 * nlist), replace=False))]
        index.train(train)
        index.nprobe = min(cfg.ann.nprobe, nlist)
        params = {"kind": "ivf", "nlist": nlist, "nprobe": index.nprobe}
    index.add(emb)
    return index, params


def _apply_search_params(index, params: dict) -> None:
    faiss = _faiss()
    if params["kind"] == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = params["ef_search"]
    elif params["kind"] == "ivf":
        faiss.extract_index_ivf(index).nprobe = params["nprobe"]


def recall_at_k(
    index, emb: np.ndarray, query_rows: np.ndarray, k: int = RECALL_K, query_shift: np.ndarray | None = None
) -> float:
    """Mean |approx top-k ∩ exact top-k| / k for the given item rows used as queries (each
    shifted by ``query_shift`` when given, as served)."""
    faiss = _faiss()
    queries = np.asarray(emb[query_rows], dtype=np.float32)
    queries = np.ascontiguousarray(queries if query_shift is None else queries + query_shift[None, :], dtype=np.float32)
    k = min(k, emb.shape[0])
    exact = faiss.IndexFlatIP(emb.shape[1])
    exact.add(np.ascontiguousarray(emb, dtype=np.float32))
    _, want = exact.search(queries, k)
    _, got = index.search(queries, k)
    hits = sum(len(set(w.tolist()) & set(g.tolist())) for w, g in zip(want, got))
    return hits / (k * len(query_rows))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def publish(
    embeddings: np.ndarray,
    item_ids: Sequence[str],
    out_root: str | Path,
    model_version: str,
    metrics: dict,
    *,
    created_at: str,
    cfg: IndexConfig = IndexConfig(),
    item_idx: np.ndarray | None = None,
    seed: int = 0,
    make_current: bool = True,
    weights_digest: str = "",
    query_shift: np.ndarray | None = None,
    user_head: dict[str, np.ndarray] | None = None,
) -> Path:
    """Build, check and publish an index version under ``out_root`` and make it current.

    Args:
      embeddings: (N, d) float32 L2-normalised item embeddings.
      item_ids: N item ids (str), row-aligned with ``embeddings``; must be unique.
      out_root: publish root (see the module docstring for its layout).
      model_version: the model these embeddings come from (recorded, and prefixes the version).
      metrics: offline evaluation metrics to record in the manifest.
      created_at: creation time (ISO 8601) chosen by the caller, so logic never reads the clock.
      cfg: index kind, parameters and recall floor.
      item_idx: optional dense item indices (N,) to keep in ``ids.parquet`` (default 0..N-1).
      seed: sampling of the recall queries and of IVF training points.
      make_current: switch ``CURRENT`` to this version (False: publish it beside the serving one,
        e.g. when the model lost the registry's promotion gate).
      weights_digest: digest of the model's weights, recorded so that the version can be found
        again from the registry's champion (:func:`find_version`).
      query_shift: (d,) the model's learned query shift; a non-zero one is saved with the
        version and added to every query (related items, homefeed) by :class:`IndexReader`.
      user_head: the model's user head (:mod:`pinsage_model.model.user_head`), saved with the version
        so that :meth:`LoadedVersion.user_query` builds homefeed vectors as evaluation does.

    Returns:
      The version directory. Publishing the same content again only re-points ``CURRENT``.

    Raises:
      IndexRecallError: recall@10 of the approximate index is below ``cfg.recall_floor``.
      ValueError: shapes or ids are inconsistent.
    """
    import pyarrow as pa

    from pinsage_model.io import atomic_save_npy, atomic_write_json, atomic_write_parquet

    faiss = _faiss()
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    ids = np.asarray([str(i) for i in item_ids], dtype=object)
    if emb.ndim != 2 or emb.shape[0] != len(ids) or emb.shape[0] == 0:
        raise ValueError(f"embeddings {emb.shape} and {len(ids)} item ids must be non-empty and row-aligned")
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("item ids must be unique to publish an index")
    if not np.all(np.isfinite(emb)):
        raise ValueError("embeddings contain NaN or infinite values")
    idx = np.arange(len(ids), dtype=np.int32) if item_idx is None else np.asarray(item_idx, dtype=np.int32)
    shift = None if query_shift is None or not np.any(query_shift) else np.asarray(query_shift, dtype=np.float32)
    if shift is not None and shift.shape != (emb.shape[1],):
        raise ValueError(f"query_shift has shape {shift.shape}, expected ({emb.shape[1]},)")
    root = Path(out_root)
    key = {"emb": hashlib.sha256(emb.data).hexdigest(), "ids": ids.tolist(), "index": _index_cfg(cfg)}
    if shift is not None:
        key["query_shift"] = shift.tolist()
    if user_head is not None:
        key["user_head"] = {
            k: hashlib.sha256(np.ascontiguousarray(v, np.float32).data).hexdigest()
            for k, v in sorted(user_head.items())
        }
    content = json_digest(key)
    version = f"{_safe_name(model_version)}-{content[:12]}"
    final = root / VERSIONS / version
    if not (final / MANIFEST_FILE).exists():
        index, params = build_index(emb, cfg, seed)
        rng = np.random.default_rng(seed)
        queries = np.sort(rng.choice(len(ids), size=min(cfg.recall_queries, len(ids)), replace=False))
        recall = 1.0 if params["kind"] == "flat_ip" else recall_at_k(index, emb, queries, query_shift=shift)
        if recall < cfg.recall_floor:
            raise IndexRecallError(
                f"recall@{RECALL_K} of the {params['kind']} index is {recall:.4f} on {len(queries)} queries, "
                f"below index.recall_floor={cfg.recall_floor}; raise index.ann.ef_search/nprobe (or m/nlist) "
                "in the index config"
            )
        (root / VERSIONS).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=root / VERSIONS))
        try:
            faiss.write_index(index, str(tmp / INDEX_FILE))
            atomic_write_parquet(
                tmp / IDS_FILE,
                pa.table(
                    {
                        "row": pa.array(np.arange(len(ids), dtype=np.int64)),
                        "item_id": pa.array(ids.tolist(), pa.string()),
                        "item_idx": pa.array(idx),
                    }
                ),
            )
            atomic_save_npy(tmp / EMB_FILE, emb)
            files = [INDEX_FILE, IDS_FILE, EMB_FILE]
            if shift is not None:
                atomic_save_npy(tmp / SHIFT_FILE, shift)
                files.append(SHIFT_FILE)
            if user_head is not None:
                from pinsage_model.model.user_head import save_head

                save_head(user_head, tmp)
                files.append(USER_HEAD_FILE)
            manifest = {
                "version": version,
                "model_version": model_version,
                "weights_digest": weights_digest,
                "created_at": created_at,
                "metrics": metrics,
                f"recall_at_{RECALL_K}": recall,
                "recall_queries": int(len(queries)),
                "recall_floor": cfg.recall_floor,
                "index": params,
                "num_items": int(len(ids)),
                "dim": int(emb.shape[1]),
                "files": {f: file_digest(tmp / f) for f in files},
            }
            atomic_write_json(tmp / MANIFEST_FILE, manifest)
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, final)  # atomic; fails if another publisher got there first
            except OSError:
                if not (final / MANIFEST_FILE).exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    if make_current:
        set_current(root, version)
    return final


def set_current(root: str | Path, version: str) -> None:
    """Atomically make ``version`` (a directory under ``<root>/versions``) the serving one."""
    root = Path(root)
    if not (root / VERSIONS / version / MANIFEST_FILE).exists():
        raise IndexVersionError(f"{root / VERSIONS / version}: no such published version")
    atomic_write_text(root / CURRENT, version + "\n")


def find_version(root: str | Path, weights_digest: str) -> str | None:
    """The newest published version built from the model with ``weights_digest``, if any."""
    found = []
    for manifest in sorted((Path(root) / VERSIONS).glob(f"*/{MANIFEST_FILE}")):
        meta = json.loads(manifest.read_text())
        if weights_digest and meta.get("weights_digest") == weights_digest:
            found.append((meta.get("created_at", ""), manifest.parent.name))
    return max(found)[1] if found else None


def _index_cfg(cfg: IndexConfig) -> dict:
    from pinsage_model.config import config_to_dict

    # settings that do not change the index itself stay out of the version's content digest
    return {k: v for k, v in config_to_dict(cfg).items() if k not in ("publish_root", "keep_versions", "prune_grace_s")}


def prune_versions(root: str | Path, keep: int, *, now: str, grace_s: float = 3600.0) -> list[str]:
    """Delete published versions beyond the ``keep`` newest; return the names deleted, oldest first.

    Never deleted: the version ``CURRENT`` names, and any version created less than ``grace_s``
    seconds before ``now`` (ISO 8601, chosen by the caller). An :class:`IndexReader` loads a
    version whole when ``CURRENT`` first names it, so only a reader still loading a version that
    has just stopped being current could notice its removal; the grace period covers that window.
    A version is first renamed to a hidden name, then removed, so it disappears at once.
    Unfinished temporary directories of crashed publishers older than the grace period go too.
    """
    import datetime as dt

    def timestamp(iso: str) -> float:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

    now_ts = timestamp(now)
    root = Path(root)
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    serving = current_version(root) if (root / CURRENT).exists() else None
    versions = []
    for manifest in (root / VERSIONS).glob(f"*/{MANIFEST_FILE}"):
        meta = json.loads(manifest.read_text())
        versions.append((meta.get("created_at", ""), manifest.parent.name))
    versions.sort(reverse=True)  # newest first; names break ties deterministically
    doomed = [name for created, name in versions[keep:] if name != serving and now_ts - timestamp(created) >= grace_s]
    for name in doomed:
        trash = root / VERSIONS / f".{name}.deleting"
        os.rename(root / VERSIONS / name, trash)
        shutil.rmtree(trash)
    for tmp in (root / VERSIONS).glob(".*.tmp"):
        if now_ts - tmp.stat().st_mtime >= grace_s:
            shutil.rmtree(tmp, ignore_errors=True)
    return doomed[::-1]


def current_version(root: str | Path) -> str:
    """The name in ``<root>/CURRENT``."""
    path = Path(root) / CURRENT
    if not path.exists():
        raise IndexVersionError(f"{path}: no published index (run the 'index' stage first)")
    return path.read_text().strip()


def mirror_version(version_dir: str | Path, dest_root: str | Path) -> Path:
    """Copy (hard-link where possible) a published version into another root and point its CURRENT.

    The run directory's ``index/`` holds the version its run published, so a run is self-contained
    while the shared publish root keeps the history that live readers use.
    """
    src = Path(version_dir)
    dest = Path(dest_root) / VERSIONS / src.name
    dest.mkdir(parents=True, exist_ok=True)
    for f in (INDEX_FILE, IDS_FILE, EMB_FILE, SHIFT_FILE, USER_HEAD_FILE, MANIFEST_FILE):
        if not (src / f).exists():  # the shift and user-head files are optional
            continue
        try:
            os.link(src / f, dest / f)
        except OSError:
            shutil.copy2(src / f, dest / f)
    atomic_write_text(Path(dest_root) / CURRENT, src.name + "\n")
    return dest


@dataclass(frozen=True)
class LoadedVersion:
    """One published version, read whole: index, ids and embeddings of the same directory."""

    name: str
    path: Path
    manifest: dict
    index: object
    item_ids: np.ndarray  # (N,) object str
    item_idx: np.ndarray  # (N,) int32
    embeddings: np.ndarray  # (N, d) float32
    row_of: dict
    query_shift: np.ndarray  # (d,) float32, zero when the version has none
    user_head: dict | None = None  # the model's user head, None when it has none

    def user_query(self, item_ids: Sequence[str]) -> np.ndarray:
        """(d,) homefeed query for a user's known items, oldest first: the user head over them
        (recency by position) plus its shift; without a head, their mean on the unit sphere plus
        the query shift."""
        emb = np.asarray(self.embeddings[self.rows(item_ids)], np.float64)  # (L, d)
        if self.user_head is None:
            mean = emb.mean(axis=0)
            return (mean / max(float(np.linalg.norm(mean)), 1e-12) + self.query_shift).astype(np.float32)
        from pinsage_model.model.user_head import apply_head, recency_weights

        w = recency_weights(np.arange(len(emb) - 1, -1, -1), float(self.user_head["recency_half_life"]))
        p = (w[:, None] * emb).sum(axis=0) / w.sum()
        p = p / max(float(np.linalg.norm(p)), 1e-12)
        return (apply_head(p[None, :].astype(np.float32), self.user_head)[0] + self.user_head["shift"]).astype(
            np.float32
        )

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        missing = [i for i in item_ids if i not in self.row_of]
        if missing:
            raise KeyError(f"item id(s) not in index version {self.name}: {', '.join(map(str, missing[:5]))}")
        return np.array([self.row_of[i] for i in item_ids], dtype=np.int64)


@dataclass(frozen=True)
class Neighbours:
    """A query's answer and the index version that produced it."""

    version: str
    item_ids: list[str]
    scores: list[float]


def load_version(path: str | Path, verify: bool = True) -> LoadedVersion:
    """Read a version directory; with ``verify`` check every file against the manifest's sha256."""
    import pyarrow.parquet as pq

    from pinsage_model.model.user_head import load_head

    faiss = _faiss()
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
    _apply_search_params(index, manifest["index"])
    ids = pq.read_table(path / IDS_FILE)
    item_ids = np.asarray(ids.column("item_id").to_pylist(), dtype=object)
    emb = np.load(path / EMB_FILE, mmap_mode="r")
    if index.ntotal != len(item_ids) or emb.shape[0] != len(item_ids):
        raise IndexVersionError(
            f"{path}: index ({index.ntotal}), ids ({len(item_ids)}) and embeddings ({emb.shape[0]}) differ in size"
        )
    return LoadedVersion(
        name=path.name,
        path=path,
        manifest=manifest,
        index=index,
        item_ids=item_ids,
        item_idx=ids.column("item_idx").to_numpy(),
        embeddings=emb,
        row_of={v: i for i, v in enumerate(item_ids.tolist())},
        query_shift=(
            np.load(path / SHIFT_FILE, allow_pickle=False).astype(np.float32)
            if (path / SHIFT_FILE).exists()
            else np.zeros(emb.shape[1], np.float32)
        ),
        user_head=load_head(path),
    )


class IndexReader:
    """Query the current published version of a publish root.

    Each query call resolves ``CURRENT`` once and answers entirely from that version (loaded
    whole and cached), so queries keep working, consistently, while new versions are published.
    Safe to share between threads.
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

    def search_vectors(
        self, vectors: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None
    ) -> list[Neighbours]:
        """Top-k items by inner product for each (B, d) query vector, skipping ``exclude[b]`` ids."""
        return _search(self.current(), vectors, k, exclude)

    def related_items(self, item_id: str, k: int = 10) -> Neighbours:
        """The k best items for ``item_id`` (itself excluded): inner product with its embedding
        plus the version's query shift."""
        return self.related_items_batch([item_id], k)[0]

    def related_items_batch(self, item_ids: Sequence[str], k: int = 10) -> list[Neighbours]:
        """:meth:`related_items` for several items, all answered from one version."""
        v = self.current()
        rows = v.rows(item_ids)
        return _search(v, np.asarray(v.embeddings[rows]) + v.query_shift, k, [[i] for i in item_ids])

    def user_feed(self, recent_items: Sequence[str], k: int = 10) -> Neighbours:
        """Homefeed from one user vector (what evaluation's ``pinsage-pooled`` ranks): the
        version's :meth:`LoadedVersion.user_query` over the known recent items (oldest first),
        the recent items excluded. Unknown ids are skipped; none known raises KeyError."""
        v = self.current()
        known = list(dict.fromkeys(i for i in recent_items if i in v.row_of))
        if not known:
            raise KeyError(f"none of the recent items is in index version {v.name}")
        return _search(v, v.user_query(known)[None, :], k, [known])[0]

    def homefeed(self, recent_items: Sequence[str], k: int = 10) -> Neighbours:
        """Homefeed (paper 4.1): items closest to any of the user's recent items.

        Each candidate scores its best inner product with one of the recent items; the recent
        items themselves are excluded. Unknown ids are skipped; none known raises KeyError.
        """
        v = self.current()
        known = [i for i in recent_items if i in v.row_of]
        if not known:
            raise KeyError(f"none of the recent items is in index version {v.name}")
        per_item = _search(v, np.asarray(v.embeddings[v.rows(known)]) + v.query_shift, k, [known] * len(known))
        best: dict[str, float] = {}
        for nb in per_item:
            for item, score in zip(nb.item_ids, nb.scores):
                best[item] = max(score, best.get(item, -np.inf))
        top = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return Neighbours(v.name, [t[0] for t in top], [t[1] for t in top])


def _search(v: LoadedVersion, vectors: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None) -> list[Neighbours]:
    queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    extra = max((len(e) for e in exclude), default=0) if exclude else 0
    kk = min(k + extra, v.index.ntotal)
    scores, rows = v.index.search(queries, kk)
    out = []
    for b in range(len(queries)):
        skip = set(exclude[b]) if exclude else set()
        ids, sc = [], []
        for r, s in zip(rows[b], scores[b]):
            if r < 0:
                continue
            item = v.item_ids[r]
            if item in skip:
                continue
            ids.append(item)
            sc.append(float(s))
            if len(ids) == k:
                break
        out.append(Neighbours(v.name, ids, sc))
    return out
