"""``make bench``: run every benchmark in turn; each writes ``bench/results/<name>.json``.

Benchmarks measure, they do not assert: each prints what it measured and how (medians of
several runs, ratios measured in the same run). ``--quick`` gives a smoke run on small inputs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BENCHES = (
    "bench_sampler",
    "bench_neighbourhoods_spark",
    "bench_pairs",
    "bench_training",
    "bench_inference",
    "bench_features",
    "bench_demo",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small inputs, for a smoke run")
    parser.add_argument("--only", nargs="*", choices=BENCHES, help="run only these benchmarks")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or BENCHES:
        cmd = [sys.executable, "-m", f"bench.{name}"] + (["--quick"] if args.quick else [])
        print(f"\n=== {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"=== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
