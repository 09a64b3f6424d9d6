"""Shared fixtures for the integration tests: one SparkSession for the whole test session.

Starting Spark costs 7-17 s, so every Spark test shares this session (restarted only after a
test ran Spark with another master). Stage tests put the
``spark_section`` fixture (the ``spark`` config section of :data:`SPARK_TEST` as a dict) into
their config so that ``get_spark`` finds and reuses this session (same master).
"""

from __future__ import annotations

import pytest

from pinsage_model.config import SparkConfig, config_to_dict

SPARK_TEST = SparkConfig(master="local[2]", driver_memory="1g", shuffle_partitions=4, app_name="pinsage-tests")


@pytest.fixture(scope="session")
def spark_section() -> dict:
    """The ``spark`` config section matching the shared session, as a plain dict."""
    return config_to_dict(SPARK_TEST)


@pytest.fixture(scope="module")
def spark():
    """The shared SparkSession, live at the start of each module.

    A stage run with another master (``configs/tiny.yaml``'s ``local[1]``) stops this session and
    starts its own (one JVM holds one SparkContext); ``get_spark`` then restarts this one.
    """
    from pinsage_model.spark.session import get_spark

    return get_spark(SPARK_TEST)
