"""Measure DGL's PinSAGE example on our benchmark inputs (``make bench-peers``; issue #24).

Runs in the project's venv: exports the bundle of a preset when it is missing or was written
with other settings (:mod:`bench.peers.export_bundle`, in ``runs/peers/<preset>``), then runs
``bench/peers/dgl_pinsage.py`` in the peer environment ``.venv-peers`` (PyTorch CPU + DGL, built
by ``make bench-peers``, never the project's venv) and returns its JSON report.

From another benchmark, so that both are measured in one run::

    from bench.peers.run import measure_peer
    report = measure_peer("bench", "runs/peers/bench.json")
    report["median"]["examples_per_s"]

``num_workers=0`` (the example's default; sampling in the training loop) was the fastest on the
2-core VM with ``torch.set_num_threads(2)``: one worker process measured 629 vs 841 examples/s
on demo and 25.8 vs 31.0 on bench (the worker and the training loop compete for the two cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.peers.export_bundle import BUNDLES, bundle_settings, export_bundle, read_settings

ROOT = Path(__file__).resolve().parents[2]
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().parent / "dgl_pinsage.py"


def ensure_bundle(preset: str, **overrides: float) -> Path:
    """The bundle folder of ``preset``, exported first when missing or written with other settings."""
    want = bundle_settings(preset, overrides)
    bundle = BUNDLES / preset
    have = read_settings(bundle)
    if have is None or {k: have.get(k) for k in want} != want:
        print(f"exporting the {preset} bundle to {bundle}", flush=True)
        export_bundle(bundle, want)
    return bundle


def measure_peer(
    preset: str,
    out_path: str | Path,
    *,
    num_workers: int = 0,
    threads: int = 2,
    timeout_s: float | None = None,
    **overrides: float,
) -> dict:
    """Run DGL's PinSAGE example on ``preset``'s bundle and return its report (also at ``out_path``).

    Args:
      preset: ``tiny``, ``demo`` or ``bench`` (bench_training's synthetic graphs).
      out_path: where the peer writes its JSON report.
      num_workers: DataLoader worker processes of the peer's sampler.
      threads: ``torch.set_num_threads`` in the peer.
      timeout_s: kill the peer after this many seconds (None: no limit).
      overrides: bundle settings other than the defaults (``steps``, ``top_t``, ``batch_size``...).

    The report's ``median`` holds examples/s and the per-step producer, wait and compute times;
    ``windows`` every timed window; ``settings`` the bundle's settings. Raises FileNotFoundError
    when the peer environment is missing and RuntimeError when the peer fails.
    """
    if not PEER_PYTHON.exists():
        venv = PEER_PYTHON.parent.parent
        raise FileNotFoundError(f"peer environment {venv} is missing: run `make bench-peers` first")
    bundle = ensure_bundle(preset, **overrides)
    out_path = Path(out_path)
    cmd = [
        str(PEER_PYTHON),
        str(PEER_SCRIPT),
        f"--bundle={bundle}",
        f"--output={out_path}",
        f"--num-workers={num_workers}",
        f"--threads={threads}",
    ]
    rc = subprocess.call(cmd, timeout=timeout_s)
    if rc != 0:
        raise RuntimeError(f"peer benchmark failed (exit {rc}): {' '.join(cmd)}")
    return json.loads(out_path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["demo", "bench"], choices=["tiny", "demo", "bench"])
    parser.add_argument("--output-dir", default=str(BUNDLES), help="reports go to <dir>/dgl_pinsage_<preset>.json")
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        reports = [
            measure_peer(p, Path(args.output_dir) / f"dgl_pinsage_{p}.json", num_workers=args.num_workers)
            for p in args.presets
        ]
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"\n{'preset':8} {'ex/s':>8} {'step':>8} {'producer':>9} {'compute':>8}  (DGL PinSAGE example, medians)")
    for r in reports:
        m = r["median"]
        print(
            f"{r['settings']['preset']:8} {m['examples_per_s']:8.1f} {m['step_s']:8.3f} "
            f"{m['producer_s_per_step']:9.3f} {m['compute_s_per_step']:8.3f}"
        )
    print(f"reports in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
