"""Atomic file and directory writes, and content fingerprints.

Every stage output is written to a temporary sibling and renamed into place, so a reader never
sees a half-written file and a failed stage leaves nothing behind. Before the rename the files
and their folder are flushed to disk (``fsync``) and after it the parent folder is, so after a
power loss a published name never points at an empty or partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600 files; published outputs should be readable like any other file.
    os.chmod(name, 0o644)
    return Path(name)


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """:func:`fsync_path` every file and folder under ``folder``, the folder last."""
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            if not os.path.islink(os.path.join(dirpath, name)):
                fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp file path next to ``path``; on success flush it to disk and rename it onto
    ``path``, then flush the folder (the rename itself)."""
    path = Path(path)
    tmp = _tmp_sibling(path, path.suffix)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` (uncompressed, so members can be memory-mapped) written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwds


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


@contextlib.contextmanager
def atomic_npy_rows(path: str | Path, shape: tuple[int, ...], dtype: Any) -> Iterator[Callable[[np.ndarray], None]]:
    """Write an ``.npy`` of ``shape`` block by block along axis 0, atomically.

    Yields ``write(block)``; the blocks must add up to ``shape[0]`` rows. The file's bytes are
    those of ``np.save`` of the whole array, without the array ever being in memory at once.
    """
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    written = 0

    def write(block: np.ndarray) -> None:
        nonlocal written
        if block.dtype != dtype or block.shape[1:] != tuple(shape[1:]) or written + len(block) > shape[0]:
            raise ValueError(
                f"{path}: block {block.dtype} {block.shape} does not fit {dtype} {shape} after {written} rows"
            )
        fh.write(np.ascontiguousarray(block).tobytes())
        written += len(block)

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            yield write
        if written != shape[0]:
            raise ValueError(f"{path}: {written} rows written, the header says {shape[0]}")


def atomic_write_parquet(path: str | Path, table: Any, metadata: dict[str, str] | None = None) -> None:
    """Write a pandas DataFrame or pyarrow Table as Parquet, atomically and deterministically.

    The schema's key-value metadata is exactly ``metadata`` (pandas' own is dropped: it varies)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    table = table.replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temp directory; on success it replaces ``path`` (old content removed).

    On failure the temp directory is removed and ``path`` is left as it was. Everything in it is
    flushed to disk before the rename. A temp directory that was removed while the block ran (and
    perhaps recreated by a later write) is not published: the block fails instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o755)
    # An open descriptor keeps the folder's inode from being reused, so a folder removed and
    # recreated under the same name shows a different inode at the end.
    handle = os.open(tmp, os.O_RDONLY)
    try:
        yield tmp
        if not tmp.is_dir() or tmp.stat().st_ino != os.fstat(handle).st_ino:
            raise OSError(f"{tmp}: removed by another process while this attempt wrote it; nothing published")
        fsync_tree(tmp)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_path(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        os.close(handle)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of every file under a directory (names and bytes, sorted)."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            # one running hash over every name and file: file_digest feeds the object it is given
            hashlib.file_digest(fh, lambda: h)
    return h.hexdigest()


def json_digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()
