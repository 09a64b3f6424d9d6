"""Inter-process locks on what several attempts may change at once: a run directory, a publish
root, a registered model.

Built on ``filelock.FileLock`` (``flock`` on POSIX): the kernel drops a lock when the process
holding it dies, so the lock of a killed attempt (``kill -9``, a lost pod) is free at once and no
stale lock file has to be judged or broken by hand. Beside each lock file, ``<lock>.holder``
(JSON: pid, host, since; removed on release) names the process holding it, for the waiting attempt's messages: a
waiter logs one progress line when it starts waiting and one every ``progress_s`` seconds, and
past ``timeout_s`` raises :class:`LockTimeout` naming the holder.

A lock is re-entrant within one process (the local runner holds the run directory's lock for the
whole pipeline while each stage takes it again), never shared with a forked child.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from pinsage_model.io import atomic_write_text

log = logging.getLogger("pinsage")

# How often a waiting attempt says again what it waits for.
PROGRESS_S = 30.0


class LockTimeout(TimeoutError):
    """A lock was still held by another process after the allowed wait; the message names it."""


def holder_of(lock_path: str | Path) -> str:
    """Who holds (or last held) the lock: ``pid P on host H since T``, or ``an unknown process``."""
    try:
        info = json.loads(Path(f"{lock_path}.holder").read_text())
        return f"pid {info['pid']} on host {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "an unknown process"


@contextlib.contextmanager
def held(lock_path: str | Path, what: str, timeout_s: float, progress_s: float = PROGRESS_S) -> Iterator[None]:
    """Hold the lock at ``lock_path`` (created with its folder) for the ``with`` block.

    Args:
      lock_path: the lock file.
      what: what the lock protects, for the messages (``run directory runs/demo``).
      timeout_s: how long to wait for another holder before :class:`LockTimeout` (0: fail at once).
      progress_s: seconds between the waiting attempt's progress lines.
    """
    from filelock import FileLock, Timeout

    path = Path(lock_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One object per path in this process (is_singleton), shared by every thread: re-entrant.
    lock = FileLock(str(path), is_singleton=True, thread_local=False)
    if lock.is_locked:  # this process holds it already
        with lock:
            yield
        return
    t0 = time.monotonic()
    try:
        lock.acquire(blocking=False)
    except Timeout:
        while True:
            waited = time.monotonic() - t0
            if waited >= timeout_s:
                raise LockTimeout(
                    f"{what} is locked by {holder_of(path)} (lock {path}); gave up after {waited:.0f} s: "
                    "wait for that attempt to finish, or stop it"
                ) from None
            log.info("waiting for %s: locked by %s (%.0f s so far)", what, holder_of(path), waited)
            try:
                lock.acquire(timeout=min(progress_s, timeout_s - waited), poll_interval=0.1)
                break
            except Timeout:
                continue
        log.info("%s: lock taken after waiting %.1f s", what, time.monotonic() - t0)
    try:
        since = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        atomic_write_text(f"{path}.holder", json.dumps(holder) + "\n")
        yield
    finally:
        Path(f"{path}.holder").unlink(missing_ok=True)
        lock.release()


def folder_lock(folder: str | Path, what: str, timeout_s: float) -> contextlib.AbstractContextManager[None]:
    """:func:`held` on ``.<name>.lock`` beside ``folder`` (the lock of a run directory or a publish
    root): outside it, so the folder holds only what the pipeline writes."""
    folder = Path(folder).resolve()
    return held(folder.parent / f".{folder.name}.lock", f"{what} {folder}", timeout_s)
