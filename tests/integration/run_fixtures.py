"""Helpers the integration tests share (``tests/integration`` is on the test path)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pinsage_model.io import atomic_save_npz, atomic_write_json


def digests(run_dir: Path) -> dict[str, str]:
    """sha256 of every output file; ``report.json`` without its wall-clock ``seconds``."""
    out = {}
    for f in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        data = f.read_bytes()
        if f.name == "report.json":
            rep = json.loads(data)
            rep.pop("seconds", None)
            data = json.dumps(rep, sort_keys=True).encode()
        out[str(f.relative_to(run_dir))] = hashlib.sha256(data).hexdigest()
    return out


def make_run(run_dir: Path, seed: int, hr10: float, mrr: float, split: str = "v1", test: tuple[float, float] | None = None) -> Path:
    """A run dir with the model and evaluation outputs registration reads; weights differ by ``seed``.

    ``hr10``/``mrr`` are PinSage's validation metrics (what the gate reads); ``test`` its test
    metrics (default: the same numbers); ``split`` names the validation pairs evaluated.
    """
    rng = np.random.default_rng(seed)
    model = run_dir / "model"
    atomic_save_npz(model / "weights.npz", **{"conv1/Q": rng.standard_normal((4, 3)).astype(np.float32)})
    atomic_write_json(model / "model_config.json", {"num_layers": 1, "hidden_dim": 3, "output_dim": 2, "pooling": "importance", "input_dim": 4})
    (model / "model.keras").write_bytes(b"keras-" + bytes([seed]))
    atomic_write_json(model / "history.json", [
        {"epoch": 1, "loss": 0.9, "val_hit_rate_at_10": 0.1}, {"epoch": 2, "loss": 0.5, "val_hit_rate_at_10": 0.2},
        {"epoch": 3, "loss": 0.25, "val_hit_rate_at_10": hr10},
    ])
    atomic_write_json(model / "report.json", {"stage": "model", "seconds": 1.5})
    t_hr10, t_mrr = test if test is not None else (hr10, mrr)
    ev = run_dir / "evaluation"
    atomic_write_json(ev / "metrics.json", {
        "methods": {
            "pinsage": {"test": {"hit_rate_at_10": t_hr10, "mrr": t_mrr}, "validation": {"hit_rate_at_10": hr10, "mrr": mrr}},
            "popularity": {"test": {"hit_rate_at_10": 0.01, "mrr": 0.001}, "validation": {"hit_rate_at_10": 0.02, "mrr": 0.002}},
        },
        "config": {"split_digests": {"validation": split, "test": "t1"}},
    })
    (ev / "report.md").write_text("# report\n")
    (ev / "hit_rate.png").write_bytes(b"\x89PNG fake")
    return run_dir
