"""Which driver JVM options the class-data-sharing archive adds (pinsage_model/spark/session.py, spark_cds.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from pinsage_model.spark import session as spark


def test_default_archive_is_in_the_environment(monkeypatch):
    monkeypatch.delenv(spark.CDS_ENV, raising=False)
    assert spark.cds_archive_path() == Path(sys.prefix) / "share" / "pinsage" / "spark-cds.jsa"


def test_options_map_an_existing_archive_only(monkeypatch, tmp_path):
    archive = tmp_path / "a.jsa"
    monkeypatch.setenv(spark.CDS_ENV, str(archive))
    monkeypatch.setenv("PINSAGE_SPARK_LOG", str(tmp_path / "spark.log"))
    assert spark.cds_java_options() == ""  # not built: the JVM starts as it would without
    archive.write_bytes(b"x")
    opts = spark.cds_java_options().split()
    assert opts[0] == f"-XX:SharedArchiveFile={archive}"
    # CDS warnings (an archive from another JDK or class path) go to a file, never the console.
    assert opts[1:] == ["-Xlog:cds*=off", f"-Xlog:cds*=warning:file={tmp_path / 'spark.log'}.cds::filecount=0"]
    monkeypatch.setenv(spark.CDS_ENV, "off")
    assert spark.cds_archive_path() is None and spark.cds_java_options() == ""
