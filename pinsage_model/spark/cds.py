"""A class-data-sharing (AppCDS) archive of the Spark driver's classes, so fresh JVMs start faster.

Every Spark stage that runs in its own process (an Airflow task, a Kubeflow component, a stage
command) starts a driver JVM, which loads and verifies some 10k Spark, Scala and Hadoop classes
before the first job. A dynamic CDS archive (JDK 13+, ``-XX:ArchiveClassesAtExit``) stores those
classes parsed and verified; a JVM started with ``-XX:SharedArchiveFile`` maps them instead. On
2 cores this halved the session start (7.0 s to 3.7 s) and the first SQL job (3.9 s to 1.8 s).

``make venv`` (and the Docker image) build the archive once per environment with
``python -m pinsage_model.spark.cds``, which runs a small representative session (SQL with a
shuffle, Parquet, Arrow and RDD Python jobs) under ``-XX:ArchiveClassesAtExit`` and moves the
finished archive into place; :func:`pinsage_model.spark.session.get_spark` maps it when the file exists
(:func:`pinsage_model.spark.session.cds_java_options`). The JVM checks that the archive was dumped by the
same JDK with the same class path and otherwise runs without it (slower, never wrong); its CDS
log lines go to a file, not the console. ``PINSAGE_SPARK_CDS`` overrides the archive's path, or
turns it off with ``off``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from pinsage_model.spark.session import CDS_ENV, cds_archive_path, cds_log_option, get_spark


def _representative_jobs(spark, scratch: Path) -> None:
    """Touch the code paths the stages use, so their classes land in the archive."""
    from pyspark.sql import functions as F

    df = spark.range(0, 20_000, numPartitions=4).withColumn("k", F.col("id") % 97)
    agg = df.groupBy("k").agg(F.count("*").alias("n"), F.sum("id").alias("s"))
    agg.write.mode("overwrite").parquet(str(scratch / "agg.parquet"))
    back = spark.read.parquet(str(scratch / "agg.parquet"))
    back.join(df, "k").orderBy("id").limit(10).collect()

    def identity(batches):
        yield from batches

    back.mapInArrow(identity, back.schema).count()
    spark.sparkContext.parallelize(range(8), 4).mapPartitions(lambda it: [sum(it)]).sum()


def build(path: Path, timeout_s: float = 600.0) -> Path:
    """Dump the archive to ``path`` (atomically) from a representative Spark session in this process.

    Must run in a process that has not started Spark (one JVM holds one SparkContext, and the
    archive is written when that JVM exits).

    Raises:
      RuntimeError: the JVM exited without writing the archive (e.g. a JDK older than 13).
    """
    from pyspark import SparkContext

    from pinsage_model.config import SparkConfig

    if SparkContext._active_spark_context is not None:
        raise RuntimeError("build the CDS archive in a fresh process: this one has already started Spark")
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.environ[CDS_ENV] = "off"  # dump from the JDK's base archive, never layered on an older copy
    dump = f"-XX:ArchiveClassesAtExit={tmp} {cds_log_option()}"
    with tempfile.TemporaryDirectory(prefix="pinsage-cds-") as scratch:
        spark = get_spark(SparkConfig(app_name="pinsage-cds"), extra_java_options=dump)
        gateway = spark.sparkContext._gateway
        if gateway is None:
            raise RuntimeError("Spark started without a JVM gateway in this process")
        proc = gateway.proc  # the driver JVM (spark-submit execs java)
        _representative_jobs(spark, Path(scratch))
        spark.stop()
        # The JVM exits (and dumps the archive) when its stdin closes: pyspark's gateway contract.
        proc.stdin.close()
        proc.wait(timeout=timeout_s)
    if not tmp.is_file() or tmp.stat().st_size == 0:
        raise RuntimeError(
            f"the JVM exited without writing a CDS archive to {tmp}; Spark runs without one (slower start)"
        )
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = cds_archive_path()
    parser.add_argument(
        "--output",
        type=Path,
        default=default,
        help=f"archive to write (default: {default}, from ${CDS_ENV} or the environment's prefix)",
    )
    args = parser.parse_args(argv)
    if args.output is None:
        print(f"{CDS_ENV}=off: no CDS archive to build")
        return 0
    t0 = time.perf_counter()
    try:
        out = build(args.output)
    except RuntimeError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return 1
    print(f"Spark CDS archive: {out} ({out.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
