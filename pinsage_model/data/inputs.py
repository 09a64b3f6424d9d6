"""Opening users' input files: file-level checks, per-line decoding and safe readers.

Every loader reads its files through these functions, so a file that is unusable as a whole
fails the same way whatever the format: a :class:`LoaderError` naming the file (and the line and
column where there is one), what was expected, what was found and what to do. What is checked:

* the path: missing, a dangling symlink or a symlink loop, a folder where a file is expected,
  unreadable, zero bytes;
* the content's magic bytes: gzip / zip / bzip2 / xz archives and Parquet or ``.npy`` files where
  text is expected (and the reverse), a Parquet file without its footer (truncated);
* ``.npy``: pickled or object arrays are refused (``allow_pickle=False``), truncated arrays and
  non-numeric dtypes are named.

Text is decoded **per line**: a file that is valid UTF-8 is decoded as such (a leading BOM is
dropped, CRLF line ends are accepted); otherwise only the lines that are not valid UTF-8 are
decoded as latin-1 (older MovieLens files, or one stray byte in an otherwise UTF-8 file), and
the loader reports how many lines and which. Line numbers in messages are 1-based physical
lines, as an editor shows them.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MAGIC = {
    b"\x1f\x8b": "gzip-compressed",
    b"PK\x03\x04": "a zip archive",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"PAR1": "a Parquet file",
    b"\x93NUMPY": "a .npy array",
}
_NUMERIC_HINT = "save a numeric array, e.g. np.save(path, vectors.astype(np.float32))"


class LoaderError(ValueError):
    """An input file is missing or unusable as a whole; the message names the file (and line/column)."""


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a readable, non-empty regular file, or a :class:`LoaderError` saying why not.

    Args:
      path: the file.
      what: what the file should hold (e.g. ``"ratings CSV"``), for the message.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise LoaderError(
                f"{path}: dangling symlink to '{os.readlink(path)}' (expected {what}); fix the link"
            ) from None
        raise LoaderError(f"{path}: file not found ({what})") from None
    except OSError as exc:  # ELOOP and friends
        raise LoaderError(
            f"{path}: cannot be opened ({exc.strerror}; expected {what}); a symlink loop? fix the path"
        ) from None
    if path.is_dir():
        raise LoaderError(f"{path}: is a folder, expected a file ({what}); point the config at the file inside it")
    if not path.is_file():
        raise LoaderError(f"{path}: not a regular file (expected {what})")
    if st.st_size == 0:
        raise LoaderError(f"{path}: empty file (0 bytes), expected {what}; re-export it")
    if not os.access(path, os.R_OK):
        raise LoaderError(f"{path}: not readable (permission denied), expected {what}")
    return path


def sniff(path: Path) -> str:
    """What the first bytes say the file is (``"text"`` when no known magic matches)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return "text"


def _refuse_binary(path: Path, what: str) -> None:
    kind = sniff(path)
    if kind != "text":
        fix = (
            "decompress it first (e.g. gunzip) and point at the plain file"
            if "compress" in kind or "zip" in kind
            else ("name it by its format (.parquet / .npy) or point the config at the text file")
        )
        raise LoaderError(f"{path}: is {kind}, expected {what} (plain text); {fix}")


@dataclass
class TextLines:
    """A text file's physical lines, decoded.

    Attributes:
      path: the file.
      lines: (L,) string array, one per physical line, without the line end (``\\n``, ``\\r\\n``).
      blank: (L,) bool, the line is empty or only whitespace.
      latin1: 0-based indices of lines that were not valid UTF-8 and were decoded as latin-1.
    """

    path: Path
    lines: pa.Array
    blank: np.ndarray
    latin1: np.ndarray

    def note(self) -> list[str]:
        """The decoding note for the report (empty when every line was UTF-8)."""
        if not len(self.latin1):
            return []
        first = ", ".join(str(i + 1) for i in self.latin1[:5])
        more = ", ..." if len(self.latin1) > 5 else ""
        whole = "every non-ASCII line" if len(self.latin1) == self._non_ascii() else "only these lines"
        return [f"{len(self.latin1)} lines not valid UTF-8 were decoded as latin-1 ({whole}; lines {first}{more})"]

    def _non_ascii(self) -> int:
        return int(pc.sum(pc.invert(pc.string_is_ascii(self.lines))).as_py() or 0)


def read_lines(path: str | Path, what: str) -> TextLines:
    """Decode a text file per line (UTF-8, else latin-1 for that line only); see the module doc."""
    path = check_file(path, what)
    _refuse_binary(path, what)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
        latin1 = np.zeros(0, dtype=np.int64)
        parts = None
    except UnicodeDecodeError:
        # Undecodable bytes become lone surrogates U+DC80..U+DCFF; find their lines vectorised.
        text = data.decode("utf-8", errors="surrogateescape")
        cps = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
        line_of = np.cumsum(cps == 10) - (cps == 10)  # (n_chars,) 0-based line of each character
        latin1 = np.unique(line_of[(cps >= 0xDC80) & (cps <= 0xDCFF)]).astype(np.int64)
        parts = text.split("\n")
        for i in latin1:  # only the bad lines
            parts[i] = parts[i].encode("utf-8", errors="surrogateescape").decode("latin-1")
    if parts is None:
        lines = pc.list_flatten(pc.split_pattern(pa.array([text], pa.large_string()), "\n"))
    else:
        lines = pa.array(parts, pa.large_string())
    if len(lines) and data.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)  # the empty string after the final line end
    lines = pc.utf8_rtrim(lines, "\r")
    blank = pc.match_substring_regex(lines, r"^\s*$").to_numpy(zero_copy_only=False)
    return TextLines(path, lines, blank, latin1)


def join_lines(lines: pa.Array) -> bytes:
    """The lines joined by ``\\n`` (one string built by Arrow, no Python loop)."""
    lines = lines.cast(pa.large_string())
    offsets = pa.array([0, len(lines)], pa.int64())
    joined = pc.binary_join(pa.LargeListArray.from_arrays(offsets, lines), pa.scalar("\n", pa.large_string()))
    return joined[0].as_buffer().to_pybytes() + b"\n"


def read_parquet(path: str | Path, what: str) -> tuple[pa.Table, int]:
    """A Parquet file and its row count from the footer (counted independently of the reader)."""
    import pyarrow.parquet as pq

    path = check_file(path, what)
    kind = sniff(path)
    if kind != "a Parquet file":
        raise LoaderError(
            f"{path}: is {kind if kind != 'text' else 'text'}, expected {what} (Parquet); use a .csv name for CSV files"
        )
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        tail = fh.read(4)
    if tail != b"PAR1":
        raise LoaderError(
            f"{path}: truncated Parquet file (no footer; {path.stat().st_size} bytes), "
            f"expected {what}; copy or export it again"
        )
    try:
        n_rows = pq.ParquetFile(path).metadata.num_rows
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise LoaderError(
            f"{path}: not readable as Parquet ({exc}); the file may be truncated or corrupt, export it again"
        ) from None
    if table.num_rows != n_rows:
        raise LoaderError(f"{path}: footer says {n_rows} rows, {table.num_rows} read; the file is corrupt")
    return table, n_rows


def read_npy(path: str | Path, what: str, kinds: str = "fiu") -> np.ndarray:
    """A ``.npy`` array without pickle; its dtype kind must be one of ``kinds`` (numpy kind codes)."""
    path = check_file(path, what)
    kind = sniff(path)
    if kind != "a .npy array":
        raise LoaderError(f"{path}: is {kind}, expected {what} (.npy written by np.save)")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise LoaderError(
                f"{path}: holds pickled Python objects (dtype object), "
                f"expected {what}; pickles are refused: {_NUMERIC_HINT}"
            ) from None
        raise LoaderError(f"{path}: not a readable .npy ({exc}), expected {what}; the file may be truncated") from None
    except (EOFError, OSError) as exc:
        raise LoaderError(f"{path}: truncated .npy ({exc}), expected {what}; save it again") from None
    if arr.dtype.kind not in kinds:
        raise LoaderError(
            f"{path}: dtype {arr.dtype} ({arr.dtype.kind!r}), expected {what} of kind "
            f"{' / '.join(kinds)}; {_NUMERIC_HINT}"
        )
    return arr


def csv_bytes(lines: TextLines, keep: np.ndarray) -> io.BytesIO:
    """The kept lines (header included) as UTF-8 CSV bytes for pyarrow's reader."""
    return io.BytesIO(join_lines(lines.lines.filter(pa.array(keep))))
