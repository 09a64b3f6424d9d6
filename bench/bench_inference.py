"""Inference benchmark: layer-wise (paper 3.4) vs naive per-node Algorithm 2, in process and on Spark.

Measures, on the synthetic ``bench`` preset (1M items; ``--quick``: the ``demo`` preset):

* layer-wise in-process nodes/s (:func:`pinsage_model.inference.embed_all`), and the projections
  it computes per layer (each node exactly once);
* naive per-node Algorithm 2 nodes/s on a sample of target nodes, its projections per node, and
  the speed-up ratio layer-wise / naive;
* the dense part's GFLOP/s (the sgemms of projection, combination and head) next to a float32
  numpy sgemm (2048^3) measured in the same run, and their ratio;
* Spark ``local[2]`` nodes/s of :func:`pinsage_model.inference_spark.embed_all_spark` and its
  ratio to in-process, plus the max abs difference of the two results.

Neighbourhoods come from the random-walk sampler on the preset's graph; features and weights are
random (speed does not depend on their values). Results: ``bench/results/inference.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"


def sgemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` float32 numpy matmul rate, GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up (thread pool start)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    from pinsage_model import synthetic
    from pinsage_model.config import SamplerConfig, SparkConfig
    from pinsage_model.inference import InferenceStats, embed_all, embed_nodes_naive, random_weights
    from pinsage_model.sampler import compute_neighbourhoods

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="demo preset (5k items) instead of bench (1M)")
    parser.add_argument("--naive-nodes", type=int, default=None, help="target nodes for the naive baseline")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark measurement")
    parser.add_argument(
        "--spark-scale", type=float, default=1.0,
        help="run the Spark comparison on the preset scaled by this factor (items, collections, edges); "
        "the in-process time is re-measured on the same scaled graph for the ratio (default 1: the preset itself)",
    )
    parser.add_argument(
        "--spark-strategy", default="auto", choices=("auto", "shuffle", "broadcast", "gather"),
        help="join strategy of the Spark backend (see pinsage_model.inference_spark)",
    )
    parser.add_argument("--top-t", type=int, default=50, help="neighbourhood size T (paper: 50)")
    parser.add_argument("--output", default=str(RESULTS), help="result JSON path")
    args = parser.parse_args(argv)

    preset = "demo" if args.quick else "bench"
    naive_nodes = args.naive_nodes or (100 if args.quick else 300)
    t0 = time.perf_counter()
    graph = synthetic.generate_graph(preset, seed=0)
    sampler_cfg = SamplerConfig(num_walks=50, walk_length=4, top_t=args.top_t, seed=0)
    nbhd = compute_neighbourhoods(graph, sampler_cfg, progress=True)
    setup_s = time.perf_counter() - t0
    n = graph.num_items
    cfg = {"num_layers": 2, "hidden_dim": 128, "output_dim": 64, "pooling": "importance", "input_dim": 32}
    weights = random_weights(cfg, seed=0)
    feats = np.random.default_rng(0).normal(size=(n, cfg["input_dim"])).astype(np.float32)
    print(f"{preset}: {n} items, {graph.num_edges} edges, T={args.top_t}; setup {setup_s:.1f} s", flush=True)

    sgemm = sgemm_gflops()
    embed_all(weights, cfg, feats[:1000], _head_rows(nbhd, 1000))  # compile the pooling kernel
    stats = InferenceStats()
    t0 = time.perf_counter()
    emb = embed_all(weights, cfg, feats, nbhd, progress=True, stats=stats)
    layerwise_s = time.perf_counter() - t0
    dense_gflops = stats.dense_flops / stats.dense_seconds / 1e9
    print(f"layer-wise: {n / layerwise_s:,.0f} nodes/s; dense {dense_gflops:.1f} GFLOP/s vs sgemm {sgemm:.1f}", flush=True)

    targets = np.random.default_rng(1).choice(n, size=min(naive_nodes, n), replace=False)
    t0 = time.perf_counter()
    naive_emb, naive_proj = embed_nodes_naive(weights, cfg, feats, nbhd, targets)
    naive_s = time.perf_counter() - t0
    naive_err = float(np.abs(naive_emb - emb[targets]).max())
    print(f"naive Algorithm 2: {len(targets) / naive_s:,.1f} nodes/s, {naive_proj / len(targets):,.0f} projections/node", flush=True)

    result = {
        "preset": preset,
        "num_items": n,
        "num_edges": int(graph.num_edges),
        "top_t": args.top_t,
        "model": cfg,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "in_process": {
            "seconds": round(layerwise_s, 3),
            "nodes_per_s": round(n / layerwise_s, 1),
            "projections_per_layer": stats.projections,
            "dense_seconds": round(stats.dense_seconds, 3),
            "pool_seconds": round(stats.pool_seconds, 3),
            "dense_gflops": round(dense_gflops, 2),
        },
        "numpy_sgemm_2048_gflops": round(sgemm, 2),
        "dense_vs_sgemm": round(dense_gflops / sgemm, 3),
        "naive_algorithm2": {
            "nodes": len(targets),
            "seconds": round(naive_s, 3),
            "nodes_per_s": round(len(targets) / naive_s, 2),
            "projections_per_node": round(naive_proj / len(targets), 1),
            "max_abs_diff_vs_layerwise": naive_err,
        },
        "speedup_layerwise_vs_naive": round((n / layerwise_s) / (len(targets) / naive_s), 1),
        "projection_ratio_naive_vs_layerwise": round(naive_proj / len(targets) / cfg["num_layers"], 1),
    }
    if not args.no_spark:
        from pinsage_model.inference_spark import embed_all_spark
        from pinsage_model.spark import get_spark

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
            n = graph.num_items
            feats = np.random.default_rng(0).normal(size=(n, cfg["input_dim"])).astype(np.float32)
            t0 = time.perf_counter()
            emb = embed_all(weights, cfg, feats, nbhd)
            layerwise_s = time.perf_counter() - t0
        spark = get_spark(SparkConfig(master="local[2]", shuffle_partitions=8, driver_memory="6g"))
        t0 = time.perf_counter()
        strategy = args.spark_strategy
        if strategy == "auto":  # the same rule as embed_all_spark's default threshold
            strategy = "gather" if n * cfg["hidden_dim"] * 4 <= 1 << 30 else "shuffle"
        spark_emb = embed_all_spark(spark, weights, cfg, feats, nbhd, strategy=strategy)
        spark_s = time.perf_counter() - t0
        result["spark_local2"] = {
            "scale": args.spark_scale,
            "strategy": strategy,
            "num_items": n,
            "num_edges": int(graph.num_edges),
            "seconds": round(spark_s, 3),
            "nodes_per_s": round(n / spark_s, 1),
            "in_process_seconds_same_graph": round(layerwise_s, 3),
            "max_abs_diff_vs_in_process": float(np.abs(spark_emb - emb).max()),
            "slowdown_vs_in_process": round(spark_s / layerwise_s, 2),
        }
        print(f"spark local[2] on {n} items: {n / spark_s:,.0f} nodes/s ({spark_s / layerwise_s:.1f}x in-process time)", flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _head_rows(nbhd, k: int):
    """The first k rows of a neighbourhood table, with neighbours outside them dropped."""
    from pinsage_model.contracts import Neighbourhoods

    idx = np.array(nbhd.indices[:k])
    keep = idx < k
    return Neighbourhoods(indices=np.where(keep, idx, -1).astype(np.int32), weights=np.where(keep, nbhd.weights[:k], 0).astype(np.float32))


if __name__ == "__main__":
    sys.exit(main())
