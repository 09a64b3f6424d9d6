"""Helpers the integration tests share (``tests/integration`` is on the test path)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pinsage_model.data.contracts import model_digest
from pinsage_model.io import atomic_save_npy, atomic_save_npz, atomic_write_json, atomic_write_parquet


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


def make_run(
    run_dir: Path,
    seed: int,
    hr10: float,
    mrr: float,
    split: str = "v1",
    test: tuple[float, float] | None = None,
    num_items: int = 6,
    dim: int = 4,
    query_shift: np.ndarray | None = None,
) -> Path:
    """A run dir with the graph ids, model, embeddings and evaluation outputs registration and the
    index read; weights and embeddings differ by ``seed``.

    ``hr10``/``mrr`` are PinSage's validation metrics (what the gate reads); ``test`` its test
    metrics (default: the same numbers); ``split`` names the validation pairs evaluated. Items are
    ``i0`` .. ``i<num_items - 1>`` with random unit ``dim``-wide embeddings; ``query_shift`` is
    written as ``embeddings/query_shift.npy`` when given.
    """
    rng = np.random.default_rng(seed)
    model = run_dir / "model"
    atomic_save_npz(model / "weights.npz", **{"conv1/Q": rng.standard_normal((4, 3)).astype(np.float32)})
    atomic_write_json(
        model / "model_config.json",
        {"num_layers": 1, "hidden_dim": 3, "output_dim": 2, "pooling": "importance", "input_dim": 4},
    )
    (model / "model.keras").write_bytes(b"keras-" + bytes([seed]))
    atomic_write_json(
        model / "history.json",
        [
            {"epoch": 1, "loss": 0.9, "val_hit_rate_at_10": 0.1},
            {"epoch": 2, "loss": 0.5, "val_hit_rate_at_10": 0.2},
            {"epoch": 3, "loss": 0.25, "val_hit_rate_at_10": hr10},
        ],
    )
    atomic_write_json(model / "report.json", {"stage": "model", "seconds": 1.5})
    t_hr10, t_mrr = test if test is not None else (hr10, mrr)
    ev = run_dir / "evaluation"
    atomic_write_json(
        ev / "metrics.json",
        {
            "methods": {
                "pinsage": {
                    "test": {"hit_rate_at_10": t_hr10, "mrr": t_mrr},
                    "validation": {"hit_rate_at_10": hr10, "mrr": mrr},
                },
                "popularity": {
                    "test": {"hit_rate_at_10": 0.01, "mrr": 0.001},
                    "validation": {"hit_rate_at_10": 0.02, "mrr": 0.002},
                },
            },
            "config": {"split_digests": {"validation": split, "test": "t1"}},
        },
    )
    (ev / "report.md").write_text("# report\n")
    (ev / "hit_rate.png").write_bytes(b"\x89PNG fake")
    return add_embeddings(run_dir, seed, num_items, dim, query_shift)


def add_embeddings(
    run_dir: Path, seed: int, num_items: int = 6, dim: int = 4, query_shift: np.ndarray | None = None
) -> Path:
    """Item ids and unit embeddings made by this run's model (what the index and the servable model
    read), and the raw item titles and user histories the registration report samples."""
    import pyarrow as pa

    emb = np.random.default_rng(seed).standard_normal((num_items, dim)).astype(np.float32)
    atomic_save_npy(run_dir / "embeddings" / "items.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    # as the embeddings stage writes them: zero shifts for a model that learns none
    shift = np.zeros(dim, np.float32) if query_shift is None else np.asarray(query_shift, np.float32)
    atomic_save_npy(run_dir / "embeddings" / "query_shift.npy", shift)
    atomic_save_npy(run_dir / "embeddings" / "user_shift.npy", shift)
    digest = model_digest(run_dir / "model")
    atomic_write_json(
        run_dir / "embeddings" / "model.json", {"model_version": f"sha-{digest[:12]}", "weights_digest": digest}
    )
    # the raw tables the report's samples read: item titles, and three users' histories
    ids = [f"i{k}" for k in range(num_items)]
    atomic_write_parquet(
        run_dir / "raw" / "items.parquet", pa.table({"item_id": ids, "title": [f"Title {i}" for i in ids]})
    )
    atomic_write_parquet(
        run_dir / "raw" / "interactions.parquet",
        pa.table(
            {
                "user_id": [f"u{k % 3}" for k in range(num_items)],
                "item_id": ids,
                "timestamp": pa.array(range(num_items), pa.int64()),
            }
        ),
    )
    atomic_write_parquet(
        run_dir / "graph" / "item_ids.parquet",
        pa.table(
            {
                "item_idx": pa.array(range(num_items), pa.int32()),
                "item_id": [f"i{k}" for k in range(num_items)],
                "in_train_graph": [True] * num_items,
            }
        ),
    )
    return run_dir
