"""Starting the real services integration tests talk to (MLflow tracking and scoring servers,
Airflow): a free port, a process group the test owns, a bounded wait until it answers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_env(**extra: str) -> dict[str, str]:
    """The environment with the venv's ``bin/`` first on ``PATH`` (servers exec ``uvicorn``,
    ``gunicorn`` from there, as in an activated venv), MLflow's progress bars off, and ``extra``."""
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def service(
    cmd: list[str], env: dict[str, str], log: Path, url: str, timeout_s: float, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` in its own process group, wait until ``url`` answers 200, stop the group on exit.

    A server that exits, or does not answer within ``timeout_s``, fails the test with its log: a
    missing service is a failure, never a skip.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(url, proc, log, timeout_s)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group this test started (the server and its workers), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    # workers outlive a leader that exited first: the group is still this test's to end
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"{' '.join(map(str, proc.args[:3]))} exited with {proc.returncode} "
                f"before answering {url}:\n{log.read_text()[-4000:]}"
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s} s:\n{log.read_text()[-4000:]}")
