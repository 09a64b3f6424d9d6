"""Importance neighbourhoods as one Spark job: seed ranges as tasks over a memory-mapped graph.

The plan is the inference ``gather`` plan's (:mod:`pinsage_model.spark.inference`) applied to the
sampler. The driver creates the outputs, (N, T) indices and weights and (N,) tie-slot counts, as
header-less files in ``scratch_dir`` (:class:`~pinsage_model.spark.inference.SharedArray`); the
job is an RDD of seed ranges (:func:`seed_ranges`), one partition (one task) per range. Each task
memory-maps the CSR graph from its ``.npz`` (stored uncompressed by the graph stage, so
:meth:`CSRGraph.load` maps the members in place), runs the in-process kernel
(:func:`pinsage_model.graph.sampler.sample_neighbourhoods`) on its range and writes its rows into the
shared files. Only the ranges and per-task row counts pass through the JVM. An RDD of Python
tuples rather than a DataFrame, because nothing here is a query: a DataFrame job would pay
Catalyst planning, code generation and Arrow conversion for a few dozen integers, which in a
fresh session cost ~4-5 s of a ~30 s job at 1M items on 2 cores (the first SQL job warms up the
planner).

Every row depends only on (graph, item, seed) (:mod:`pinsage_model.graph.sampler`: a counter-based
random stream per walk), so the result is byte-identical to
:func:`~pinsage_model.graph.sampler.compute_neighbourhoods` whatever the ranges, the number of tasks,
the order they ran in or the threads each used, and a retried or speculative task rewrites the
same bytes. The graph file and ``scratch_dir`` must be on a file system every executor mounts
(``scratch_dir`` read-write): any local folder with ``local[N]``, a shared volume on a cluster.
With the default ``unit`` (``GATHER_BLOCK_ROWS``) every range of every output starts on a page
boundary, so no two tasks write into the same page, which network file systems that write back
whole pages need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pinsage_model.config import SamplerConfig
from pinsage_model.graph.csr import Neighbourhoods
from pinsage_model.spark.inference import GATHER_BLOCK_ROWS, SharedArray

# Seeds per task, about: 32k seeds are ~1.3 s of one core at the bench preset's R = 200, L = 10
# (about 24k seeds/s per core), enough to hide a task's start-up (tens of ms) and short enough
# that retrying one costs little.
TASK_ROWS = 8 * GATHER_BLOCK_ROWS


def seed_ranges(
    num_items: int, slots: int, *, unit: int = GATHER_BLOCK_ROWS, task_rows: int = TASK_ROWS
) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` seed ranges covering ``[0, num_items)``, one per task.

    About ``task_rows`` seeds each, the task count rounded up to a multiple of ``slots`` (the
    tasks that run at once) and the ``ceil(num_items / unit)`` units dealt out evenly (range sizes
    differ by at most one unit), so every slot gets the same work and the last wave does not
    leave cores idle: at 1M items on ``local[2]``, 32 ranges of 7 or 8 units instead of 30 full
    ranges and a short one (one core idle for a whole task at the end). Every start is a multiple
    of ``unit``; only the last range is cut at ``num_items``.
    """
    if num_items < 0 or slots < 1 or unit < 1 or task_rows < 1:
        raise ValueError(
            f"need num_items >= 0 and slots, unit, task_rows >= 1; got {num_items}, {slots}, {unit}, {task_rows}"
        )
    units = -(-num_items // unit)
    if units == 0:
        return []
    tasks = -(-units * unit // task_rows)
    tasks = min(units, -(-tasks // slots) * slots)
    bounds = np.minimum(np.arange(tasks + 1, dtype=np.int64) * units // tasks * unit, num_items)
    return [(int(s), int(e)) for s, e in zip(bounds[:-1], bounds[1:])]


def _range_fn(graph_path: str, arrays: dict[str, SharedArray], cfg: SamplerConfig, num_threads: int):
    """The task of the job: per ``(start, stop)`` seed range, sample its rows into the shared files.

    Args:
      graph_path: the graph ``.npz``, memory-mapped by each task.
      arrays: ``indices`` (N, T) int32, ``weights`` (N, T) float32, ``tie_slots`` (N, 1) int32.
      cfg: the sampler settings (R, L, p, T, seed).
      num_threads: numba threads per task (the cores Spark gives a task, ``spark.task.cpus``).

    Returns:
      A function from an iterator of ranges to an iterator of the row counts written.
    """

    def sample_ranges(ranges):
        from pinsage_model.graph.csr import CSRGraph
        from pinsage_model.graph.sampler import sample_neighbourhoods

        if not Path(graph_path).exists():
            raise FileNotFoundError(
                f"neighbourhoods on Spark: the graph {graph_path} is not visible on this executor; put the run "
                "area on a volume every executor mounts, or set sampler.backend: numba"
            )
        try:
            out = {k: a.open("r+") for k, a in arrays.items()}
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"neighbourhoods on Spark: {exc.filename} is not visible on this executor; put the run area on "
                "a volume every executor mounts read-write, or set sampler.backend: numba"
            ) from exc
        graph = CSRGraph.load(graph_path)  # memory-mapped: executors on one host share the page cache
        for s, e in ranges:
            ties = np.empty(e - s, np.int32)  # (B,)
            part = sample_neighbourhoods(
                graph,
                np.arange(s, e, dtype=np.int32),
                num_walks=cfg.num_walks,
                walk_length=cfg.walk_length,
                restart_prob=cfg.restart_prob,
                top_t=cfg.top_t,
                seed=cfg.seed,
                num_threads=num_threads,
                tie_slots=ties,
            )
            out["indices"][s:e] = part.indices  # (B, T)
            out["weights"][s:e] = part.weights  # (B, T)
            out["tie_slots"][s:e, 0] = ties
            yield e - s
        for a in out.values():
            a.flush()

    return sample_ranges


def compute_neighbourhoods_spark(
    spark,
    graph_path: str | Path,
    num_items: int,
    cfg: SamplerConfig,
    scratch_dir: str | Path,
    *,
    tie_slots: np.ndarray | None = None,
    unit: int = GATHER_BLOCK_ROWS,
    task_rows: int = TASK_ROWS,
) -> Neighbourhoods:
    """Neighbourhoods of every item as a Spark job; byte-identical to ``compute_neighbourhoods``.

    Args:
      spark: an active SparkSession (``pinsage_model.spark.session.get_spark(cfg.spark)``).
      graph_path: the graph ``.npz`` (uncompressed, as ``CSRGraph.save`` writes it), at a path
        every executor can read.
      num_items: N, the graph's item count (the driver has loaded the graph to check it).
      cfg: the sampler settings; ``cfg.num_threads`` is the in-process backend's: a task runs
        on the ``spark.task.cpus`` cores Spark gives it.
      scratch_dir: folder for the shared output files, on a file system every executor mounts
        read-write; created if missing, the caller removes it.
      tie_slots: optional (N,) int32 output, filled as by ``compute_neighbourhoods``.
      unit, task_rows: range alignment and approximate seeds per task (:func:`seed_ranges`).

    Returns:
      ``Neighbourhoods`` with (N, T) ``indices`` int32 and ``weights`` float32, memory-mapped
      from the shared files in ``scratch_dir`` (valid until the caller removes it): the driver
      never copies them, so writing them out streams from the files whatever N * T is.
    """
    if tie_slots is not None and (tie_slots.shape != (num_items,) or tie_slots.dtype != np.int32):
        raise ValueError(
            f"tie_slots must be an int32 array of shape ({num_items},), got {tie_slots.dtype} {tie_slots.shape}"
        )
    sc = spark.sparkContext
    threads = int(spark.conf.get("spark.task.cpus", "1"))
    ranges = seed_ranges(num_items, max(1, sc.defaultParallelism // threads), unit=unit, task_rows=task_rows)
    if not ranges:
        return Neighbourhoods(
            indices=np.full((0, cfg.top_t), -1, np.int32), weights=np.zeros((0, cfg.top_t), np.float32)
        )
    scratch = Path(scratch_dir).resolve()  # executors resolve paths from their own working folder
    scratch.mkdir(parents=True, exist_ok=True)
    arrays = {
        "indices": SharedArray.create(scratch / "indices.bin", num_items, cfg.top_t, "int32"),
        "weights": SharedArray.create(scratch / "weights.bin", num_items, cfg.top_t, "float32"),
        "tie_slots": SharedArray.create(scratch / "tie_slots.bin", num_items, 1, "int32"),
    }
    fn = _range_fn(str(Path(graph_path).resolve()), arrays, cfg, threads)
    done = sc.parallelize(ranges, len(ranges)).mapPartitions(fn).sum()
    if done != num_items:
        raise RuntimeError(f"the neighbourhood job wrote {done} rows, expected {num_items}")
    if tie_slots is not None:
        tie_slots[:] = arrays["tie_slots"].open()[:, 0]
    return Neighbourhoods(indices=arrays["indices"].open(), weights=arrays["weights"].open())
