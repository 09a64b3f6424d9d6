"""Two ``pinsage run`` on one run directory at once (issue #26): both finish, one says it waited
for the other, and the folder equals a single clean run's, byte for byte (timings aside)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _chaos():
    spec = importlib.util.spec_from_file_location("chaos", Path(__file__).with_name("chaos.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_runs_on_one_run_directory_wait_for_each_other_and_equal_a_clean_run(tmp_path):
    chaos = _chaos()
    config = chaos.prepare_area(tmp_path)
    chaos.clean_run(config, tmp_path / "single")
    reference = chaos.comparable(tmp_path / "single")
    together = chaos.concurrent_runs(config, tmp_path / "run", reference)
    assert together["exit_codes"] == [0, 0]
    assert sorted(together["waited"]) == [False, True]  # exactly one waited
    assert together["differing_files"] == []
    assert len(reference) > 20  # the whole pipeline's outputs were compared
