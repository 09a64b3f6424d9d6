"""The bipartite item-collection graph in CSR form and the importance neighbourhoods (the ``graph``
and ``neighbourhoods`` stages' arrays; layouts in :mod:`pinsage_model.data.contracts`).

Both are read memory-mapped from uncompressed ``.npz`` files, so a large graph costs page cache,
not process memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pinsage_model.data.contracts import ContractError


@dataclass(frozen=True)
class CSRGraph:
    """Bipartite item-collection graph in CSR form, both directions.

    ``item_indptr``/``item_indices``: collections of each item; ``coll_indptr``/``coll_indices``:
    items of each collection. Arrays may be memory-mapped.
    """

    item_indptr: np.ndarray  # (N+1,) int64
    item_indices: np.ndarray  # (E,) int32
    coll_indptr: np.ndarray  # (C+1,) int64
    coll_indices: np.ndarray  # (E,) int32

    @property
    def num_items(self) -> int:
        return len(self.item_indptr) - 1

    @property
    def num_collections(self) -> int:
        return len(self.coll_indptr) - 1

    @property
    def num_edges(self) -> int:
        return len(self.item_indices)

    def item_degree(self) -> np.ndarray:
        return np.diff(self.item_indptr)

    def collection_degree(self) -> np.ndarray:
        return np.diff(self.coll_indptr)

    def validate(self, source: str = "<graph>") -> "CSRGraph":
        for name in ("item_indptr", "coll_indptr"):
            a = getattr(self, name)
            if a.dtype != np.int64 or a.ndim != 1 or a[0] != 0 or np.any(np.diff(a) < 0):
                raise ContractError(f"{source}: '{name}' must be a non-decreasing int64 vector from 0")
        for name in ("item_indices", "coll_indices"):
            if getattr(self, name).dtype != np.int32:
                raise ContractError(f"{source}: '{name}' must be int32")
        if self.item_indptr[-1] != len(self.item_indices) or self.coll_indptr[-1] != len(self.coll_indices):
            raise ContractError(f"{source}: indptr does not end at the number of edges")
        if len(self.item_indices) != len(self.coll_indices):
            raise ContractError(f"{source}: the two directions have different edge counts")
        if len(self.item_indices) and (
            self.item_indices.max() >= self.num_collections or self.coll_indices.max() >= self.num_items
        ):
            raise ContractError(f"{source}: an index is out of range")
        return self

    @staticmethod
    def from_edges(item_idx: np.ndarray, coll_idx: np.ndarray, num_items: int, num_collections: int) -> "CSRGraph":
        """Build both CSR directions from an edge list; duplicate edges are merged."""
        item_idx = np.asarray(item_idx, dtype=np.int64)
        coll_idx = np.asarray(coll_idx, dtype=np.int64)
        # Sort + neighbour comparison: much faster than np.unique on large int64 arrays.
        key = np.sort(item_idx * num_collections + coll_idx)
        if len(key):
            key = key[np.concatenate(([True], key[1:] != key[:-1]))]
        items, colls = key // num_collections, key % num_collections
        item_indptr = np.zeros(num_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(items, minlength=num_items), out=item_indptr[1:])
        order = np.lexsort((items, colls))
        coll_indptr = np.zeros(num_collections + 1, dtype=np.int64)
        np.cumsum(np.bincount(colls, minlength=num_collections), out=coll_indptr[1:])
        return CSRGraph(
            item_indptr=item_indptr,
            item_indices=colls.astype(np.int32),
            coll_indptr=coll_indptr,
            coll_indices=items[order].astype(np.int32),
        )

    def save(self, path: str | Path) -> None:
        from pinsage_model.io import atomic_save_npz

        atomic_save_npz(
            path,
            item_indptr=self.item_indptr,
            item_indices=self.item_indices,
            coll_indptr=self.coll_indptr,
            coll_indices=self.coll_indices,
        )

    @staticmethod
    def load(path: str | Path, mmap: bool = True) -> "CSRGraph":
        """Load a graph; with ``mmap`` the arrays are memory-mapped from the npz members."""
        path = Path(path)
        arrays = _load_existing(path, "graph", mmap)
        missing = {"item_indptr", "item_indices", "coll_indptr", "coll_indices"} - set(arrays)
        if missing:
            raise ContractError(f"{path}: missing arrays {sorted(missing)}")
        return CSRGraph(
            **{k: arrays[k] for k in ("item_indptr", "item_indices", "coll_indptr", "coll_indices")}
        ).validate(str(path))


def _load_existing(path: Path, what: str, mmap: bool) -> dict[str, np.ndarray]:
    if not path.exists():
        raise ContractError(f"{path}: {what} file not found")
    return load_npz(path, mmap=mmap)


def load_npz(path: str | Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """Load every member of an uncompressed ``.npz``; memory-mapped where possible."""
    import zipfile

    path = Path(path)
    out: dict[str, np.ndarray] = {}
    if mmap:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if all(i.compress_type == zipfile.ZIP_STORED for i in infos):
                for info in infos:
                    name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                    out[name] = _mmap_member(path, info)
                return out
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _mmap_member(path: Path, info) -> np.ndarray:
    """Memory-map one stored (uncompressed) ``.npy`` member of a zip file."""
    import struct

    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        data_offset = info.header_offset + 30 + name_len + extra_len
        fh.seek(data_offset)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


@dataclass(frozen=True)
class Neighbourhoods:
    """Importance neighbourhoods: top-T items per item with L1-normalised visit weights."""

    indices: np.ndarray  # (N, T) int32, -1 = padding
    weights: np.ndarray  # (N, T) float32, 0 at padding

    @property
    def mask(self) -> np.ndarray:
        return self.indices >= 0

    def validate(self, source: str = "<neighbourhoods>", atol: float = 1e-4) -> "Neighbourhoods":
        if self.indices.shape != self.weights.shape or self.indices.ndim != 2:
            raise ContractError(f"{source}: indices and weights must both be (N, T)")
        if self.indices.dtype != np.int32 or self.weights.dtype != np.float32:
            raise ContractError(f"{source}: indices must be int32 and weights float32")
        sums = self.weights.sum(axis=1)
        has = self.mask.any(axis=1)
        if np.any(np.abs(sums[has] - 1.0) > atol) or np.any(self.weights[~self.mask] != 0):
            raise ContractError(f"{source}: weights must sum to 1 over unpadded entries, 0 at padding")
        return self

    def save(self, path: str | Path) -> None:
        from pinsage_model.io import atomic_save_npz

        atomic_save_npz(path, indices=self.indices, weights=self.weights)

    @staticmethod
    def load(path: str | Path, mmap: bool = False) -> "Neighbourhoods":
        path = Path(path)
        a = _load_existing(path, "neighbourhood", mmap)
        return Neighbourhoods(indices=a["indices"], weights=a["weights"]).validate(str(path))


def csr_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block row, column) coordinates of the entries of CSR ``rows``, for fancy indexing.

    ``block_row[e]`` is the position in ``rows`` of entry ``e``'s row and ``column[e]`` its index.
    """
    starts = np.asarray(indptr)[rows]
    lengths = np.asarray(indptr)[np.asarray(rows) + 1] - starts
    block_row = np.repeat(np.arange(len(rows)), lengths)
    # offset of each entry inside its row, added to that row's start
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return block_row, np.asarray(indices)[np.repeat(starts, lengths) + offsets]


def csr_subset(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR ``(indptr, indices)`` of ``rows`` only, in that order (int64 indptr from 0)."""
    indptr = np.asarray(indptr)
    rows = np.asarray(rows)
    ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(indptr[rows + 1] - indptr[rows], out=ptr[1:])
    return ptr, csr_rows(indptr, indices, rows)[1]


def collection_recency(graph: CSRGraph, item_idx: np.ndarray, coll_idx: np.ndarray, last_ts: np.ndarray) -> np.ndarray:
    """(E,) int32 aligned with ``graph.coll_indices``: the number of the collection's items engaged
    later than this one (0 = the latest). Equal timestamps rank the higher item index as later,
    so the order does not depend on how the edges arrived.

    Args:
      graph: the CSR graph built from these edges (one edge per distinct (item, collection)).
      item_idx, coll_idx, last_ts: (E,) the edges in any order, with their latest timestamp.
    """
    order = np.lexsort((item_idx, coll_idx))  # the CSR order: by collection, then item
    item_s, coll_s, ts_s = item_idx[order], coll_idx[order], last_ts[order]
    if not np.array_equal(item_s, graph.coll_indices):
        raise ContractError("collection_recency: the edges do not match the graph's collection rows")
    latest_first = np.lexsort((-item_s, -ts_s, coll_s))
    rank = np.empty(len(order), np.int64)
    rank[latest_first] = np.arange(len(order)) - np.asarray(graph.coll_indptr)[coll_s[latest_first]]
    return rank.astype(np.int32)


def read_collection_recency(graph_dir: str | Path, graph: CSRGraph) -> np.ndarray:
    """(E,) ``collection_recency.npy`` of a graph folder, checked against ``graph``."""
    path = Path(graph_dir) / "collection_recency.npy"
    if not path.exists():
        raise ContractError(
            f"{path}: not found; rerun the graph stage (graph folders older than the user head lack it)"
        )
    rec = np.load(path, allow_pickle=False)
    if rec.shape != (graph.num_edges,):
        raise ContractError(
            f"{path}: shape {rec.shape}, expected ({graph.num_edges},) like graph.npz's edges; rerun the graph stage"
        )
    return rec
