"""Nearest-neighbour index over item embeddings: build, check recall, publish versions (paper 3.5).

Layout of a publish root (a persistent folder shared by successive pipeline runs)::

    <root>/versions/<version>/index.faiss    faiss.write_index output
                             ids.parquet     row (int64, faiss id), item_id (str), item_idx (int32)
                             embeddings.npy  (N, d) float32, L2-normalised, row-aligned with ids
                             query_shift.npy (d,) float32, added to every query vector (only
                                             when the model learned a non-zero shift)
                             user_head.npz   the model's user head (only when it has one): the
                                             homefeed vector of a user's recent items
                             user_nodes.npz  instead, for a model trained with users as query
                                             nodes: what convolves a user over its recent items
                             homefeed_prior.npz  the homefeed popularity prior (item index ->
                                             log(1 + engagements)) and its weight, when the
                                             embeddings stage fitted one
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

Reading a version and querying it: :mod:`pinsage_model.serving.query`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np

from pinsage_model.config import IndexConfig
from pinsage_model.io import atomic_write_text, file_digest, fsync_path, fsync_tree, json_digest

CURRENT = "CURRENT"
VERSIONS = "versions"
INDEX_FILE, IDS_FILE, EMB_FILE, MANIFEST_FILE = "index.faiss", "ids.parquet", "embeddings.npy", "manifest.json"
SHIFT_FILE = "query_shift.npy"
USER_HEAD_FILE = "user_head.npz"
USER_NODES_FILE = "user_nodes.npz"
PRIOR_FILE = "homefeed_prior.npz"
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
    params: dict[str, Any]
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


def apply_search_params(index, params: dict) -> None:
    """Set the search-time parameters a manifest records (``efSearch``, ``nprobe``) on a read index."""
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


@dataclass(frozen=True)
class VersionContent:
    """What an index version is made of, checked: the content its name is a digest of.

    Attributes:
      embeddings: (N, d) float32 L2-normalised item embeddings.
      item_ids: (N,) unique item ids (object str), row-aligned with ``embeddings``.
      item_idx: (N,) int32 dense item indices kept in ``ids.parquet``.
      query_shift: (d,) float32 non-zero query shift, or None.
      user_head: the model's user head, or None.
      user_nodes: ``user_nodes.npz`` of a model with user nodes (:mod:`pinsage_model.model.users`), or None.
      homefeed_prior: ``(prior (N_all,) by item index, weight)`` (:mod:`pinsage_model.model.prior`), or None.
    """

    embeddings: np.ndarray
    item_ids: np.ndarray
    item_idx: np.ndarray
    query_shift: np.ndarray | None
    user_head: dict[str, np.ndarray] | None
    user_nodes: dict[str, np.ndarray] | None = None
    homefeed_prior: tuple[np.ndarray, float] | None = None

    @classmethod
    def checked(
        cls,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        item_idx: np.ndarray | None = None,
        query_shift: np.ndarray | None = None,
        user_head: dict[str, np.ndarray] | None = None,
        user_nodes: dict[str, np.ndarray] | None = None,
        homefeed_prior: tuple[np.ndarray, float] | None = None,
    ) -> "VersionContent":
        """The content, or ValueError when shapes or ids are inconsistent (see :func:`publish`)."""
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        ids = np.asarray([str(i) for i in item_ids], dtype=object)
        if emb.ndim != 2 or emb.shape[0] != len(ids) or emb.shape[0] == 0:
            raise ValueError(f"embeddings {emb.shape} and {len(ids)} item ids must be non-empty and row-aligned")
        if len(set(ids.tolist())) != len(ids):
            raise ValueError("item ids must be unique to publish an index")
        if not np.all(np.isfinite(emb)):
            raise ValueError("embeddings contain NaN or infinite values")
        idx = np.arange(len(ids), dtype=np.int32) if item_idx is None else np.asarray(item_idx, dtype=np.int32)
        shift = None if query_shift is None or not np.any(query_shift) else np.asarray(query_shift, np.float32)
        if shift is not None and shift.shape != (emb.shape[1],):
            raise ValueError(f"query_shift has shape {shift.shape}, expected ({emb.shape[1]},)")
        if homefeed_prior is not None and len(homefeed_prior[0]) <= int(idx.max()):
            raise ValueError(f"homefeed prior has {len(homefeed_prior[0])} items; item_idx reaches {int(idx.max())}")
        return cls(emb, ids, idx, shift, user_head, user_nodes, homefeed_prior)

    def version_name(self, model_version: str, cfg: IndexConfig) -> str:
        """``<model version>-<digest of the content and the index settings>``."""
        key: dict[str, Any] = {
            "emb": hashlib.sha256(self.embeddings.data).hexdigest(),
            "ids": self.item_ids.tolist(),
            "index": _index_cfg(cfg),
        }
        if self.query_shift is not None:
            key["query_shift"] = self.query_shift.tolist()
        if self.user_head is not None:
            key["user_head"] = {
                k: hashlib.sha256(np.ascontiguousarray(v, np.float32).data).hexdigest()
                for k, v in sorted(self.user_head.items())
            }
        if self.user_nodes is not None:
            key["user_nodes"] = {
                k: hashlib.sha256(np.ascontiguousarray(v).data).hexdigest() for k, v in sorted(self.user_nodes.items())
            }
        if self.homefeed_prior is not None:
            prior, weight = self.homefeed_prior
            key["homefeed_prior"] = [hashlib.sha256(np.ascontiguousarray(prior, np.float32).data).hexdigest(), weight]
        return f"{_safe_name(model_version)}-{json_digest(key)[:12]}"


def checked_index(content: VersionContent, cfg: IndexConfig, seed: int) -> tuple[Any, dict, float, int]:
    """Build the configured index over the content and check its recall.

    Returns:
      (index, params, recall@10 against exact search, number of recall queries).

    Raises:
      IndexRecallError: the recall is below ``cfg.recall_floor``.
    """
    emb = content.embeddings
    index, params = build_index(emb, cfg, seed)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(len(emb), size=min(cfg.recall_queries, len(emb)), replace=False))
    recall = 1.0 if params["kind"] == "flat_ip" else recall_at_k(index, emb, queries, query_shift=content.query_shift)
    if recall < cfg.recall_floor:
        raise IndexRecallError(
            f"recall@{RECALL_K} of the {params['kind']} index is {recall:.4f} on {len(queries)} queries, "
            f"below index.recall_floor={cfg.recall_floor}; raise index.ann.ef_search/nprobe (or m/nlist) "
            "in the index config"
        )
    return index, params, recall, len(queries)


def write_version(folder: Path, index, content: VersionContent, record: dict) -> None:
    """Write a version's files into ``folder``: the index, ids, embeddings, the optional shift and
    user head, and ``manifest.json`` (``record`` plus the sizes and every file's sha256)."""
    import faiss
    import pyarrow as pa

    from pinsage_model.io import atomic_save_npy, atomic_write_json, atomic_write_parquet

    faiss.write_index(index, str(folder / INDEX_FILE))
    ids = pa.table(
        {
            "row": pa.array(np.arange(len(content.item_ids), dtype=np.int64)),
            "item_id": pa.array(content.item_ids.tolist(), pa.string()),
            "item_idx": pa.array(content.item_idx),
        }
    )
    atomic_write_parquet(folder / IDS_FILE, ids)
    atomic_save_npy(folder / EMB_FILE, content.embeddings)
    files = [INDEX_FILE, IDS_FILE, EMB_FILE]
    if content.query_shift is not None:
        atomic_save_npy(folder / SHIFT_FILE, content.query_shift)
        files.append(SHIFT_FILE)
    if content.user_head is not None:
        from pinsage_model.model.user_head import save_head

        save_head(content.user_head, folder)
        files.append(USER_HEAD_FILE)
    if content.user_nodes is not None:
        from pinsage_model.model.users import save_user_nodes

        save_user_nodes(content.user_nodes, folder)
        files.append(USER_NODES_FILE)
    if content.homefeed_prior is not None:
        from pinsage_model.model.prior import save_prior

        save_prior(folder, *content.homefeed_prior)
        files.append(PRIOR_FILE)
    manifest = {
        **record,
        "num_items": int(len(content.item_ids)),
        "dim": int(content.embeddings.shape[1]),
        "files": {f: file_digest(folder / f) for f in files},
    }
    atomic_write_json(folder / MANIFEST_FILE, manifest)


def _complete_version(root: Path, version: str, fill) -> Path:
    """``<root>/versions/<version>``, made by ``fill(tmp)`` in a temporary sibling renamed into
    place (atomic), unless that version is already complete."""
    final = root / VERSIONS / version
    if (final / MANIFEST_FILE).exists():
        return final
    (root / VERSIONS).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=root / VERSIONS))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        fsync_tree(tmp)  # complete on disk before its name is
        try:
            os.rename(tmp, final)  # atomic; fails if another publisher got there first
        except OSError:
            if not (final / MANIFEST_FILE).exists():
                raise
        fsync_path(root / VERSIONS)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


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
    user_nodes: dict[str, np.ndarray] | None = None,
    homefeed_prior: tuple[np.ndarray, float] | None = None,
) -> Path:
    """Build, check and publish an index version under ``out_root`` and make it current.

    Args:
      embeddings: (N, d) float32 L2-normalised item embeddings.
      item_ids: N item ids (str), row-aligned with ``embeddings``; must be unique.
      out_root: publish root (see the module docstring for its layout).
      model_version: the model these embeddings come from (recorded, and prefixes the version).
      metrics: offline evaluation metrics to record in the manifest.
      created_at: creation time (ISO 8601), chosen by the caller: logic never reads the clock.
      cfg: index kind, parameters and recall floor.
      item_idx: optional dense item indices (N,) to keep in ``ids.parquet`` (default 0..N-1).
      seed: sampling of the recall queries and of IVF training points.
      make_current: switch ``CURRENT`` to this version (False: publish it beside the serving one).
      weights_digest: the model weights' digest, so the registry's champion finds it (:func:`find_version`).
      query_shift: (d,) the model's learned query shift, saved with the version, added to item queries.
      user_head, user_nodes, homefeed_prior: head, ``user_nodes.npz``, (prior, weight): homefeeds as evaluation's.

    Returns:
      The version directory. Publishing the same content again only re-points ``CURRENT``.

    Raises:
      IndexRecallError: recall@10 of the approximate index is below ``cfg.recall_floor``.
      ValueError: shapes or ids are inconsistent.
    """
    content = VersionContent.checked(embeddings, item_ids, item_idx, query_shift, user_head, user_nodes, homefeed_prior)
    root, version = Path(out_root), content.version_name(model_version, cfg)
    if not (root / VERSIONS / version / MANIFEST_FILE).exists():
        index, params, recall, num_queries = checked_index(content, cfg, seed)  # before anything is written
        record = {
            **{"version": version, "model_version": model_version, "weights_digest": weights_digest},
            **{"created_at": created_at, "metrics": metrics, f"recall_at_{RECALL_K}": recall},
            **{"recall_queries": int(num_queries), "recall_floor": cfg.recall_floor, "index": params},
        }
        _complete_version(root, version, lambda tmp: write_version(tmp, index, content, record))
    if make_current:
        set_current(root, version)
    return root / VERSIONS / version


def publish_embeddings(
    embeddings_dir: Path,
    item_ids_path: Path,
    out_root: Path,
    metrics: dict,
    *,
    created_at: str,
    cfg: IndexConfig,
    seed: int,
    make_current: bool,
    prior_dir: Path | None = None,
) -> tuple[Path, int]:
    """:func:`publish` the item embeddings of an embeddings folder (``items.npy``, ``model.json``,
    the optional ``query_shift.npy``, ``user_head.npz``, ``user_nodes.npz`` and
    ``homefeed_prior.npz``) with their ids (the graph's ``item_ids.parquet``).

    Rows whose embedding is all zero (a dead ReLU head) cannot be ranked and stay out of the index.
    ``prior_dir``: the folder of the ``homefeed_prior.npz`` to bundle (the evaluation's, which
    chose its weight), if any.

    Returns:
      (the version directory, how many all-zero rows were left out).

    Raises:
      IndexRecallError, ValueError: as :func:`publish`; ContractError: an unreadable input.
    """
    from pinsage_model.data.contracts import ITEM_IDS, read_query_shift, read_table
    from pinsage_model.model.prior import load_prior
    from pinsage_model.model.user_head import load_head
    from pinsage_model.model.users import load_user_nodes

    emb = np.load(embeddings_dir / "items.npy", mmap_mode="r")
    ids = read_table(item_ids_path, ITEM_IDS)
    model = json.loads((embeddings_dir / "model.json").read_text())
    order = np.argsort(ids.column("item_idx").to_numpy())
    item_ids = np.asarray(ids.column("item_id").to_pylist(), dtype=object)[order]
    if len(item_ids) != emb.shape[0]:
        raise ValueError(f"{emb.shape[0]} embeddings but {len(item_ids)} item ids; rerun the embeddings stage")
    keep = np.linalg.norm(emb, axis=1) > 0.5
    vdir = publish(
        np.asarray(emb[keep]),
        item_ids[keep].tolist(),
        out_root,
        model["model_version"],
        metrics,
        created_at=created_at,
        cfg=cfg,
        item_idx=np.flatnonzero(keep).astype(np.int32),
        seed=seed,
        make_current=make_current,
        weights_digest=model.get("weights_digest", ""),
        query_shift=read_query_shift(embeddings_dir, emb.shape[1]),
        user_head=load_head(embeddings_dir),
        user_nodes=load_user_nodes(embeddings_dir),
        homefeed_prior=None if prior_dir is None else load_prior(prior_dir),
    )
    return vdir, int((~keep).sum())


def install_version(version_dir: str | Path, root: str | Path, name: str = "") -> Path:
    """Put an already published version into another publish root, unchanged (hard links where
    possible, else copies), atomically as :func:`publish` does; ``CURRENT`` is left alone.

    ``name``: the version's name when its folder is named otherwise (the ``index`` folder bundled
    in a registered model); it must be the one its manifest records."""
    src = Path(version_dir)
    if name and (src / MANIFEST_FILE).exists():
        recorded = json.loads((src / MANIFEST_FILE).read_text()).get("version")
        if recorded != name:
            raise IndexVersionError(f"{src}: its manifest names version {recorded!r}, not {name!r}")

    def fill(tmp: Path) -> None:
        # every file the manifest lists (the optional shift, user head and user nodes included)
        for f in [*files, MANIFEST_FILE]:
            if not (src / f).exists():
                raise IndexVersionError(f"{src}: {f} is listed in {MANIFEST_FILE} but missing")
            try:
                os.link(src / f, tmp / f)
            except OSError:
                shutil.copy2(src / f, tmp / f)

    if not (src / MANIFEST_FILE).exists():
        raise IndexVersionError(f"{src}: no such published version")
    files = list(json.loads((src / MANIFEST_FILE).read_text())["files"])
    return _complete_version(Path(root), name or src.name, fill)


def set_current(root: str | Path, version: str) -> None:
    """Atomically make ``version`` (a directory under ``<root>/versions``) the serving one.

    The version that served until now gets its folder's modification time set to now: readers may
    still be loading it, and :func:`prune_versions` counts its grace period from that moment.
    Callers that may race hold the root's lock (:func:`publish_lock`)."""
    root = Path(root)
    if not (root / VERSIONS / version / MANIFEST_FILE).exists():
        raise IndexVersionError(f"{root / VERSIONS / version}: no such published version")
    previous = (root / CURRENT).read_text().strip() if (root / CURRENT).exists() else ""
    if previous == version:
        return
    atomic_write_text(root / CURRENT, version + "\n")
    if previous and (root / VERSIONS / previous).is_dir():
        os.utime(root / VERSIONS / previous)


def publish_lock(root: str | Path, timeout_s: float):
    """The lock of a publish root (:mod:`pinsage_model.locks`): whoever switches ``CURRENT``,
    installs or prunes versions holds it."""
    from pinsage_model.locks import folder_lock

    return folder_lock(root, "publish root", timeout_s)


def default_publish_root(cfg: IndexConfig, run_area: str | Path, run_id: str) -> Path:
    """``index.publish_root``, or ``published/<run id>`` in the run area."""
    return Path(cfg.publish_root) if cfg.publish_root else Path(run_area) / "published" / run_id


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
    return {k: v for k, v in config_to_dict(cfg).items() if k not in _NOT_INDEX_CONTENT}


# Index settings about where versions go, how long they stay and what a request may ask.
_NOT_INDEX_CONTENT = (
    "publish_root",
    "keep_versions",
    "prune_grace_s",
    "max_ids_per_row",
    "max_rows_per_request",
)


def prune_versions(
    root: str | Path, keep: int, *, protect: Collection[str] = (), now_s: float, grace_s: float
) -> list[str]:
    """Delete published versions beyond the ``keep`` newest; return the names deleted, oldest first.

    Never deleted: the version ``CURRENT`` names, those in ``protect`` (the champion and the
    previous champions, rollback targets), and any version installed or last serving less than
    ``grace_s`` seconds before ``now_s`` (wall-clock seconds since the epoch: an
    :class:`pinsage_model.serving.query.IndexReader` that resolved ``CURRENT`` just before a
    switch may still be loading it, however far apart the runs' logical times are). "Newest" is
    by the manifests' ``created_at``. A version is first renamed to a hidden name, then removed,
    so it disappears at once. The caller holds the root's lock (:func:`publish_lock`).
    """
    root = Path(root)
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    kept = set(protect) | ({current_version(root)} if (root / CURRENT).exists() else set())
    versions = []
    for manifest in (root / VERSIONS).glob(f"*/{MANIFEST_FILE}"):
        meta = json.loads(manifest.read_text())
        versions.append((meta.get("created_at", ""), manifest.parent.name))
    versions.sort(reverse=True)  # newest first; names break ties deterministically
    doomed = [
        name
        for _, name in versions[keep:]
        if name not in kept and now_s - (root / VERSIONS / name).stat().st_mtime >= grace_s
    ]
    for name in doomed:
        trash = root / VERSIONS / f".{name}.deleting"
        os.rename(root / VERSIONS / name, trash)
        shutil.rmtree(trash)
    return doomed[::-1]


def remove_unfinished(root: str | Path) -> list[str]:
    """Remove what killed publishers and pruners left under ``<root>/versions``: ``.*.tmp``
    folders never renamed into place and ``.*.deleting`` folders half removed. Only under the
    root's lock (:func:`publish_lock`), when no one else is writing there; returns their names."""
    folder = Path(root) / VERSIONS
    left = sorted(p for pattern in (".*.tmp", ".*.deleting") for p in folder.glob(pattern))
    for path in left:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in left]


def current_version(root: str | Path) -> str:
    """The name in ``<root>/CURRENT``."""
    path = Path(root) / CURRENT
    if not path.exists():
        raise IndexVersionError(f"{path}: no published index (run the 'index' stage first)")
    return path.read_text().strip()


def mirror_version(version_dir: str | Path, dest_root: str | Path) -> Path:
    """:func:`install_version` into ``dest_root`` and point its ``CURRENT`` at the version.

    The run directory's ``index/`` holds the version its run published, so a run is self-contained
    while the shared publish root keeps the history that live readers use.
    """
    dest = install_version(version_dir, dest_root)
    set_current(dest_root, dest.name)
    return dest
