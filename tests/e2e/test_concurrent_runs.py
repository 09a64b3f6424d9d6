"""Two ``pinsage run`` on one run directory at once (issue #26): both finish, one says it waited
for the other, and the folder equals a single clean run's, byte for byte (timings aside). The
clean run runs at the same time, into its own run directory on the same registry and publish root."""

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
    # the clean reference run starts with the pair, on the same registry and publish root: a third
    # attempt at once, in its own run directory
    together = chaos.concurrent_runs(config, tmp_path / "run", tmp_path / "single", with_reference=True)
    assert together["exit_codes"] == [0, 0]
    assert sorted(together["waited"]) == [False, True]  # exactly one waited
    assert together["differing_files"] == []
    assert together["reference_files"] > 20  # the whole pipeline's outputs were compared
