"""The paper's scale, extrapolated from what ``make bench`` measured on this machine.

Reads the benchmark results under ``bench/results/`` (it measures nothing itself) and, for the
graph of the paper (Ying et al. 2018, section 4: 2 billion pins, 1 billion boards, 18 billion
edges, 7.5 billion training examples), gives each stage's core-hours at the measured per-core
rate, the machines that finish it in ``--hours`` with ``--cores`` cores each, and the state an
executor holds. The per-core rate is each benchmark's throughput divided by the cores it ran on,
so the estimate assumes linear scaling (no shuffle or network cost beyond what ``local[2]``
already paid); a stage a benchmark has not measured is listed as such, never guessed.

Results: ``bench/results/webscale.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Section 4 of the paper: pins are the items, boards the collections; each edge is one
# (pin, board) engagement, so the Spark stages read 18e9 interactions.
PAPER = {"items": 2e9, "collections": 1e9, "edges": 18e9, "training_examples": 7.5e9}
GIB = 1024**3


@dataclass(frozen=True)
class Rate:
    """A measured throughput: ``per_s`` units per second on ``cores`` cores, from ``source``."""

    per_s: float
    cores: int
    source: str


def _get(path: Path, *keys) -> object | None:
    if not path.exists():
        return None
    node: object = json.loads(path.read_text())
    for k in keys:
        if isinstance(node, list) and isinstance(k, int) and k < len(node):
            node = node[k]
        elif isinstance(node, dict) and k in node:
            node = node[k]
        else:
            return None
    return node


def measured_rates(results: Path = RESULTS) -> dict[str, Rate | None]:
    """Per stage, the throughput ``make bench`` measured at the bench preset (1M items), or None."""
    rates: dict[str, Rate | None] = {}
    pairs = results / "pairs.json"
    cpus = int(_get(pairs, "machine", "cpus") or 2)
    for stage in ("pairs", "graph"):
        v = _get(pairs, "datasets", "synthetic-bench", stage, "interactions_per_s")
        rates[stage] = Rate(float(v), cpus, f"pairs.json: {stage}, Spark local[{cpus}], interactions/s") if v else None
    feats = results / "features.json"
    best = next((m for m in _get(feats, "modes") or [] if m.get("mode") == _get(feats, "fastest_mode")), None)
    v = best["items"] / best["wall_s"] if best else None
    rates["features"] = (
        Rate(float(v), int(_get(feats, "machine", "cpus") or 2), "features.json: TF Transform analyse + apply, items/s")
        if v
        else None
    )
    sampler = results / "sampler.json"
    v = _get(sampler, "precompute_all_items", "items_per_s")
    rates["neighbourhoods"] = (
        Rate(
            float(v),
            int(_get(sampler, "precompute_all_items", "threads") or 2),
            "sampler.json: numba walks, all items, items/s",
        )
        if v
        else None
    )
    training = results / "training_paper.json"
    v = _get(training, "settings", "paper", "throughput", "examples_per_s")
    rates["model"] = (
        Rate(
            float(v),
            int(_get(training, "machine", "cpus") or 2),
            "training_paper.json: paper settings on the bench graph, epoch 2, CPU, examples/s",
        )
        if v
        else None
    )
    v = _get(results / "inference.json", "spark_local2", "nodes_per_s")
    rates["embeddings"] = (
        Rate(float(v), 2, "inference.json: Spark local[2] gather plan, every layer, items/s") if v else None
    )
    return rates


def state_per_stage(dim: int = 64, hidden: int = 128, top_t: int = 50, features: int = 300) -> dict[str, str]:
    """Where each stage's state lives at the paper's scale, with its size."""
    n, c, e = PAPER["items"], PAPER["collections"], PAPER["edges"]
    csr = (n + c + 2) * 8 + 2 * e * 4  # both directions: int64 offsets, int32 neighbours
    return {
        "pairs": "Spark shuffle of the interactions by user (executor memory: a partition, spilled to disk)",
        "graph": f"CSR both ways {csr / GIB:,.0f} GiB written once to the shared run area; "
        "dense re-indexing is a Spark join (a partition per task)",
        "features": f"the feature matrix {n * features * 4 / GIB:,.0f} GiB ({features} float32 columns) "
        "streamed in row batches; the analysis keeps only its running statistics per worker",
        "neighbourhoods": f"the CSR ({csr / GIB:,.0f} GiB) memory-mapped by every executor (page cache, "
        f"read-only), output {n * top_t * 8 / GIB:,.0f} GiB (T={top_t} ids + weights)",
        "model": f"one sub-graph minibatch per device; the feature matrix ({n * features * 4 / GIB:,.0f} GiB) "
        "and neighbourhoods read by the producers from the shared area",
        "embeddings": f"per layer the (N, {hidden}) projections {n * hidden * 4 / GIB:,.0f} GiB gathered "
        f"from the shared area; output (N, {dim}) {n * dim * 4 / GIB:,.0f} GiB",
    }


def estimate(rates: dict[str, Rate | None], hours: float, cores: int) -> list[dict]:
    """One row per stage: work at the paper's scale, core-hours, machines for ``hours`` of wall time."""
    work = {
        "pairs": PAPER["edges"],
        "graph": PAPER["edges"],
        "features": PAPER["items"],
        "neighbourhoods": PAPER["items"],
        "model": PAPER["training_examples"],
        "embeddings": PAPER["items"],
    }
    state = state_per_stage()
    rows = []
    for stage, units in work.items():
        rate = rates.get(stage)
        row = {"stage": stage, "units": units, "state": state[stage]}
        if rate is None:
            row.update(measured=False)
        else:
            per_core = rate.per_s / rate.cores
            core_h = units / per_core / 3600
            row.update(
                measured=True,
                per_core_s=per_core,
                source=rate.source,
                core_hours=core_h,
                machines=max(1, int(-(-core_h // (hours * cores)))),
            )
        rows.append(row)
    return rows


def table(rows: list[dict], hours: float, cores: int) -> str:
    lines = [
        "| stage | per-core rate (measured) | work at paper scale | "
        f"core-hours | machines ({cores} cores) for {hours:g} h | state |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["measured"]:
            lines.append(
                f"| {r['stage']} | {r['per_core_s']:,.0f}/s | {r['units']:.3g} | {r['core_hours']:,.0f} | "
                f"{r['machines']:,} | {r['state']} |"
            )
        else:
            lines.append(f"| {r['stage']} | not measured | {r['units']:.3g} | - | - | {r['state']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=4.0, help="wall time each stage should take (default 4)")
    parser.add_argument(
        "--cores", type=int, default=32, help="cores per machine (default 32, the paper's training host)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the benchmark JSON files")
    args = parser.parse_args(argv)
    if args.hours <= 0 or args.cores < 1:
        print("error: --hours must be > 0 and --cores >= 1", file=sys.stderr)
        return 2
    from pinsage_model.io import atomic_write_json

    rows = estimate(measured_rates(args.results), args.hours, args.cores)
    atomic_write_json(
        args.results / "webscale.json",
        {
            "command": f"python -m bench.webscale --hours {args.hours:g} --cores {args.cores}",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "paper_scale": PAPER,
            "assumption": "linear scaling of the measured per-core rates",
            "stages": rows,
        },
    )
    print(table(rows, args.hours, args.cores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
