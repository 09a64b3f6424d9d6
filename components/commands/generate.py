"""``pinsage generate``: write the synthetic data set of a preset and print its degree statistics.

Writes ``interactions.parquet`` and ``items.parquet`` (the ``raw`` stage's contract) into
``--out``; with ``--graph-only`` it writes just ``graph.npz`` (the CSR graph, for sampler
benchmarks). The same preset and seed always give byte-identical files. The recipe is documented
in :mod:`pinsage_model.data.synthetic`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pinsage_model.data.synthetic import PRESETS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "presets:\n" + "\n".join(
        f"  {name:<6} {p.num_items:>9,} items  {p.num_collections:>8,} collections  "
        f"{p.num_edges:>11,} interactions (distinct item-collection edges)"
        for name, p in PRESETS.items()
    )
    parser.add_argument("--preset", choices=tuple(PRESETS), default="demo", help="data set size (default: demo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files (default: 0)")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument(
        "--graph-only", action="store_true", help="write only graph.npz (CSR item-collection graph), no tables"
    )


def main(args: argparse.Namespace) -> int:
    from pinsage_model.data import synthetic

    out = Path(args.out)
    t0 = time.perf_counter()
    if args.graph_only:
        graph = synthetic.generate_graph(args.preset, args.seed, progress=True)
        graph.save(out / "graph.npz")
        written = [out / "graph.npz"]
    else:
        data = synthetic.generate(args.preset, args.seed, progress=True)
        written = list(synthetic.write(data, out).values())
        graph = synthetic.graph_of(data)
    stats = synthetic.degree_stats(graph)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    # ru_maxrss is in KiB on Linux.
    stats["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    print(json.dumps({"preset": args.preset, "seed": args.seed, **stats}, indent=2))
    return 0
