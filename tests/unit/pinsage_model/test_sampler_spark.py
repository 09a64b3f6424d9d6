"""The Spark neighbourhood plan's task, without Spark: the rows a task writes for its seed blocks.

Spark only hands each task Arrow batches of block numbers, so calling the task function on such
batches here is what an executor does; the job itself runs in
``tests/integration/pinsage_model/test_sampler_spark.py``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pinsage_model.config import ConfigError, SamplerConfig, load_config
from pinsage_model.contracts import CSRGraph
from pinsage_model.inference_spark import SharedArray
from pinsage_model.sampler import sample_neighbourhoods
from pinsage_model.sampler_spark import _block_fn

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


def run_task(fn, blocks: list[list[int]]) -> list[pa.RecordBatch]:
    batches = [pa.RecordBatch.from_arrays([pa.array(b, pa.int64())], names=["block"]) for b in blocks]
    return list(fn(iter(batches)))


def test_task_writes_exactly_its_blocks_rows(tmp_path):
    GRAPH.save(tmp_path / "graph.npz")
    arrays = shared(tmp_path)
    fn = _block_fn(str(tmp_path / "graph.npz"), arrays, 5, 2, CFG, 1)
    out = run_task(fn, [[1], [0]])  # rows 2-3, then rows 0-1; block 2 (row 4) belongs to another task
    assert [b.column("block").to_pylist() for b in out] == [[1], [0]]  # batches pass through
    idx, w = arrays["indices"].open(), arrays["weights"].open()
    # Hand-computed rows: item 0 and item 2 reach only item 1, item 3 only itself (excluded).
    np.testing.assert_array_equal(idx[[0, 2, 3]], [[1, -1], [1, -1], [-1, -1]])
    np.testing.assert_array_equal(w[[0, 2, 3]], [[1, 0], [1, 0], [0, 0]])
    assert sorted(idx[1].tolist()) == [0, 2] and w[1].sum() == pytest.approx(1.0)
    # Not yet run: the untouched row is still the zero-filled file.
    assert idx[4].tolist() == [0, 0] and w[4].tolist() == [0, 0]
    run_task(fn, [[2]])  # the last, short block
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
    run_task(_block_fn(str(tmp_path / "graph.npz"), arrays, 5, 3, CFG, 1), [[0, 1]])
    first = arrays["indices"].open().tobytes() + arrays["weights"].open().tobytes()
    run_task(_block_fn(str(tmp_path / "graph.npz"), arrays, 5, 3, CFG, 2), [[1], [0]])
    assert arrays["indices"].open().tobytes() + arrays["weights"].open().tobytes() == first


def test_task_names_an_invisible_graph(tmp_path):
    fn = _block_fn(str(tmp_path / "elsewhere" / "graph.npz"), shared(tmp_path), 5, 2, CFG, 1)
    with pytest.raises(FileNotFoundError, match="not visible on this executor.*sampler.backend: numba"):
        run_task(fn, [[0]])


def test_backend_is_a_checked_choice(tmp_path):
    assert SamplerConfig().backend == "numba"
    assert load_config("configs/demo.yaml").sampler.backend == "numba"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampler:\n  backend: spark\n")
    assert load_config(cfg).sampler.backend == "spark"
    cfg.write_text("sampler:\n  backend: dask\n")
    with pytest.raises(ConfigError, match="sampler.backend.*'numba', 'spark'"):
        load_config(cfg)
