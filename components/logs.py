"""Logging every command sets up: the console shows the pipeline's own lines, the rest goes to a file.

At the default level the console shows INFO and above from the ``pinsage`` logger and WARNING and
above from everyone else; every line of every logger at INFO and above (faiss's six "could not
load AVX..." lines on each index load, MLflow's database chatter) goes to the log file. Two
sources do not log through Python and are handled at theirs:

* Spark's JVM (its banner and WARN lines): :func:`pinsage_model.spark.session.get_spark` points log4j at
  a configuration that writes them to ``$PINSAGE_SPARK_LOG`` (set here beside the log file);
* TensorFlow's C++ lines: ``TF_CPP_MIN_LOG_LEVEL=3`` before TensorFlow is imported. Its
  absl-logged start-up lines (oneDNN, "Could not find cuda drivers", "failed call to cuInit" on
  a machine without a GPU) ignore that and are written straight to file descriptor 2, so when
  stderr is a console (a terminal, or a pipe or socket read by someone: CI logs, ``| tee``, a
  parent process showing its child's output, journald), descriptor 2 is read through a pipe
  (:func:`_route_native_stderr`) by a small filter process that sends those lines to the log file
  and passes every other line through unchanged. A stderr redirected to a regular file (or
  /dev/null) is left whole: a file is not the console, and a descriptor swapped under the process
  (pytest's capture of an in-process command) must not be held past its swap.

``--verbose`` (``PINSAGE_VERBOSE=1``, inherited by child processes such as the Kubeflow local
components and the Airflow tasks) brings everything back to the console at DEBUG.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

OWN_LOGGER = "pinsage"
VERBOSE_ENV, SPARK_LOG_ENV = "PINSAGE_VERBOSE", "PINSAGE_SPARK_LOG"
DEFAULT_LOG_FILE = "runs/pinsage.log"
FORMAT = "%(asctime)s %(levelname)s %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# absl / glog lines: "I0000 00:00:1796169759.848841   14748 port.cc:153] ..." (before absl is
# initialised the seconds field holds the Unix time), plus the preamble absl prints before it is
# initialised, TensorFlow's CPU-feature notice (two lines) and the JVM's incubator notice.
_NATIVE_LINE = re.compile(
    r"^([IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ cuda_\S+:\d+\] failed call to cuInit"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|WARNING: Using incubator modules: jdk\.incubator)"  # the JVM launcher, before log4j starts
)
_routed = False

# The filter process: its own interpreter, isolated, no site packages, stdlib only. It
# outlives a parent that aborts (a fatal C++ error's last line still reaches the console) and
# ignores Ctrl-C and SIGTERM sent to the process group: it ends when every writer of the pipe
# (the command and the children that inherited its stderr) has closed it.
_FILTER = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
native, out = re.compile(sys.argv[2]), sys.stdout.buffer
with open(sys.argv[1], "ab") as log:
    for line in sys.stdin.buffer:
        dest = log if native.match(line.decode("utf-8", "replace")) else out
        dest.write(line)
        dest.flush()
"""


def _is_console(fd: int = 2) -> bool:
    """Whether descriptor ``fd`` is read as a console: a terminal, a pipe or a socket.

    A regular file, a device such as /dev/null, or a closed descriptor is not.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _route_native_stderr(log_path: Path) -> None:
    """Read file descriptor 2 through a pipe: TensorFlow's native start-up lines go to
    ``log_path``, every other line (Python's tracebacks, other programs' errors) to the console.

    A filter process reads the pipe and writes to the original stderr. At exit descriptor 2 is
    restored and the filter is given up to two seconds to write what is left, so no line written
    before then is lost, nor lines written later by children still holding the pipe.
    """
    global _routed
    if _routed:
        return
    _routed = True
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    try:
        pump = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER, str(log_path), _NATIVE_LINE.pattern],
            stdin=read_end,
            stdout=2,
            stderr=2,
            close_fds=True,
        )
    except OSError:  # no interpreter to start: keep stderr whole
        os.close(read_end)
        os.close(write_end)
        return
    os.close(read_end)
    console = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def drain() -> None:
        sys.stderr.flush()
        os.dup2(console, 2)  # closes our write end: the filter sees EOF once children close theirs
        os.close(console)
        try:
            pump.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass  # a child still holds the pipe: the filter ends when it closes it

    atexit.register(drain)


class _ConsoleFilter(logging.Filter):
    """The pipeline's own INFO lines, and only warnings and errors of the libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OWN_LOGGER or record.name.startswith(OWN_LOGGER + ".")
        return own or record.levelno >= logging.WARNING


def is_verbose() -> bool:
    """Whether this process (or the command that started it) asked for ``--verbose``."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def setup_logging(verbose: bool = False, log_file: str | Path | None = DEFAULT_LOG_FILE) -> Path | None:
    """Configure the root logger once for a command; returns the log file (None without one).

    Args:
      verbose: everything to the console at DEBUG (also exported as ``PINSAGE_VERBOSE=1``).
      log_file: where the lines kept off the console go (its folder is created); None: nowhere.
    """
    verbose = verbose or is_verbose()
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_pinsage", False):
            root.removeHandler(h)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(FORMAT))
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        console.addFilter(_ConsoleFilter())
    handlers: list[logging.Handler] = [console]
    path = None
    if log_file:
        path = Path(log_file).resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = logging.FileHandler(path, encoding="utf-8")
        except OSError:  # a read-only folder: keep the console, lose only the library chatter
            path = None
        else:
            file.setFormatter(logging.Formatter(FILE_FORMAT))
            handlers.append(file)
            os.environ.setdefault(SPARK_LOG_ENV, str(path.with_name("spark.log")))
            if not verbose and _is_console(2):
                _route_native_stderr(path)
    for h in handlers:
        h._pinsage = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return path
