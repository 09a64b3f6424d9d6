"""Shared fixtures for the integration tests: one SparkSession for the whole test session.

Starting Spark costs 7-17 s, so every Spark test shares this session (restarted only after a
test ran Spark with another master). Stage tests put the
``spark_section`` fixture (tests/conftest.py: the ``spark`` config section, as a dict) into
their config so that ``get_spark`` finds and reuses this session (same master).
"""

from __future__ import annotations

import pytest

from pinsage_model.config import SparkConfig


@pytest.fixture(scope="module")
def spark(spark_section):
    """The shared SparkSession (settings: tests/conftest.py ``spark_section``), live at the start
    of each module.

    A stage run with another master (``configs/tiny.yaml``'s ``local[1]``) stops this session and
    starts its own (one JVM holds one SparkContext); ``get_spark`` then restarts this one.
    """
    from pinsage_model.spark.session import get_spark

    return get_spark(SparkConfig(**spark_section))
