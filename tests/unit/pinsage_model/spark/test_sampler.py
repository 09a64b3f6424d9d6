"""The Spark neighbourhood plan without Spark: the seed ranges it deals out, the rows a task writes.

Spark only hands each task an iterator of ``(start, stop)`` seed ranges, so calling the task
function on such ranges here is what an executor does; the job itself runs in
``tests/integration/pinsage_model/spark/test_sampler.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from pinsage_model.config import ConfigError, SamplerConfig, load_config
from pinsage_model.graph.csr import CSRGraph
from pinsage_model.graph.sampler import sample_neighbourhoods
from pinsage_model.spark.inference import SharedArray
from pinsage_model.spark.sampler import _range_fn, seed_ranges

# Collections {0, 1} and {1, 2}; item 3 alone in {3}; item 4 in no collection.
GRAPH = CSRGraph.from_edges(np.array([0, 1, 1, 2, 3]), np.array([0, 0, 1, 1, 2]), 5, 3).validate()
# One hop per walk: from item 0 (or 2) the only other reachable item is 1; from 1 both 0 and 2.
CFG = SamplerConfig(num_walks=40, walk_length=1, restart_prob=0.0, top_t=2, seed=5)


def shared(tmp_path, rows: int = 5, top_t: int = 2) -> dict[str, SharedArray]:
    return {
        "indices": SharedArray.create(tmp_path / "indices.bin", rows, top_t, "int32"),
        "weights": SharedArray.create(tmp_path / "weights.bin", rows, top_t, "float32"),
        "tie_slots": SharedArray.create(tmp_path / "tie_slots.bin", rows, 1, "int32"),
    }


def run_task(fn, ranges: list[tuple[int, int]]) -> list[int]:
    return list(fn(iter(ranges)))


def test_ranges_cover_the_items_in_even_aligned_pieces():
    # 1M items in units of 4,096 (245 units, the last cut): ~32k seeds a task gives 31 tasks,
    # rounded up to 32 for 2 slots; 245 units over 32 tasks is 21 of 8 units and 11 of 7.
    ranges = seed_ranges(1_000_000, 2)
    assert len(ranges) == 32 and ranges[0] == (0, 28672) and ranges[-1] == (970752, 1_000_000)
    assert all(e == s2 for (_, e), (s2, _) in zip(ranges, ranges[1:]))  # contiguous, in order
    assert all(s % 4096 == 0 for s, _ in ranges)  # page-aligned starts
    units = [-(-(e - s) // 4096) for s, e in ranges]  # the last range's 8th unit is the cut one
    assert units.count(8) == 21 and units.count(7) == 11
    # Hand-computed small cases: 5 items in units of 2 (3 units) with 2 per task: 3 tasks, not 4.
    assert seed_ranges(5, 2, unit=2, task_rows=2) == [(0, 2), (2, 4), (4, 5)]
    assert seed_ranges(10, 4, unit=1, task_rows=5) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert seed_ranges(3, 8, unit=1, task_rows=100) == [(0, 1), (1, 2), (2, 3)]  # never more tasks than units
    assert seed_ranges(0, 2) == []
    with pytest.raises(ValueError, match="slots"):
        seed_ranges(10, 0)


def test_task_writes_exactly_its_ranges_rows(tmp_path):
    GRAPH.save(tmp_path / "graph.npz")
    arrays = shared(tmp_path)
    fn = _range_fn(str(tmp_path / "graph.npz"), arrays, CFG, 1)
    out = run_task(fn, [(2, 4), (0, 2)])  # rows 2-3, then rows 0-1; row 4 belongs to another task
    assert out == [2, 2]  # rows written per range
    idx, w = arrays["indices"].open(), arrays["weights"].open()
    # Hand-computed rows: item 0 and item 2 reach only item 1, item 3 only itself (excluded).
    np.testing.assert_array_equal(idx[[0, 2, 3]], [[1, -1], [1, -1], [-1, -1]])
    np.testing.assert_array_equal(w[[0, 2, 3]], [[1, 0], [1, 0], [0, 0]])
    assert sorted(idx[1].tolist()) == [0, 2] and w[1].sum() == pytest.approx(1.0)
    # Not yet run: the untouched row is still the zero-filled file.
    assert idx[4].tolist() == [0, 0] and w[4].tolist() == [0, 0]
    run_task(fn, [(4, 5)])  # the last, short range
    ties = np.empty(5, np.int32)
    want = sample_neighbourhoods(
        GRAPH, np.arange(5), num_walks=40, walk_length=1, restart_prob=0.0, top_t=2, seed=5, tie_slots=ties
    )
    idx, w = arrays["indices"].open(), arrays["weights"].open()
    assert idx.tobytes() == want.indices.tobytes() and w.tobytes() == want.weights.tobytes()
    np.testing.assert_array_equal(arrays["tie_slots"].open()[:, 0], ties)
    assert idx[4].tolist() == [-1, -1]  # degree 0: fully padded


def test_task_rerun_rewrites_the_same_bytes(tmp_path):
    """A retried or speculative task (any thread count) leaves the files as one run does."""
    GRAPH.save(tmp_path / "graph.npz")
    arrays = shared(tmp_path)
    run_task(_range_fn(str(tmp_path / "graph.npz"), arrays, CFG, 1), [(0, 3), (3, 5)])
    first = arrays["indices"].open().tobytes() + arrays["weights"].open().tobytes()
    run_task(_range_fn(str(tmp_path / "graph.npz"), arrays, CFG, 2), [(2, 5), (0, 2)])
    assert arrays["indices"].open().tobytes() + arrays["weights"].open().tobytes() == first


def test_task_names_an_invisible_graph(tmp_path):
    fn = _range_fn(str(tmp_path / "elsewhere" / "graph.npz"), shared(tmp_path), CFG, 1)
    with pytest.raises(FileNotFoundError, match="not visible on this executor.*sampler.backend: numba"):
        run_task(fn, [(0, 2)])


def test_backend_is_a_checked_choice(tmp_path):
    assert SamplerConfig().backend == "numba"
    assert load_config("configs/demo.yaml").sampler.backend == "numba"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampler:\n  backend: spark\n")
    assert load_config(cfg).sampler.backend == "spark"
    cfg.write_text("sampler:\n  backend: dask\n")
    with pytest.raises(ConfigError, match="sampler.backend.*'numba', 'spark'"):
        load_config(cfg)
