"""Model export: ``weights.npz`` + ``model_config.json`` (read without TensorFlow), ``model.keras``,
``history.json`` (contracts.py, ``model/``).

``weights.npz`` keys (row-vector convention ``x @ Q``): ``conv{k}/Q`` (F_k, m), ``conv{k}/q`` (m,),
``conv{k}/W`` (F_k + m, d), ``conv{k}/w`` (d,), ``head/G1`` (d, d), ``head/g`` (d,),
``head/G2`` (d, d); with learned id embeddings also ``id_embedding/E`` (N, e), each item's id vector
(hashed table rows already summed; zero for items without identity), in which case
F_1 = F + e (the id embedding is concatenated after the features); with a learned query shift
(``query_shift: true`` in the config) also ``head/query_shift`` (d,), added to query embeddings;
with user nodes (``user_half_life`` in the config: trained with the user term) also ``user/self``
(F_K,), the users' own representation read by the last convolution
(:func:`pinsage_model.inference.layerwise.user_embeddings`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pinsage_model.data.contracts import ContractError
from pinsage_model.io import atomic_path, atomic_save_npz, atomic_write_json

WEIGHTS_FILE = "weights.npz"
CONFIG_FILE = "model_config.json"
KERAS_FILE = "model.keras"
HISTORY_FILE = "history.json"


def model_weights(model: Any) -> dict[str, np.ndarray]:
    """The contract's weight dict of a :class:`pinsage_model.model.layers.PinSageModel`."""
    out: dict[str, np.ndarray] = {}
    for k, conv in enumerate(model.convs, 1):
        for name in ("Q", "q", "W", "w"):
            out[f"conv{k}/{name}"] = np.asarray(getattr(conv, name).numpy(), dtype=np.float32)
    out["head/G1"] = np.asarray(model.G1.kernel.numpy(), dtype=np.float32)
    out["head/g"] = np.asarray(model.G1.bias.numpy(), dtype=np.float32)
    out["head/G2"] = np.asarray(model.G2.kernel.numpy(), dtype=np.float32)
    if model.id_embedding is not None:
        # Materialised per item (hashed rows summed, zero without identity), so inference reads
        # one (N, e) matrix whatever the table layout was in training.
        out["id_embedding/E"] = np.asarray(model.id_vectors(), dtype=np.float32)
    if model.query_shift is not None:
        out["head/query_shift"] = np.asarray(model.query_shift.numpy(), dtype=np.float32)
    if model.user_self is not None:
        out["user/self"] = np.asarray(model.user_self.numpy(), dtype=np.float32)
    return out


def model_config(model: Any) -> dict:
    """``model_config.json`` content."""
    return {
        "num_layers": model.num_layers,
        "hidden_dim": model.hidden_dim,
        "output_dim": model.output_dim,
        "pooling": model.pooling,
        "input_dim": model.input_dim,
        "id_embedding_dim": model.id_embedding_dim,
        "num_items": model.num_items,
        "query_shift": model.use_query_shift,
        # only with user nodes, so a model without them writes the file it always has
        **({} if model.user_half_life is None else {"user_half_life": model.user_half_life}),
    }


def save_weights_npz(model: Any, out_dir: str | Path) -> None:
    """Write ``weights.npz`` and ``model_config.json`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    atomic_save_npz(out_dir / WEIGHTS_FILE, **model_weights(model))
    atomic_write_json(out_dir / CONFIG_FILE, model_config(model))


def load_weights_npz(model_dir: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read ``weights.npz`` and ``model_config.json``; shapes are checked against the config."""
    model_dir = Path(model_dir)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (model_dir / name).exists():
            raise ContractError(f"{model_dir / name}: not found (expected the model stage's output)")
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    with np.load(model_dir / WEIGHTS_FILE, allow_pickle=False) as data:
        weights = {k: data[k] for k in data.files}
    K, m, d, F = config["num_layers"], config["hidden_dim"], config["output_dim"], config["input_dim"]
    width = F + config.get("id_embedding_dim", 0)
    expected = {"head/G1": (d, d), "head/g": (d,), "head/G2": (d, d)}
    if config.get("query_shift", False):
        expected["head/query_shift"] = (d,)
    for k in range(1, K + 1):
        expected.update(
            {f"conv{k}/Q": (width, m), f"conv{k}/q": (m,), f"conv{k}/W": (width + m, d), f"conv{k}/w": (d,)}
        )
        if k == K and "user_half_life" in config:
            expected["user/self"] = (width,)
        width = d
    for key, shape in expected.items():
        if key not in weights:
            raise ContractError(f"{model_dir / WEIGHTS_FILE}: missing array '{key}'")
        if weights[key].shape != shape:
            raise ContractError(f"{model_dir / WEIGHTS_FILE}: '{key}' has shape {weights[key].shape}, expected {shape}")
    return weights, config


def model_from_weights(weights: dict[str, np.ndarray], config: dict) -> Any:
    """Rebuild a Keras :class:`PinSageModel` from the npz weights (for tests and fine-tuning)."""
    from pinsage_model.model.layers import PinSageModel

    model = PinSageModel(
        input_dim=config["input_dim"],
        num_layers=config["num_layers"],
        hidden_dim=config["hidden_dim"],
        output_dim=config["output_dim"],
        pooling=config["pooling"],
        num_items=config.get("num_items", 0) if config.get("id_embedding_dim", 0) else 0,
        id_embedding_dim=config.get("id_embedding_dim", 0),
        query_shift=config.get("query_shift", False),
        user_half_life=config.get("user_half_life"),
    )
    for k, conv in enumerate(model.convs, 1):
        for name in ("Q", "q", "W", "w"):
            getattr(conv, name).assign(weights[f"conv{k}/{name}"])
    model.G1.kernel.assign(weights["head/G1"])
    model.G1.bias.assign(weights["head/g"])
    model.G2.kernel.assign(weights["head/G2"])
    if model.id_embedding is not None:
        model.id_embedding.embeddings.assign(weights["id_embedding/E"])
    if model.query_shift is not None:
        model.query_shift.assign(weights["head/query_shift"])
    if model.user_self is not None:
        model.user_self.assign(weights["user/self"])
    return model


def save_keras(model: Any, out_dir: str | Path) -> None:
    """Write ``model.keras`` atomically."""
    with atomic_path(Path(out_dir) / KERAS_FILE) as tmp:
        keras_tmp = tmp.with_suffix(".keras")
        model.save(keras_tmp)
        keras_tmp.replace(tmp)


def save_history(history: list[dict], out_dir: str | Path) -> None:
    """Write the training curve ``history.json`` (one dict per epoch)."""
    atomic_write_json(Path(out_dir) / HISTORY_FILE, history)
