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


def get_spark(spark_cfg: "SparkConfig", *, extra_java_options: str = "") -> "SparkSession":
    """Return a SparkSession configured from ``spark_cfg``.

    An active session is reused when its master equals ``spark_cfg.master`` (its shuffle
    partition count is updated, as that is a runtime setting); a session with another master is
    stopped first, because one JVM holds one SparkContext. A new driver JVM maps the environment's
    class-data-sharing archive when there is one (:func:`cds_java_options`).

    Args:
      spark_cfg: master, app name, driver memory and shuffle partitions.
      extra_java_options: more driver JVM options for a new session (the CDS builder's dump).

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
    return spark


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
