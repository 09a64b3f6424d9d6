"""The environment's Spark CDS archive (built by ``make venv``) is what a fresh driver JVM maps.

In a fresh process (the test session's JVM already runs), as every stage command starts Spark:
the JVM's class-load log must show Spark's classes coming from the archive's top layer, not
from the jars; a stale or mismatched archive would be ignored silently, only slower.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pinsage_model.spark.session import CDS_ENV, cds_archive_path

REPO = Path(__file__).resolve().parents[4]


@pytest.mark.slow
def test_a_fresh_session_maps_the_environments_archive(tmp_path, monkeypatch):
    monkeypatch.delenv(CDS_ENV, raising=False)
    env = dict(os.environ)
    archive = cds_archive_path()  # the default: where make venv puts it
    assert archive.is_file(), f"{archive} is missing: `make venv` builds it (python -m pinsage_model.spark.cds)"
    log = tmp_path / "class-load.log"
    code = (
        "from pinsage_model.config import SparkConfig\n"
        "from pinsage_model.spark.session import get_spark\n"
        f"s = get_spark(SparkConfig(master='local[1]'), extra_java_options='-Xlog:class+load=info:file={log}')\n"
        "print(s.range(5).count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "5"
    # Lambda proxies are spun at run time whatever the archive; count the classes that have a
    # class file: from the archive's top layer, or parsed from a jar.
    loads = [line for line in log.read_text().splitlines() if " org.apache.spark." in line and "$$Lambda" not in line]
    from_archive = [line for line in loads if line.endswith("source: shared objects file (top)")]
    from_jars = [line for line in loads if "source: file:" in line]
    assert any(" org.apache.spark.SparkContext source: shared objects file (top)" in line for line in loads)
    assert len(from_archive) > 1000 and len(from_jars) < 0.05 * len(from_archive), (
        f"{len(from_archive)} Spark classes from the archive, {len(from_jars)} from jars"
    )
