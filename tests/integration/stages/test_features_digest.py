"""The features stage's output bytes on the tiny preset are pinned by a committed digest.

``tests/assets/tiny/`` holds the tiny preset's ``raw/items.parquet``, ``graph/item_ids.parquet``
and ``graph/graph.npz`` (``pinsage run --config configs/tiny.yaml --to graph``, 2026-12-02), so the
check depends on the features stage alone, not on the stages that made its inputs. The digest was
taken from ``features.npy`` as the stage wrote it before the analysis moved to TFXIO record
batches and a multi-worker runner: any change to how the analysis is fed or run must leave the
matrix byte-identical.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from components.orchestration.execution import execute
from components.stages import StageContext, get_stage
from pinsage_model.config import load_config

pytestmark = pytest.mark.slow

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "tiny"
# sha256 of features.npy for the tiny preset (configs/tiny.yaml's features section)
TINY_FEATURES_SHA256 = "0abe27d4871be41494c406ba5f050d28764dcef96d90d64929269ad09c3ffb6a"


def _features_digest(tmp_path, overrides: dict | None = None) -> str:
    raw, graph = tmp_path / "raw", tmp_path / "graph"
    raw.mkdir()
    graph.mkdir()
    shutil.copy(ASSETS / "items.parquet", raw / "items.parquet")
    shutil.copy(ASSETS / "item_ids.parquet", graph / "item_ids.parquet")
    shutil.copy(ASSETS / "graph.npz", graph / "graph.npz")
    cfg = load_config("configs/tiny.yaml", overrides)
    ctx = StageContext.create(tmp_path, "test", "2026-01-12T00:00:00Z")
    execute(get_stage("features"), cfg, {"raw": raw, "graph": graph}, tmp_path / "features", ctx)
    return hashlib.sha256((tmp_path / "features" / "features.npy").read_bytes()).hexdigest()


def test_tiny_features_match_the_committed_digest(tmp_path):
    assert _features_digest(tmp_path) == TINY_FEATURES_SHA256


@pytest.mark.parametrize("mode", ["multi_threading", "multi_processing"])
def test_tiny_features_do_not_depend_on_workers_or_batches(tmp_path, mode):
    # 300 items in 7 record batches of 45 rows on a 2-worker runner: the partial sums are cut and
    # combined differently, and the matrix keeps its bytes
    overrides = {"features": {"direct_running_mode": mode, "direct_num_workers": 2, "batch_rows": 45}}
    assert _features_digest(tmp_path, overrides) == TINY_FEATURES_SHA256
