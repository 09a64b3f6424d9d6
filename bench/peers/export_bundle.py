"""Write the bundle a peer benchmark reads: our synthetic graph, features and training pairs.

Runs in the project's venv. The inputs are exactly those of ``bench/bench_training.py``: the
cached synthetic graph of the preset (``_graph(preset, 0)``), then from one
``np.random.default_rng(0)`` the (N, F) float32 normal features and the engagement-like pairs
(``_pairs``; the first 200 are bench_training's validation pairs and are dropped here too).

Bundle folder (plain ``.npy``, no pickle):

* ``item_indptr.npy`` (N+1,) int64, ``item_indices.npy`` (E,) int32: the collections of each item
  (the item -> collection CSR of :class:`pinsage_model.graph.csr.CSRGraph`; the peer builds both
  edge directions from it);
* ``features.npy`` (N, F) float32;
* ``pairs_q.npy``, ``pairs_pos.npy`` (P,) int32: training pairs (query, positive), q != pos;
* ``settings.json``: the preset, sizes and every setting of the peer's model and sampler.

``settings.json`` is written last, so a folder without it is an unfinished export. The bundle is
written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BUNDLES = Path(__file__).resolve().parents[2] / "runs" / "peers"
# The paper's training settings (and issue #24's): T = 50 neighbours from 200 walks, K = 2 layers
# of widths m = 256 (pooling) and d = 128 (output), batches of 512, F = 32 random features.
PAPER = {
    "feature_dim": 32,
    "top_t": 50,
    "num_walks": 200,
    "num_layers": 2,
    "hidden_dim": 256,
    "output_dim": 128,
    "batch_size": 512,
}
# Timed steps per repeat (the peer also runs WARMUP untimed steps once): DGL's example takes
# about 0.6 s a step on the demo preset and 16 s on the bench preset on 2 cores (its online walks
# reach about 560k input nodes a step there), so a bench run is about 5 minutes.
STEPS = {"tiny": 10, "demo": 20, "bench": 5}
WARMUP = 2
REPEATS = 3


def bundle_settings(preset: str, overrides: dict | None = None, config: str = "configs/demo.yaml") -> dict:
    """The settings a bundle of ``preset`` is written with: PAPER, the walk length and restart
    probability of ``config``'s sampler section (what bench_training uses), STEPS, WARMUP and
    REPEATS, then ``overrides`` (keys of the result)."""
    from pinsage_model.config import load_config

    sampler = load_config(config).sampler
    settings = {
        "preset": preset,
        **PAPER,
        "walk_length": sampler.walk_length,
        "restart_prob": sampler.restart_prob,
        "steps": STEPS.get(preset, 10),
        "warmup_steps": WARMUP,
        "repeats": REPEATS,
    }
    unknown = set(overrides or {}) - set(settings)
    if unknown:
        raise ValueError(f"unknown bundle settings {sorted(unknown)}; known: {sorted(settings)}")
    settings.update(overrides or {})
    return settings


def export_bundle(out_dir: str | Path, settings: dict) -> Path:
    """Write the bundle of ``settings["preset"]`` to ``out_dir`` (replaced if present); returns it."""
    from bench.bench_training import _graph, _pairs
    from pinsage_model.io import atomic_dir

    graph = _graph(settings["preset"], 0)
    rng = np.random.default_rng(0)
    n = graph.num_items
    features = rng.normal(size=(n, settings["feature_dim"])).astype(np.float32)  # (N, F)
    # One repeat's steps without reusing a pair; the peer cycles through them after that.
    q, pos = _pairs(graph, (settings["warmup_steps"] + settings["steps"]) * settings["batch_size"] + 200, rng)
    q, pos = q[200:], pos[200:]
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / "item_indptr.npy", np.asarray(graph.item_indptr, dtype=np.int64))
        np.save(tmp / "item_indices.npy", np.asarray(graph.item_indices, dtype=np.int32))
        np.save(tmp / "features.npy", features)
        np.save(tmp / "pairs_q.npy", q)
        np.save(tmp / "pairs_pos.npy", pos)
        full = {
            **settings,
            "items": n,
            "collections": graph.num_collections,
            "edges": graph.num_edges,
            "pairs": len(q),
        }
        (tmp / "settings.json").write_text(json.dumps(full, indent=2) + "\n")
    return out_dir


def read_settings(bundle: str | Path) -> dict | None:
    """The ``settings.json`` of a finished bundle, or None when there is none."""
    path = Path(bundle) / "settings.json"
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", choices=["tiny", "demo", "bench"])
    parser.add_argument("--output", help=f"bundle folder (default: {BUNDLES}/<preset>)")
    parser.add_argument("--steps", type=int, help="timed steps per repeat (default: by preset)")
    args = parser.parse_args(argv)
    overrides = {"steps": args.steps} if args.steps else {}
    out = export_bundle(args.output or BUNDLES / args.preset, bundle_settings(args.preset, overrides))
    print(json.dumps(read_settings(out), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
