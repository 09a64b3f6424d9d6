"""Fixtures every tier shares."""

from __future__ import annotations

import pytest

from components.stages import StageContext

# A fixed logical time, so manifests written by stages under test are reproducible.
LOGICAL_TIME = "2026-01-12T00:00:00Z"


@pytest.fixture
def stage_ctx(tmp_path) -> StageContext:
    """The context of run ``test`` in ``tmp_path`` (scratch ``tmp_path/test/checkpoints``)."""
    return StageContext.create(tmp_path, "test", LOGICAL_TIME)
