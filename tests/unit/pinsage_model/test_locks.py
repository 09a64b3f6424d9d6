"""Locks between attempts (a second one waits or gives up naming the holder; a killed holder's
lock is free at once) and durable atomic writes (fsync before the publishing rename)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pinsage_model import io as pio
from pinsage_model.locks import LockTimeout, folder_lock, held

HOLD = textwrap.dedent(
    """
    import sys, time
    from pinsage_model.locks import held
    with held(sys.argv[1], "test lock", timeout_s=60):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def hold_in_child(lock: Path, seconds: float) -> subprocess.Popen:
    """A process that takes ``lock`` and keeps it ``seconds``; returns once it holds it."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_second_attempt_waits_for_the_holder_and_says_so(tmp_path, caplog):
    lock = tmp_path / "run.lock"
    child = hold_in_child(lock, 1.0)
    with caplog.at_level(logging.INFO, logger="pinsage"):
        with held(lock, "run directory X", timeout_s=60, progress_s=0.2):
            pass
    assert child.wait(timeout=30) == 0
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for run directory X")]
    assert waiting and f"locked by pid {child.pid} on host " in waiting[0]
    assert not Path(f"{lock}.holder").exists()  # released: no holder named any more


def test_past_the_timeout_the_waiter_gives_up_naming_the_holder(tmp_path):
    lock = tmp_path / "run.lock"
    child = hold_in_child(lock, 30.0)
    try:
        with pytest.raises(LockTimeout, match=rf"run directory X is locked by pid {child.pid} on host \S+ since "):
            with held(lock, "run directory X", timeout_s=0.3, progress_s=0.1):
                pass
        assert isinstance(LockTimeout("x"), OSError)  # a known error: front ends print it as one line
    finally:
        child.kill()
        child.wait()


def test_the_lock_of_a_killed_holder_is_taken_over_at_once(tmp_path):
    lock = tmp_path / "run.lock"
    child = hold_in_child(lock, 60.0)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    t0 = time.monotonic()
    with held(lock, "run directory X", timeout_s=0):  # no wait allowed: the kernel freed it
        assert Path(f"{lock}.holder").read_text().count(f'"pid": {os.getpid()}') == 1
    assert time.monotonic() - t0 < 30


def test_the_lock_is_reentrant_in_one_process_and_lives_beside_the_folder(tmp_path):
    run = tmp_path / "run"
    with folder_lock(run, "run directory", 0):
        with folder_lock(run, "run directory", 0):  # a stage inside the pipeline's hold
            assert (tmp_path / ".run.lock").exists()
    assert not run.exists() or not any(run.iterdir())


def test_an_attempt_whose_temp_folder_another_removed_publishes_nothing(tmp_path):
    """The race of issue 26: attempt 1 writes a.json, attempt 2 removes attempt 1's temp folder as
    stale, attempt 1 writes b.json into a recreated folder; nothing may be published."""
    from components.orchestration.execution import remove_stale_temps

    out = tmp_path / "stage"
    with pytest.raises(OSError, match="removed by another process"):
        with pio.atomic_dir(out) as tmp:
            pio.atomic_write_json(tmp / "a.json", {"a": 1})
            remove_stale_temps(out)
            pio.atomic_write_json(tmp / "b.json", {"b": 2})
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_files_and_folders_are_flushed_before_the_rename_that_publishes_them(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = pio.fsync_path, os.replace
    monkeypatch.setattr(pio, "fsync_path", lambda p: (events.append(("fsync", str(p))), real_fsync(p)))
    monkeypatch.setattr(pio.os, "replace", lambda a, b: (events.append(("rename", str(b))), real_replace(a, b)))
    out = tmp_path / "stage"
    with pio.atomic_dir(out) as tmp:
        (tmp / "raw.bin").write_bytes(b"written by a library, not atomic_path")
        staged = str(tmp)
    publish = events.index(("rename", str(out)))
    flushed_before = {p for kind, p in events[:publish] if kind == "fsync"}
    assert {f"{staged}/raw.bin", staged} <= flushed_before
    assert ("fsync", str(tmp_path)) in events[publish:]  # the rename itself is made durable
    events.clear()
    pio.atomic_write_text(tmp_path / "one.txt", "x")
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "rename", "fsync"] and events[-1] == ("fsync", str(tmp_path))
