"""Progress bars that read well both in a terminal and in a log file (Airflow, Kubeflow, CI).

In a terminal the bar redraws in place about once a second. When stderr is not a terminal each
redraw becomes part of the log, so the bar updates at most every ``LOG_INTERVAL_S`` seconds and
uses plain ASCII: a long stage leaves a few readable lines instead of thousands.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

LOG_INTERVAL_S = 30.0


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
) -> Any:
    """A ``tqdm`` bar over ``iterable`` (or a manual one with ``total``), tuned for where it prints."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        disable=disable,
        leave=leave,
        mininterval=1.0 if tty else LOG_INTERVAL_S,
        ascii=not tty,
        dynamic_ncols=tty,
    )
