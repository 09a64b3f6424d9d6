"""Logs a person can read: at the default level the console holds the pipeline's own lines, while
Spark's banner and WARN lines, faiss's AVX loader lines and TensorFlow's native start-up lines go
to the log files; ``--verbose`` brings them back. Each command runs in a fresh process, as a
person runs it; the TensorFlow checks on a pseudo-terminal and on a pipe (CI logs, ``| tee``, a
parent capturing the output), which are filtered, and on a regular file, which is left whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PINSAGE = Path(sys.executable).parent / "pinsage"
NOISE = (
    "Setting default log level",
    "NativeCodeLoader",
    "swigfaiss",
    "Could not load library",
    "oneDNN",
    "cuInit",
    "cuda drivers",
    "absl::InitializeLog",
    "cpu_feature_guard",
    "To enable the following",
)
LIBRARIES = """
import sys
from components.logs import setup_logging
setup_logging(verbose=sys.argv[1] == "1", log_file=sys.argv[2])
import faiss
print(faiss.IndexFlatIP(4).ntotal)
"""


def noisy(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


@pytest.mark.slow
def test_spark_stages_keep_the_console_to_the_pipeline(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["tracking"] = {"enabled": False}
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    log = tmp_path / "logs" / "pinsage.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PINSAGE_VERBOSE", "PINSAGE_SPARK_LOG")}
    proc = subprocess.run(
        [
            str(PINSAGE),
            "--log-file",
            str(log),
            "run",
            "--config",
            str(conf),
            "--run-dir",
            str(tmp_path / "run"),
            "--to",
            "pairs",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert "stage pairs" in console and "run directory:" in console
    assert noisy(console) == [], noisy(console)
    assert [ln for ln in console.splitlines() if " WARN " in ln] == []
    spark_log = log.with_name("spark.log")
    assert spark_log.exists(), "Spark's lines went nowhere"
    assert log.exists()


@pytest.mark.slow
def test_faiss_loader_lines_go_to_the_file_and_verbose_brings_them_back(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PINSAGE_VERBOSE"}
    quiet = subprocess.run(
        [sys.executable, "-c", LIBRARIES, "0", str(tmp_path / "q.log")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout.strip() == "0"
    assert noisy(quiet.stdout + quiet.stderr) == [], noisy(quiet.stderr)
    assert "faiss.loader" in (tmp_path / "q.log").read_text()  # kept, in the file
    loud = subprocess.run(
        [sys.executable, "-c", LIBRARIES, "1", str(tmp_path / "v.log")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert any("faiss.loader" in ln or "Loading faiss" in ln for ln in loud.stderr.splitlines())


TENSORFLOW = """
import sys
from components.logs import setup_logging
setup_logging(verbose=sys.argv[1] == "1", log_file=sys.argv[2])
import tensorflow as tf
print("sum", float(tf.reduce_sum(tf.ones(3))), flush=True)
raise SystemExit("error: the last line, still on the terminal")
"""


def on_terminal(args: list[str], env: dict) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; returns (status, what it showed)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=300), shown.decode("utf-8", "replace")


@pytest.mark.slow
def test_tensorflow_start_up_lines_leave_the_terminal_and_verbose_brings_them_back(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PINSAGE_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    status, shown = on_terminal([sys.executable, "-c", TENSORFLOW, "0", str(tmp_path / "q.log")], env)
    assert status == 1 and "sum 3.0" in shown, shown[-3000:]
    assert "error: the last line, still on the terminal" in shown  # what is not TF's passes through
    assert noisy(shown) == [], noisy(shown)
    kept = (tmp_path / "q.log").read_text()
    assert noisy(kept), "TensorFlow's lines went nowhere"
    status, shown = on_terminal([sys.executable, "-c", TENSORFLOW, "1", str(tmp_path / "v.log")], env)
    assert status == 1 and noisy(shown), shown[-3000:]


ABORT = """
import os, sys
from components.logs import setup_logging
setup_logging(log_file=sys.argv[1])
os.write(2, b"I0000 00:00:1796169759.848841   14748 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"fatal: the last words before an abort\\n")
os.abort()
"""


@pytest.mark.slow
def test_a_pipe_is_filtered_like_a_terminal_and_a_file_is_left_whole(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PINSAGE_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    piped = subprocess.run(
        [sys.executable, "-c", TENSORFLOW, "0", str(tmp_path / "p.log")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # stdout and stderr are pipes
    assert piped.returncode == 1 and "sum 3.0" in piped.stdout, piped.stderr[-3000:]
    assert "error: the last line, still on the terminal" in piped.stderr
    assert noisy(piped.stderr) == [], noisy(piped.stderr)
    assert noisy((tmp_path / "p.log").read_text()), "TensorFlow's lines went nowhere"

    # the filter is a process of its own: a parent that aborts still gets its last line out
    aborted = subprocess.run(
        [sys.executable, "-c", ABORT, str(tmp_path / "a.log")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert aborted.returncode != 0
    assert "fatal: the last words before an abort" in aborted.stderr and noisy(aborted.stderr) == [], aborted.stderr
    assert noisy((tmp_path / "a.log").read_text())

    # stderr redirected to a file is not the console: it keeps every line
    with open(tmp_path / "stderr.txt", "w") as err:
        filed = subprocess.run(
            [sys.executable, "-c", TENSORFLOW, "0", str(tmp_path / "f.log")],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=300,
        )
    assert filed.returncode == 1 and "sum 3.0" in filed.stdout
    text = (tmp_path / "stderr.txt").read_text()
    assert noisy(text) and "error: the last line, still on the terminal" in text, text[-3000:]
