"""Pairs and graph stages benchmark: wall time and peak memory on real and synthetic data.

Data sets: MovieLens ``ml-latest-small`` (100k ratings; ``../shared/data/ml-latest-small`` or
``--movielens PATH``) and the synthetic ``bench`` preset (10M interactions, 1M items; ``--quick``
uses the ``demo`` preset instead). For each, the raw stage is run first (not timed here), then
each of the "pairs" and "graph" stages runs as its own command
(``python -m components.stages.<stage> --force``, a fresh Spark JVM each, as a scheduler would run it)
while the whole process tree (Python driver + JVM) is sampled every 0.2 s:

* ``wall_s``: the command's wall time, JVM start included;
* ``peak_rss_mb``: peak of the summed resident memory of the process tree;
* rows in/out and throughput (interactions per second) from the stage report.

Results: ``bench/results/pairs.json``. Spark runs ``local[2]``, driver memory 6g.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pairs.json"
DEFAULT_MOVIELENS = ROOT.parent / "shared" / "data" / "ml-latest-small"


def run_measured(cmd: list[str], interval: float = 0.2) -> tuple[float, float, int]:
    """Run ``cmd``; return (wall seconds, peak process-tree RSS in MB, exit code)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak = max(peak, rss)
        except psutil.NoSuchProcess:
            pass
        time.sleep(interval)
    wall = time.perf_counter() - t0
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode:
        print(stderr[-4000:], file=sys.stderr)
    return wall, peak / 2**20, proc.returncode


def bench_dataset(name: str, data: dict, work: Path) -> dict:
    """Ingest ``data`` once, then time the pairs and graph stages on it."""
    from components.orchestration.execution import execute, start_time
    from components.stages import StageContext, get_stage
    from pinsage_model.config import config_from_dict

    raw_cfg = {
        "name": f"bench-{name}",
        "data": data,
        "spark": {"master": "local[2]", "driver_memory": "6g", "shuffle_partitions": 8},
    }
    conf = work / f"{name}.yaml"
    conf.write_text(yaml.safe_dump(raw_cfg))
    run_dir = work / name
    t0 = time.perf_counter()
    execute(
        get_stage("raw"),
        config_from_dict(raw_cfg),
        {},
        run_dir / "raw",
        StageContext.for_run_dir(run_dir, start_time()),
    )
    out = {"ingest_s": round(time.perf_counter() - t0, 1)}
    for stage in (get_stage("pairs"), get_stage("graph")):
        cmd = [sys.executable, "-m", stage.module, "--config", str(conf), "--run-dir", str(run_dir), "--force"]
        stage = stage.name
        print(f"[{name}] {stage}: {' '.join(cmd)}", flush=True)
        wall, peak_mb, rc = run_measured(cmd)
        if rc:
            raise SystemExit(f"{stage} stage failed on {name} (exit {rc})")
        report = json.loads((run_dir / stage / "report.json").read_text())
        out[stage] = {"wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb), "report": report}
        print(f"[{name}] {stage}: {wall:.1f} s, peak RSS {peak_mb:.0f} MB", flush=True)
    n = out["pairs"]["report"]["interactions_read"]
    out["interactions"] = n
    out["pairs"]["interactions_per_s"] = round(n / out["pairs"]["wall_s"])
    out["graph"]["interactions_per_s"] = round(n / out["graph"]["wall_s"])
    return out


def main(argv: list[str] | None = None) -> int:
    from pinsage_model.io import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="synthetic demo preset instead of bench (10M)")
    parser.add_argument("--movielens", default=str(DEFAULT_MOVIELENS), help="ml-latest-small folder")
    parser.add_argument("--only", choices=("movielens", "synthetic"), help="benchmark one data set")
    parser.add_argument("--work-dir", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--output", default=str(RESULTS), help="result JSON path")
    args = parser.parse_args(argv)

    preset = "demo" if args.quick else "bench"
    datasets = {
        "movielens": {"source": "movielens", "path": args.movielens},
        f"synthetic-{preset}": {"source": "synthetic", "preset": preset, "seed": 0},
    }
    if args.only:
        datasets = {k: v for k, v in datasets.items() if k.startswith(args.only)}
    with tempfile.TemporaryDirectory(prefix="bench_pairs_", dir=args.work_dir) as tmp:
        results = {name: bench_dataset(name, data, Path(tmp)) for name, data in datasets.items()}
    atomic_write_json(
        args.output,
        {
            "benchmark": "pairs+graph stages (Spark local[2])",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
            "datasets": results,
        },
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
