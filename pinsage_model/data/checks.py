"""The row checker: per-row validation of string columns (ids, numbers, ranges, timestamps and
their unit, duplicates); the first failed check of a row is the reason it is quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pinsage_model.config import DataConfig
from pinsage_model.data.quarantine import Quarantine
from pinsage_model.data.reading import Records


@dataclass(frozen=True)
class InputRules:
    """Value rules the loaders apply beyond parsing (from ``data.*`` of the config).

    Attributes:
      now: the run's logical time in Unix seconds; timestamps after ``now +
        future_tolerance_s`` are quarantined. None: no future check.
      future_tolerance_s: how far past ``now`` a timestamp may lie (clock skew, time zones).
      timestamp_unit: unit of integer timestamps: ``auto`` (detected from their magnitude, with a
        note), or ``s`` / ``ms`` / ``us`` / ``ns``.
      allow_leaks: keep test pairs (user, item) that also occur in train (reported); by default
        they are an error.
    """

    now: int | None
    future_tolerance_s: int
    timestamp_unit: str
    allow_leaks: bool

    @classmethod
    def of(cls, data: DataConfig | None = None, now: int | None = None) -> InputRules:
        """The rules of ``data`` (default: the schema's defaults) at logical time ``now``."""
        d = data or DataConfig()
        return cls(now, d.future_tolerance_s, d.timestamp_unit, d.allow_leaks)


_INT_RE = r"\d+"


_INT64_MAX = str(np.iinfo(np.int64).max)


# Integer timestamps whose median reaches these are in finer units than seconds (1e11 s is the
# year 5138; 1e11 ms is 1973): (threshold, unit, divisor).
_TIME_UNITS = ((1e17, "ns", 10**9), (1e14, "us", 10**6), (1e11, "ms", 10**3))


_DIVISOR = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


_UNIT_NAME = {"ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


class RowChecker:
    """Per-row validation of string columns; the first failed check of a row is its reason."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self.reason = np.full(len(df), None, dtype=object)
        self.values: dict[str, pd.Series] = {}

    def fail(self, bad: np.ndarray, why: str) -> None:
        self.reason[np.asarray(bad, dtype=bool) & pd.isna(self.reason)] = why

    def ident(self, col: str, integer: bool = False) -> None:
        v = self.df[col].astype("string").str.strip().reset_index(drop=True)
        null = v.isna() | (v == "")
        self.fail(null.to_numpy(), f"null {col}")
        if integer:
            bad = ~v.str.fullmatch(_INT_RE).fillna(False).astype(bool)
            self.fail((bad & ~null).to_numpy(), f"bad int {col}")
            v = v.str.lstrip("0").where(lambda s: s != "", "0")  # "007" and "7" are the same id
            n = v.str.len().fillna(0).to_numpy()
            big = (n > len(_INT64_MAX)) | ((n == len(_INT64_MAX)) & (v > _INT64_MAX).fillna(False).to_numpy())
            self.fail(big & ~bad.to_numpy() & ~null.to_numpy(), f"{col} beyond int64")
        self.values[col] = v

    def number(self, col: str) -> None:
        s = self.df[col].reset_index(drop=True)
        v = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_numeric_dtype(s) else s.astype("float64")
        v = v.astype("float64")
        self.fail(~np.isfinite(v.to_numpy(dtype=np.float64, na_value=np.nan)), f"bad number {col}")
        self.values[col] = v

    def within(self, col: str, lo: float, hi: float, scale: str) -> None:
        v = self.values[col].to_numpy(dtype=np.float64, na_value=np.nan)
        self.fail((v < lo) | (v > hi), f"{col} outside {lo:g}-{hi:g} ({scale})")

    def timestamp(self, col: str, rules: InputRules, q: Quarantine, source: str, allow_datetime: bool = False) -> None:
        """Parse ``col`` to Unix seconds; unit conversion noted; negative / future rows fail."""
        out, ok, numeric = _parse_times(self.df[col].reset_index(drop=True), col, q, source, allow_datetime)
        self.fail(~ok, f"unparsable {col}")
        unit = _time_unit(out[numeric & ok & (out > 0)], rules, col, q, source)
        if unit != "s":
            out[numeric] = np.floor_divide(out[numeric], _DIVISOR[unit])
        self.fail(ok & (out < 0), f"negative {col}")
        if rules.now is not None:
            limit = rules.now + rules.future_tolerance_s
            self.fail(
                ok & (out > limit), f"{col} in the future (after the run's logical time + data.future_tolerance_s)"
            )
        self.values[col] = pd.Series(out)

    def duplicates(self, cols: list[str], why: str) -> np.ndarray:
        """Fail rows whose ``cols`` values repeat an earlier valid row's; returns that mask."""
        frame = pd.DataFrame({c: self.values[c] for c in cols})
        ok = ~self.bad()
        dup = np.zeros(len(frame), dtype=bool)
        dup[ok] = frame[ok].duplicated(keep="first").to_numpy()
        self.fail(dup, why)
        return dup

    def bad(self) -> np.ndarray:
        return ~pd.isna(self.reason)

    def quarantine(self, q: Quarantine, source: str, read: Records) -> np.ndarray:
        """Quarantine failing rows; returns the boolean mask of kept rows."""
        bad = self.bad()
        q.add(
            source,
            read.rows[bad],
            self.reason[bad],
            self.df.loc[bad],
            read.lines[bad] if read.lines is not None else None,
        )
        return ~bad


def fail_duplicate_ids(chk: RowChecker, df: pd.DataFrame, col: str, what: str) -> None:
    """Repeated ids of an item table: identical copies and copies with other values, first kept."""
    ok = ~chk.bad()
    ids = chk.values[col]
    dup = ids.duplicated(keep="first").to_numpy() & ok
    if not dup.any():
        return
    whole = df.reset_index(drop=True).astype("string").assign(**{col: ids})
    same = np.zeros(len(df), dtype=bool)
    same[ok] = whole[ok].duplicated(keep="first").to_numpy()
    chk.fail(dup & same, f"duplicate {what} (identical row)")
    chk.fail(dup & ~same, f"duplicate {what} with other values (first copy kept)")


def _parse_times(
    s: pd.Series, col: str, q: Quarantine, source: str, allow_datetime: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) int64 values, parsed mask, and the mask of those parsed from a number (the unit
    applies to them), not from a date-time."""
    out = np.zeros(len(s), dtype=np.int64)
    numeric = np.zeros(len(s), dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(s):
        ok = s.notna().to_numpy()
        dt = s[ok]
        if dt.dt.tz is not None:
            dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
        out[ok] = dt.to_numpy(dtype="datetime64[s]").astype(np.int64)
    elif pd.api.types.is_integer_dtype(s):
        ok = s.notna().to_numpy()
        out[ok] = s[ok].astype("int64").to_numpy()
        numeric = ok.copy()
    elif pd.api.types.is_float_dtype(s):
        f = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(f) & (f == np.floor(f)) & (np.abs(f) < 2**63)
        out[ok] = f[ok].astype(np.int64)
        numeric = ok.copy()
        if ok.any():
            q.note(source, f"column '{col}' holds floating-point numbers: whole numbers read as integer timestamps")
    else:
        ok, numeric = _parse_text_times(s.astype("string").str.strip(), out, col, q, source, allow_datetime)
    return out, ok, numeric


def _parse_text_times(
    text: pd.Series, out: np.ndarray, col: str, q: Quarantine, source: str, allow_datetime: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Integers, then (if allowed) ISO 8601 date-times, of string cells into ``out``; returns the
    parsed mask and the mask of integers."""
    is_int = text.str.fullmatch(r"-?\d{1,19}").fillna(False).astype(bool).to_numpy()
    num = pd.to_numeric(text.where(is_int), errors="coerce")
    ok = is_int & num.notna().to_numpy()
    out[ok] = num[ok].astype("int64").to_numpy()
    numeric = ok.copy()
    if allow_datetime and (~ok).any():
        rest = ~ok & text.notna().to_numpy()
        dt = pd.to_datetime(text[rest], errors="coerce", utc=True, format="ISO8601")
        good = dt.notna().to_numpy()
        idx = np.flatnonzero(rest)[good]
        out[idx] = dt[good].astype("int64").to_numpy() // 1_000_000_000
        ok[idx] = True
        if len(idx) and source.endswith(".parquet"):
            q.note(
                source,
                f"column '{col}' holds strings: {len(idx)} parsed as ISO 8601 date-times "
                f"and {int(numeric.sum())} as integers",
            )
    return ok, numeric


def _time_unit(positive_numbers: np.ndarray, rules: InputRules, col: str, q: Quarantine, source: str) -> str:
    """``data.timestamp_unit``, or under ``auto`` the unit the numbers' median points to (noted)."""
    if rules.timestamp_unit != "auto":
        return rules.timestamp_unit
    if len(positive_numbers):
        median = float(np.median(positive_numbers))
        for threshold, name, _ in _TIME_UNITS:
            if median >= threshold:
                q.note(
                    source,
                    f"column '{col}' looks like {_UNIT_NAME[name]} (median {median:.4g}): "
                    f"converted to seconds (set data.timestamp_unit to override)",
                )
                return name
    return "s"
