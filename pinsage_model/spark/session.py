"""The SparkSession every Spark stage uses, built from :class:`~pinsage_model.config.SparkConfig`.

Locally this is ``local[N]`` with the venv's interpreter for the Python workers; under
``spark-submit`` on a cluster the submitted master wins, because an already running session is
reused when its master matches (and ``spark-submit`` sets the master before our code runs).
:func:`spark_to_arrow` brings a Spark result to the driver as one Arrow table (through Parquet).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyspark is a heavy import: only for type checkers here
    from collections.abc import Sequence

    from pyspark.sql import DataFrame, SparkSession

    from pinsage_model.config import SparkConfig


# log4j2 for the driver JVM unless PINSAGE_VERBOSE: Spark's banner and WARN lines go to the file
# $PINSAGE_SPARK_LOG (the command's log folder), only errors reach the console.
_QUIET_LOG4J2 = """status = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:pinsage.spark.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
rootLogger.appenderRef.file.ref = file
"""


def _spark_log() -> str:
    """The driver JVM's log file: ``$PINSAGE_SPARK_LOG`` (the command's log folder), else one in the temp folder."""
    import tempfile

    return os.environ.get("PINSAGE_SPARK_LOG") or str(Path(tempfile.gettempdir()) / "pinsage-spark.log")


def _quiet_java_options() -> str:
    """``-D`` options pointing log4j2 at :data:`_QUIET_LOG4J2` (written once per process)."""
    import tempfile

    from pinsage_model.io import atomic_write_text

    log = _spark_log()
    conf = Path(tempfile.gettempdir()) / f"pinsage-log4j2-{os.getpid()}.properties"
    if not conf.exists():
        atomic_write_text(conf, _QUIET_LOG4J2)
    return f"-Dlog4j2.configurationFile=file:{conf} -Dpinsage.spark.log={log}"


CDS_ENV = "PINSAGE_SPARK_CDS"


def cds_archive_path() -> Path | None:
    """The Spark CDS archive (:mod:`pinsage_model.spark.cds`): ``$PINSAGE_SPARK_CDS``, else
    ``<venv>/share/pinsage/spark-cds.jsa``; None when ``PINSAGE_SPARK_CDS=off``."""
    value = os.environ.get(CDS_ENV, "")
    if value.lower() == "off":
        return None
    return Path(value) if value else Path(sys.prefix) / "share" / "pinsage" / "spark-cds.jsa"


def cds_log_option() -> str:
    """CDS messages (e.g. an archive from another JDK, ignored) off the console, to a file beside the Spark log."""
    # filecount=0: one file, no rotated copies
    return f"-Xlog:cds*=off -Xlog:cds*=warning:file={_spark_log()}.cds::filecount=0"


def cds_java_options() -> str:
    """Driver JVM options that map the CDS archive, or ``""`` when there is none (or it is off)."""
    path = cds_archive_path()
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} {cds_log_option()}"


def get_spark(
    spark_cfg: "SparkConfig",
    *,
    extra_java_options: str = "",
    visible: "Sequence[Path]" = (),
    writable: "Sequence[Path]" = (),
) -> "SparkSession":
    """Return a SparkSession configured from ``spark_cfg``.

    An active session is reused when its master equals ``spark_cfg.master`` (its shuffle
    partition count is updated, as that is a runtime setting); a session with another master is
    stopped first, because one JVM holds one SparkContext. A new driver JVM maps the environment's
    class-data-sharing archive when there is one (:func:`cds_java_options`).

    Args:
      spark_cfg: master, app name, driver memory and shuffle partitions.
      extra_java_options: more driver JVM options for a new session (the CDS builder's dump).
      visible, writable: paths the stage's executors read, and folders they write into; on a
        cluster master every executor must see them (:func:`check_executors_see`).

    Returns:
      The session, with log level ``WARN`` and the console progress bar off.
    """
    # Workers otherwise start the system python, which lacks pandas/pyarrow.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        if active.sparkContext.master == spark_cfg.master:
            active.conf.set("spark.sql.shuffle.partitions", str(spark_cfg.shuffle_partitions))
            check_executors_see(active, visible, writable)
            return active
        active.stop()
    quiet = os.environ.get("PINSAGE_VERBOSE", "") in ("", "0")
    java_options = " ".join(o for o in (quiet and _quiet_java_options(), cds_java_options(), extra_java_options) if o)
    builder = SparkSession.builder
    if java_options:
        builder = builder.config("spark.driver.extraJavaOptions", java_options)
    spark = (
        builder.master(spark_cfg.master)
        .appName(spark_cfg.app_name)
        .config("spark.driver.memory", spark_cfg.driver_memory)
        .config("spark.sql.shuffle.partitions", str(spark_cfg.shuffle_partitions))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    check_executors_see(spark, visible, writable)
    return spark


# How long a new cluster session waits for its first executor before checking paths.
_EXECUTOR_WAIT_S = 60.0


def check_executors_see(spark: "SparkSession", visible: "Sequence[Path]" = (), writable: "Sequence[Path]" = ()) -> None:
    """Fail with one line naming the path unless every executor sees the run area as the driver does.

    On a ``local[N]`` master the executors are threads of the driver: nothing to check. On a
    cluster (``spark://``, ``k8s://``, ``yarn``) each executor is a process on its own machine, and
    the stages hand executors paths (Parquet inputs, memory-mapped graphs, shared scratch files):
    a folder that is not on a volume every executor mounts would otherwise surface as a Java
    stack trace, or worse as output an executor wrote to its own disk that the driver never sees.
    A tiny job (two tasks per executor slot, so the scheduler's first round reaches every
    registered executor) checks that each path in ``visible`` exists and each folder in
    ``writable`` exists and is writable, where the task runs.

    Raises:
      FileNotFoundError: naming the first path an executor cannot see, the executor's host and
        what to do.
    """
    import time

    paths = [(str(Path(p).resolve()), False) for p in visible] + [(str(Path(p).resolve()), True) for p in writable]
    sc = spark.sparkContext
    if not paths or str(sc.master).startswith("local"):
        return
    deadline = time.monotonic() + _EXECUTOR_WAIT_S
    while sc._jsc.sc().getExecutorMemoryStatus().size() < 2 and time.monotonic() < deadline:  # driver + 1
        time.sleep(0.2)
    executors = max(1, sc._jsc.sc().getExecutorMemoryStatus().size() - 1)
    tasks = 2 * max(sc.defaultParallelism, executors)

    def missing(_):
        import os
        import socket

        for path, write in paths:
            if not os.path.exists(path):
                yield (socket.gethostname(), path, "does not exist")
            elif write and not os.access(path, os.W_OK):
                yield (socket.gethostname(), path, "is not writable")

    seen = sc.parallelize(range(tasks), tasks).mapPartitions(missing).collect()
    if seen:
        host, path, what = seen[0]
        raise FileNotFoundError(
            f"{path} {what} on a Spark executor (host {host}) of {sc.master}: the run area must be on a volume "
            "every executor mounts at the same path, read-write (README, 'Spark on a cluster')"
        )


def spark_to_arrow(df: "DataFrame", tmp_dir: Path, schema=None):
    """Materialise ``df`` as Parquet under ``tmp_dir`` and read it back with pyarrow.

    The frame never passes through the driver's Python objects row by row; ``tmp_dir`` is
    removed afterwards. An empty result yields an empty table with ``schema``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    df.write.mode("overwrite").parquet(str(tmp_dir.resolve()))
    files = sorted(tmp_dir.glob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    tables = [t for t in tables if t.num_rows]
    shutil.rmtree(tmp_dir, ignore_errors=True)
    if not tables:
        if schema is None:
            raise ValueError("empty Spark result and no schema to give it")
        return schema.empty_table()
    table = pa.concat_tables(tables).replace_schema_metadata(None)
    return table.cast(schema) if schema is not None else table
