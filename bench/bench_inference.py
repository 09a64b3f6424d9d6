"""Inference benchmark: layer-wise (paper 3.4) vs naive per-node Algorithm 2, in process and on Spark.

Measures, on the synthetic ``bench`` preset (1M items; ``--quick``: the ``demo`` preset):

* layer-wise in-process nodes/s (:func:`pinsage_model.inference.layerwise.embed_all`), median of
  ``--repeats`` runs, and the projections it computes per layer (each node exactly once);
* naive per-node Algorithm 2 nodes/s on a sample of target nodes, its projections per node, and
  the speed-up ratio layer-wise / naive;
* the dense part's GFLOP/s (the sgemms of projection, combination and head with their bias,
  ReLU and normalisation epilogues; thread-seconds spread over the worker threads) next to two
  float32 numpy sgemms measured in the same run with numpy's default threads: a square
  2048^3 product (the machine's BLAS peak) and the model's own products over all N rows
  ((N, F_k) x (F_k, m), (N, F_k + m) x (F_k + m, d), (N, d) x (d, d) twice), without epilogues;
* Spark ``local[2]`` nodes/s of :func:`pinsage_model.spark.inference.embed_all_spark` (after a
  warm-up run that starts the Python workers), median of ``--repeats`` runs, its ratio to the
  in-process median, and the max abs difference of the two results.

Neighbourhoods come from the random-walk sampler on the preset's graph (cached in
``runs/bench_cache``); features and weights are random (speed does not depend on their values).
Results: ``bench/results/inference.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
TARGETS = {"dense_vs_sgemm": 0.5, "spark_vs_in_process": 3.0}


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Median float32 numpy matmul rate of an (n, n) x (n, n) product, GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up (thread pool start)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def model_sgemm_gflops(n: int, cfg: dict, repeats: int = 3) -> float:
    """Median rate of plain numpy ``a @ b`` over the model's dense products on n rows, GFLOP/s."""
    m, d = cfg["hidden_dim"], cfg["output_dim"]
    shapes = []
    for k in range(1, cfg["num_layers"] + 1):
        fk = cfg["input_dim"] if k == 1 else d
        shapes += [(fk, m), (fk + m, d)]
    shapes += [(d, d), (d, d)]
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(repeats):
        flops = seconds = 0.0
        for k, cols in shapes:
            a = rng.random((n, k), dtype=np.float32)
            b = rng.random((k, cols), dtype=np.float32)
            a[:1000] @ b
            t0 = time.perf_counter()
            a @ b
            seconds += time.perf_counter() - t0
            flops += 2.0 * n * k * cols
        rates.append(flops / seconds / 1e9)
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    from bench.bench_sampler import load_graph
    from bench.naive_inference import embed_nodes_naive, random_weights
    from pinsage_model.config import SamplerConfig
    from pinsage_model.graph.sampler import compute_neighbourhoods
    from pinsage_model.inference.layerwise import InferenceStats, embed_all

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="demo preset (5k items) instead of bench (1M)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend; medians are reported")
    parser.add_argument("--naive-nodes", type=int, default=None, help="target nodes for the naive baseline")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark measurement")
    parser.add_argument(
        "--spark-scale",
        type=float,
        default=1.0,
        help="run the Spark comparison on the preset scaled by this factor (items, collections, edges); "
        "the in-process time is re-measured on the same scaled graph for the ratio (default 1: the preset itself)",
    )
    parser.add_argument(
        "--spark-strategy",
        default="auto",
        choices=("auto", "shuffle", "broadcast", "gather"),
        help="join strategy of the Spark backend (see pinsage_model.spark.inference)",
    )
    parser.add_argument("--top-t", type=int, default=50, help="neighbourhood size T (paper: 50)")
    parser.add_argument("--output", default=str(RESULTS), help="result JSON path")
    args = parser.parse_args(argv)

    preset = "demo" if args.quick else "bench"
    naive_nodes = args.naive_nodes or (100 if args.quick else 300)
    t0 = time.perf_counter()
    graph, _ = load_graph(preset, 0, Path("runs/bench_cache") / f"{preset}_graph_0.npz")
    sampler_cfg = SamplerConfig(num_walks=50, walk_length=4, top_t=args.top_t, seed=0)
    nbhd = compute_neighbourhoods(graph, sampler_cfg, progress=True)
    setup_s = time.perf_counter() - t0
    n = graph.num_items
    cfg = {"num_layers": 2, "hidden_dim": 128, "output_dim": 64, "pooling": "importance", "input_dim": 32}
    weights = random_weights(cfg, seed=0)
    feats = np.random.default_rng(0).normal(size=(n, cfg["input_dim"])).astype(np.float32)
    print(f"{preset}: {n} items, {graph.num_edges} edges, T={args.top_t}; setup {setup_s:.1f} s", flush=True)
    load_before = os.getloadavg()

    sgemm = sgemm_gflops()
    model_sgemm = model_sgemm_gflops(n, cfg)
    embed_all(weights, cfg, feats[:1000], _head_rows(nbhd, 1000))  # compile the kernels
    runs = []
    for _ in range(args.repeats):
        stats = InferenceStats()
        t0 = time.perf_counter()
        emb = embed_all(weights, cfg, feats, nbhd, progress=True, stats=stats)
        runs.append((time.perf_counter() - t0, stats))
    layerwise_s = statistics.median(s for s, _ in runs)
    dense_gflops = statistics.median(st.dense_gflops for _, st in runs)
    print(
        f"layer-wise: {n / layerwise_s:,.0f} nodes/s; dense {dense_gflops:.1f} GFLOP/s vs sgemm "
        f"{sgemm:.1f} (2048^3) / {model_sgemm:.1f} (model shapes)",
        flush=True,
    )

    targets = np.random.default_rng(1).choice(n, size=min(naive_nodes, n), replace=False)
    t0 = time.perf_counter()
    naive_emb, naive_proj = embed_nodes_naive(weights, cfg, feats, nbhd, targets)
    naive_s = time.perf_counter() - t0
    naive_err = float(np.abs(naive_emb - emb[targets]).max())
    print(
        f"naive Algorithm 2: {len(targets) / naive_s:,.1f} nodes/s, {naive_proj / len(targets):,.0f} projections/node",
        flush=True,
    )

    result = {
        "benchmark": "inference",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "preset": preset,
        "num_items": n,
        "num_edges": int(graph.num_edges),
        "top_t": args.top_t,
        "model": cfg,
        "repeats": args.repeats,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_before": load_before,
        },
        "in_process": {
            "seconds_median": round(layerwise_s, 3),
            "seconds_runs": [round(s, 3) for s, _ in runs],
            "nodes_per_s": round(n / layerwise_s, 1),
            "threads": runs[0][1].threads,
            "projections_per_layer": runs[0][1].projections,
            "dense_thread_seconds_median": round(statistics.median(st.dense_thread_seconds for _, st in runs), 3),
            "pool_thread_seconds_median": round(statistics.median(st.pool_thread_seconds for _, st in runs), 3),
            "dense_gflops_median": round(dense_gflops, 2),
            "dense_gflops_runs": [round(st.dense_gflops, 2) for _, st in runs],
        },
        "numpy_sgemm_2048_gflops": round(sgemm, 2),
        "numpy_sgemm_model_shapes_gflops": round(model_sgemm, 2),
        "dense_vs_sgemm_2048": round(dense_gflops / sgemm, 3),
        "dense_vs_sgemm_model_shapes": round(dense_gflops / model_sgemm, 3),
        "naive_algorithm2": {
            "nodes": len(targets),
            "seconds": round(naive_s, 3),
            "nodes_per_s": round(len(targets) / naive_s, 2),
            "projections_per_node": round(naive_proj / len(targets), 1),
            "max_abs_diff_vs_layerwise": naive_err,
        },
        "speedup_layerwise_vs_naive": round((n / layerwise_s) / (len(targets) / naive_s), 1),
        "projection_ratio_naive_vs_layerwise": round(naive_proj / len(targets) / cfg["num_layers"], 1),
        "targets": TARGETS,
    }
    if not args.no_spark:
        result["spark_local2"] = bench_spark(
            args, preset, cfg, weights, sampler_cfg, graph, nbhd, feats, emb, layerwise_s
        )
    result["machine"]["load_average_after"] = os.getloadavg()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def bench_spark(args, preset, cfg, weights, sampler_cfg, graph, nbhd, feats, emb, layerwise_s) -> dict:
    """Median Spark ``local[2]`` time after a warm-up, against the in-process median on the same graph."""
    from pinsage_model.config import SparkConfig
    from pinsage_model.data import synthetic
    from pinsage_model.graph.sampler import compute_neighbourhoods
    from pinsage_model.inference.layerwise import embed_all
    from pinsage_model.spark.inference import embed_all_spark
    from pinsage_model.spark.session import get_spark

    if args.spark_scale != 1.0:
        p = synthetic.get_preset(preset)
        scaled = dataclasses.replace(
            p,
            num_items=int(p.num_items * args.spark_scale),
            num_collections=int(p.num_collections * args.spark_scale),
            num_edges=int(p.num_edges * args.spark_scale),
            num_topics=max(1, int(p.num_topics * args.spark_scale)),
            size_cap=max(10, int(p.size_cap * args.spark_scale)),
        )
        graph = synthetic.generate_graph(scaled, seed=0)
        nbhd = compute_neighbourhoods(graph, sampler_cfg, progress=True)
        feats = np.random.default_rng(0).normal(size=(graph.num_items, cfg["input_dim"])).astype(np.float32)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            emb = embed_all(weights, cfg, feats, nbhd)
            times.append(time.perf_counter() - t0)
        layerwise_s = statistics.median(times)
    n = graph.num_items
    spark = get_spark(SparkConfig(master="local[2]", shuffle_partitions=8, driver_memory="6g"))
    strategy = args.spark_strategy
    if strategy == "auto":  # the same rule as embed_all_spark's default threshold
        strategy = "gather" if n * cfg["hidden_dim"] * 4 <= 1 << 30 else "shuffle"
    # warm-up: JVM code paths, Python workers and their compiled-kernel cache
    embed_all_spark(spark, weights, cfg, feats[:20000], _head_rows(nbhd, 20000), strategy=strategy)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        spark_emb = embed_all_spark(spark, weights, cfg, feats, nbhd, strategy=strategy)
        times.append(time.perf_counter() - t0)
        print(f"spark local[2]: {times[-1]:.1f} s", flush=True)
    spark_s = statistics.median(times)
    print(
        f"spark local[2] on {n} items: {n / spark_s:,.0f} nodes/s ({spark_s / layerwise_s:.2f}x in-process time)",
        flush=True,
    )
    return {
        "scale": args.spark_scale,
        "strategy": strategy,
        "num_items": n,
        "num_edges": int(graph.num_edges),
        "seconds_median": round(spark_s, 3),
        "seconds_runs": [round(t, 3) for t in times],
        "nodes_per_s": round(n / spark_s, 1),
        "in_process_seconds_median_same_graph": round(layerwise_s, 3),
        "max_abs_diff_vs_in_process": float(np.abs(spark_emb - emb).max()),
        "slowdown_vs_in_process": round(spark_s / layerwise_s, 2),
    }


def _head_rows(nbhd, k: int):
    """The first k rows of a neighbourhood table, with neighbours outside them dropped."""
    from pinsage_model.graph.csr import Neighbourhoods

    idx = np.array(nbhd.indices[:k])
    keep = idx < k
    return Neighbourhoods(
        indices=np.where(keep, idx, -1).astype(np.int32), weights=np.where(keep, nbhd.weights[:k], 0).astype(np.float32)
    )


if __name__ == "__main__":
    sys.exit(main())
