"""Neighbourhoods benchmark: the in-process numba backend against the Spark backend, same run.

On the bench preset graph (``pinsage_model.data.synthetic.generate_graph("bench", 0)``: 1M items,
200k collections, 10M edges; cached in ``runs/bench_cache`` as ``bench_sampler`` caches it) with
``configs/bench.yaml``'s sampler settings (R = 200, L = 10, p = 0.5, T = 50), it times the
neighbourhoods of every item, as the neighbourhoods stage computes them for the full graph:

* ``numba``: :func:`pinsage_model.graph.sampler.compute_neighbourhoods` on all cores, graph
  memory-mapped as the stage loads it;
* ``spark``: :func:`pinsage_model.spark.sampler.compute_neighbourhoods_spark` on ``local[2]``
  (one task per ~32k-seed range, 32 ranges of 7 or 8 page-aligned units of 4,096 seeds, one
  numba thread per task).

Each is measured two ways, ``--repeats`` times (median reported):

* warm: in this process, after one untimed run (for Spark: the session is up and the first job
  has started the Python workers, which import numba and load the compiled kernel);
* cold: a fresh Python process per run, timed from before the first library call (for Spark:
  before the session starts, so the JVM start-up is counted; the JVM maps the environment's
  class-data-sharing archive, :mod:`pinsage_model.spark.cds`, as every stage command's does,
  and the JSON records whether there was one; with one, each repeat also runs Spark cold
  without it, to show what it saves) to the result in memory. Its parts
  (session start, first job) are reported too, and the process wall time seen from outside.

Each repeat runs cold numba, cold Spark, warm numba, warm Spark back to back, so a change in
what else the shared cores run hits both backends alike. Besides wall seconds it records
CPU seconds: of the process tree (the driver, the JVM, the Python daemon and workers; from
``/proc``, per process, so a process that exited between the readings is missed), which other processes on
the cores disturb much less than wall time. Ratios come from the same run: Spark warm / numba
warm, Spark cold / numba cold, and Spark cold / numba warm (the most pessimistic). Target (issue #16):
Spark ``local[2]`` <= 1.5x the in-process time; reported, not asserted. Every run's output digest
is compared: both backends must give the same bytes. ``--quick`` runs the same code on the demo
preset (5k items). Run it under the shared
lock: ``flock /tmp/pinsage-bench.lock .venv/bin/python -m bench.bench_neighbourhoods_spark``.
Writes ``bench/results/neighbourhoods_spark.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pinsage_model.spark.session import CDS_ENV, cds_java_options

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "neighbourhoods_spark.json"
TARGET_SPARK_VS_IN_PROCESS = 1.5
SPARK = dict(master="local[2]", driver_memory="1g", shuffle_partitions=2, app_name="pinsage-bench-neighbourhoods")


def digest(nb) -> str:
    h = hashlib.sha256(np.ascontiguousarray(nb.indices).tobytes())
    h.update(np.ascontiguousarray(nb.weights).tobytes())
    return h.hexdigest()


def tree_cpu() -> dict[int, float]:
    """CPU seconds (user + system, with reaped children) of this process and each live descendant, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited meanwhile
                continue
            # after the command: state, ppid, ..., utime stime cutime cstime are fields 14-17 of stat
            stats[int(d.name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return {p: stats[p][1] / tick for p in tree if p in stats}


def cpu_since(before: dict[int, float]) -> float:
    """CPU seconds the process tree spent since ``before``; a process that exited meanwhile is missed."""
    return sum(s - before.get(p, 0.0) for p, s in tree_cpu().items())


def sampler_config(preset: str):
    from pinsage_model.config import load_config

    return load_config(REPO / "configs" / ("bench.yaml" if preset == "bench" else "demo.yaml")).sampler


def run_once(backend: str, graph_path: Path, cfg, scratch: Path, spark=None) -> dict:
    """Wall and CPU seconds to compute every item's neighbourhood with ``backend``, and the output's digest."""
    from pinsage_model.graph.csr import CSRGraph
    from pinsage_model.graph.sampler import compute_neighbourhoods
    from pinsage_model.spark.sampler import compute_neighbourhoods_spark

    graph = CSRGraph.load(graph_path)  # memory-mapped, as the stage loads it
    ties = np.zeros(graph.num_items, np.int32)
    c0, t0 = tree_cpu(), time.perf_counter()
    if backend == "numba":
        nb = compute_neighbourhoods(graph, cfg, progress=False, tie_slots=ties)
    else:
        nb = compute_neighbourhoods_spark(spark, graph_path, graph.num_items, cfg, scratch, tie_slots=ties)
    return {"s": time.perf_counter() - t0, "cpu_s": cpu_since(c0), "digest": digest(nb)}


def child(args) -> int:
    """One cold run in this fresh process; prints its timings as one JSON line."""
    from pinsage_model.config import SparkConfig
    from pinsage_model.spark.session import get_spark

    cfg = sampler_config(args.preset)
    with tempfile.TemporaryDirectory(prefix="pinsage-bench-nbhd-", dir=args.scratch_root) as scratch:
        c0, t0 = tree_cpu(), time.perf_counter()
        spark = get_spark(SparkConfig(**SPARK)) if args.child == "spark" else None
        session_s, session_cpu_s = time.perf_counter() - t0, cpu_since(c0)
        job = run_once(args.child, args.graph, cfg, Path(scratch), spark)
    print(
        json.dumps(
            {
                "session_start_s": session_s,
                "job_s": job["s"],
                "total_s": session_s + job["s"],
                "session_start_cpu_s": session_cpu_s,
                "job_cpu_s": job["cpu_s"],
                "total_cpu_s": session_cpu_s + job["cpu_s"],
                "digest": job["digest"],
            }
        )
    )
    return 0


def cold_run(backend: str, args, cds: bool = True) -> dict:
    """One run in a fresh process (:func:`child`), with the process's wall time seen from here.

    ``cds=False`` starts Spark without the CDS archive (``PINSAGE_SPARK_CDS=off``), to show what it saves.
    """
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_neighbourhoods_spark",
        "--child",
        backend,
        "--preset",
        args.preset,
        "--graph",
        str(args.graph),
        "--scratch-root",
        str(args.scratch_root),
    ]
    env = {**os.environ, **({} if cds else {CDS_ENV: "off"})}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout
    run = {**json.loads(out.strip().splitlines()[-1]), "process_wall_s": time.perf_counter() - t0}
    label = backend if cds else f"{backend} without CDS archive"
    print(
        f"  cold {label}: {run['total_s']:.1f} s, {run['total_cpu_s']:.1f} "
        f"CPU s (session {run['session_start_s']:.1f} s, "
        f"job {run['job_s']:.1f} s; process {run['process_wall_s']:.1f} s)",
        flush=True,
    )
    return run


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: demo preset (5k items), 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3, 2 with --quick)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results JSON (default: {RESULTS})")
    parser.add_argument(
        "--scratch-root",
        type=Path,
        default=REPO / "runs" / "bench_cache",
        help="where the Spark backend's shared output files go (default: runs/bench_cache)",
    )
    parser.add_argument("--child", choices=("numba", "spark"), help=argparse.SUPPRESS)
    parser.add_argument("--preset", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--graph", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    import numba

    from bench.bench_sampler import load_graph
    from pinsage_model.config import SparkConfig
    from pinsage_model.io import atomic_write_json
    from pinsage_model.spark.sampler import TASK_ROWS, seed_ranges
    from pinsage_model.spark.session import get_spark

    args.preset = "demo" if args.quick else "bench"
    repeats = args.repeats or (2 if args.quick else 3)
    args.graph = (REPO / "runs" / "bench_cache" / f"{args.preset}_graph_0.npz").resolve()
    args.scratch_root = args.scratch_root.resolve()
    args.scratch_root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    graph, cached = load_graph(args.preset, 0, args.graph)
    print(
        f"graph '{args.preset}': {graph.num_items:,} items, "
        f"{graph.num_collections:,} collections, {graph.num_edges:,} edges "
        f"({'cache' if cached else 'generated'} {args.graph}, {time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    graph_info = {"items": graph.num_items, "collections": graph.num_collections, "edges": graph.num_edges}
    del graph
    cfg = sampler_config(args.preset)
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    spark = get_spark(SparkConfig(**SPARK))
    parent_session_s = time.perf_counter() - t0
    with_archive = cds_java_options() != ""
    cold_no_cds: list[dict] = []
    cold: dict[str, list[dict]] = {"numba": [], "spark": []}
    warm: dict[str, list[dict]] = {"numba": [], "spark": []}
    with tempfile.TemporaryDirectory(prefix="pinsage-bench-nbhd-", dir=args.scratch_root) as scratch:
        first = {b: run_once(b, args.graph, cfg, Path(scratch), spark) for b in ("numba", "spark")}  # untimed warm-up
        for rep in range(repeats):
            print(f"repeat {rep + 1} of {repeats}:", flush=True)
            for b in ("numba", "spark"):
                cold[b].append(cold_run(b, args))
            if with_archive:
                cold_no_cds.append(cold_run("spark", args, cds=False))
            for b in ("numba", "spark"):
                warm[b].append(run_once(b, args.graph, cfg, Path(scratch), spark))
                print(f"  warm {b}: {warm[b][-1]['s']:.1f} s, {warm[b][-1]['cpu_s']:.1f} CPU s", flush=True)
    load_after = os.getloadavg()
    spark.stop()

    digests = {
        r["digest"]
        for runs in (*cold.values(), *warm.values(), cold_no_cds, [first["numba"], first["spark"]])
        for r in runs
    }
    med = {
        (b, kind): (median_of(warm[b], "s"), median_of(warm[b], "cpu_s"))
        if kind == "warm"
        else (median_of(cold[b], "total_s"), median_of(cold[b], "total_cpu_s"))
        for b in ("numba", "spark")
        for kind in ("warm", "cold")
    }
    ratios = {
        "spark_vs_numba_warm": med["spark", "warm"][0] / med["numba", "warm"][0],
        "spark_vs_numba_cold": med["spark", "cold"][0] / med["numba", "cold"][0],
        "spark_cold_vs_numba_warm": med["spark", "cold"][0] / med["numba", "warm"][0],
        "spark_vs_numba_warm_cpu": med["spark", "warm"][1] / med["numba", "warm"][1],
        "spark_vs_numba_cold_cpu": med["spark", "cold"][1] / med["numba", "cold"][1],
    }
    result = {
        "benchmark": "neighbourhoods_spark",
        "preset": args.preset,
        "graph": graph_info,
        "sampler": {
            "num_walks": cfg.num_walks,
            "walk_length": cfg.walk_length,
            "restart_prob": cfg.restart_prob,
            "top_t": cfg.top_t,
            "seed": cfg.seed,
        },
        "spark_cds_archive": with_archive,
        "spark_settings": {
            **SPARK,
            "seeds_per_task_about": TASK_ROWS,
            "tasks": len(seed_ranges(graph_info["items"], 2)),
            "threads_per_task": 1,
        },
        "repeats": repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "python": platform.python_version(),
            "numba": numba.__version__,
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "numba": {
            "warm_s": med["numba", "warm"][0],
            "warm_cpu_s": med["numba", "warm"][1],
            "warm_runs": warm["numba"],
            "cold_s": med["numba", "cold"][0],
            "cold_cpu_s": med["numba", "cold"][1],
            "cold_runs": cold["numba"],
            "untimed_first_run": first["numba"],
        },
        "spark": {
            "warm_job_s": med["spark", "warm"][0],
            "warm_job_cpu_s": med["spark", "warm"][1],
            "warm_runs": warm["spark"],
            "cold_s": med["spark", "cold"][0],
            "cold_cpu_s": med["spark", "cold"][1],
            "cold_session_start_s": median_of(cold["spark"], "session_start_s"),
            "cold_first_job_s": median_of(cold["spark"], "job_s"),
            "cold_runs": cold["spark"],
            "untimed_first_job_on_started_session": first["spark"],
            "parent_session_start_s": parent_session_s,
            **(
                {
                    "cold_without_cds_archive_s": median_of(cold_no_cds, "total_s"),
                    "cold_without_cds_archive_session_start_s": median_of(cold_no_cds, "session_start_s"),
                    "cold_without_cds_archive_first_job_s": median_of(cold_no_cds, "job_s"),
                    "cold_without_cds_archive_runs": cold_no_cds,
                }
                if cold_no_cds
                else {}
            ),
        },
        "ratios": ratios,
        "byte_identical": len(digests) == 1,
        "digests": sorted(digests),
        "target": {
            "spark_vs_in_process": TARGET_SPARK_VS_IN_PROCESS,
            "met_warm": ratios["spark_vs_numba_warm"] <= TARGET_SPARK_VS_IN_PROCESS,
            "met_cold": ratios["spark_vs_numba_cold"] <= TARGET_SPARK_VS_IN_PROCESS,
            "met_cold_vs_warm": ratios["spark_cold_vs_numba_warm"] <= TARGET_SPARK_VS_IN_PROCESS,
        },
    }
    atomic_write_json(args.output, result)
    sp = result["spark"]
    print(
        f"\nneighbourhoods of {graph_info['items']:,} items, "
        f"R={cfg.num_walks} L={cfg.walk_length} p={cfg.restart_prob} "
        f"T={cfg.top_t}, medians of {repeats} (wall s / CPU s):\n"
        f"  numba in process ({numba.config.NUMBA_NUM_THREADS} threads): warm {med['numba', 'warm'][0]:.1f} / "
        f"{med['numba', 'warm'][1]:.1f}, cold {med['numba', 'cold'][0]:.1f} / {med['numba', 'cold'][1]:.1f}\n"
        f"  spark local[2]: warm job {med['spark', 'warm'][0]:.1f} / {med['spark', 'warm'][1]:.1f}, cold "
        f"{med['spark', 'cold'][0]:.1f} / {med['spark', 'cold'][1]:.1f} "
        f"(session start {sp['cold_session_start_s']:.1f} s "
        f"+ first job {sp['cold_first_job_s']:.1f} s)\n"
        + (
            f"  spark local[2] cold without the CDS archive: {sp['cold_without_cds_archive_s']:.1f} s (session start "
            f"{sp['cold_without_cds_archive_session_start_s']:.1f} s + first "
            f"job {sp['cold_without_cds_archive_first_job_s']:.1f} s)\n"
            if cold_no_cds
            else "  (no Spark CDS archive in this environment: make venv builds it)\n"
        )
        + f"  spark / numba wall: warm {ratios['spark_vs_numba_warm']:.2f}x, "
        f"cold {ratios['spark_vs_numba_cold']:.2f}x, "
        f"spark cold / numba warm {ratios['spark_cold_vs_numba_warm']:.2f}x (target <= {TARGET_SPARK_VS_IN_PROCESS}x); "
        f"CPU: warm {ratios['spark_vs_numba_warm_cpu']:.2f}x, cold {ratios['spark_vs_numba_cold_cpu']:.2f}x\n"
        f"  byte-identical outputs over all runs: {result['byte_identical']}\n"
        f"  load average before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} CPUs\n"
        f"wrote {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
