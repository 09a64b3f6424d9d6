"""The quarantine: rows the loaders could not use (with their raw values, reason, file, row and
line), the notes on conversions that kept rows, and each file's ``in = kept + quarantined`` count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pinsage_model.data.contracts import QUARANTINE, quarantine_table


class Quarantine:
    """Collects bad rows, notes and per-file counts."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.counts: dict[str, dict] = {}
        self.notes: dict[str, list[str]] = {}

    def add(
        self,
        source: str,
        rows: np.ndarray,
        reasons: np.ndarray | str,
        columns: pd.DataFrame,
        lines: np.ndarray | None = None,
    ) -> None:
        """Quarantine ``len(rows)`` rows of ``source`` (``columns`` holds their raw values,
        ``lines`` their 1-based physical lines for text files)."""
        if not len(rows):
            return
        df = columns.reset_index(drop=True).astype("string")
        if lines is not None:
            df["line"] = pd.Series(np.asarray(lines, dtype=np.int64)).astype("string")
        df["reason"] = reasons if isinstance(reasons, str) else pd.Series(reasons, dtype="string")
        df["source"] = source
        df["row"] = np.asarray(rows, dtype=np.int64)
        self.frames.append(df)

    def note(self, source: str, notes: list[str] | str) -> None:
        """A conversion or finding about ``source`` that keeps its rows (shown in the report)."""
        self.notes.setdefault(source, []).extend([notes] if isinstance(notes, str) else notes)

    def record(self, source: str, n_in: int, n_kept: int) -> None:
        reasons: dict[str, int] = {}
        for df in self.frames:
            sub = df[df["source"] == source]
            for reason, n in sub["reason"].value_counts(sort=False).items():
                reasons[str(reason)] = reasons.get(str(reason), 0) + int(n)
        n_q = sum(reasons.values())
        if n_in != n_kept + n_q:
            raise RuntimeError(f"{source}: {n_in} rows in != {n_kept} kept + {n_q} quarantined (loader bug)")
        self.counts[source] = {
            "in": n_in,
            "kept": n_kept,
            "quarantined": n_q,
            "reasons": dict(sorted(reasons.items())),
            "notes": self.notes.get(source, []),
        }

    def table(self) -> pa.Table:
        if not self.frames:
            return empty_quarantine()
        df = pd.concat(self.frames, ignore_index=True)
        values = {c: df[c].to_numpy(dtype=object, na_value=None) for c in df.columns}
        data = {c: v for c, v in values.items() if c not in QUARANTINE.required}
        return quarantine_table(data, values["reason"], values["source"], values["row"])


def empty_quarantine() -> pa.Table:
    """A quarantine table with no rows (just ``reason``, ``source``, ``row``)."""
    return quarantine_table({}, [], [], [])
