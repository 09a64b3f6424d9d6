"""MLflow tracking, registration and the champion/challenger gate on a SQLite store in tmp.

The run directories are hand-built (pairs, model files, history and evaluation metrics with
chosen numbers), so every expectation below is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from components import lifecycle
from components.lifecycle import GATE_METRICS, gate
from pinsage_model.config import config_from_dict
from pinsage_model.io import atomic_save_npz, atomic_write_json, atomic_write_parquet

TEST_PAIRS = [("i1", "i2"), ("i3", "i4"), ("i0", "i9")]


def make_run(run_dir: Path, seed: int, hr10: float, mrr: float, test_pairs=TEST_PAIRS) -> Path:
    """A run dir with the files tracking reads; weights differ by ``seed``."""
    rows = [(q, p, 1, "test") for q, p in test_pairs] + [("i5", "i6", 2, "train")]
    atomic_write_parquet(
        run_dir / "pairs" / "pairs.parquet",
        pa.table({k: [r[i] for r in rows] for i, k in enumerate(("q_item", "pos_item", "count", "split"))}),
    )
    atomic_write_json(run_dir / "pairs" / "_fingerprint.json", {"fingerprint": f"pairs-{len(test_pairs)}", "stage": "pairs"})
    rng = np.random.default_rng(seed)
    model = run_dir / "model"
    atomic_save_npz(model / "weights.npz", **{"conv1/Q": rng.standard_normal((4, 3)).astype(np.float32)})
    atomic_write_json(model / "model_config.json", {"num_layers": 1, "hidden_dim": 3, "output_dim": 2, "pooling": "importance", "input_dim": 4})
    (model / "model.keras").write_bytes(b"keras-" + bytes([seed]))
    atomic_write_json(model / "history.json", {"loss": [0.9, 0.5, 0.25], "val_hit_rate@10": [0.1, 0.2, hr10]})
    atomic_write_json(model / "report.json", {"stage": "model", "seconds": 1.5})
    ev = run_dir / "evaluation"
    atomic_write_json(
        ev / "metrics.json",
        {"pinsage": {"hit_rate@10": hr10, "mrr": mrr}, "popularity": {"hit_rate@10": 0.01, "mrr": 0.001}},
    )
    (ev / "report.md").write_text("# report\n")
    (ev / "hit_rate.png").write_bytes(b"\x89PNG fake")
    return run_dir


def cfg_for(name: str, tolerance: float = 0.0):
    return config_from_dict({"name": "t", "tracking": {"registered_model": name, "promotion_tolerance": tolerance}})


# --- the gate as a pure function (hand-computed)

def tags(hr, mrr, split="s1"):
    return {"hit_rate_at_10": repr(hr), "mrr": repr(mrr), "test_split": split}


def test_gate_without_champion_passes():
    assert gate(tags(0.1, 0.01), None, 0.0) == (True, "no champion yet")


def test_gate_requires_both_metrics_at_least_champion():
    assert gate(tags(0.30, 0.10), tags(0.30, 0.10), 0.0)[0] is True  # equal passes
    ok, why = gate(tags(0.31, 0.09), tags(0.30, 0.10), 0.0)
    assert not ok and "mrr 0.0900 < 0.1000" in why and "hit_rate" not in why
    assert gate(tags(0.31, 0.09), tags(0.30, 0.10), 0.01)[0] is True  # 0.09 >= 0.10 - 0.01
    assert gate(tags(0.31, 0.089), tags(0.30, 0.10), 0.01)[0] is False


def test_gate_refuses_different_split_and_missing_metrics():
    ok, why = gate(tags(0.9, 0.9, "s2"), tags(0.1, 0.1, "s1"), 0.0)
    assert not ok and "different test splits" in why
    ok, why = gate({"test_split": "s1"}, tags(0.1, 0.1), 0.0)
    assert not ok and "no evaluation metrics" in why


def test_gate_metrics_extraction():
    from components.tracking import gate_metrics

    m = {"pinsage": {"hit_rate@10": 0.4, "hit_rate@50": 0.6, "mrr": 0.2}, "pixie": {"hit_rate@10": 0.3, "mrr": 0.1}}
    assert gate_metrics(m) == {"hit_rate_at_10": 0.4, "mrr": 0.2}
    assert gate_metrics({"hit_rate_at_10": 0.5, "mrr": 0.25}) == {"hit_rate_at_10": 0.5, "mrr": 0.25}
    # components/evaluate.py's layout: per method, test and validation splits side by side
    evaluate_layout = {
        "methods": {
            "pinsage": {"test": {"hit@10": 0.31, "hit@50": 0.6, "mrr": 0.12}, "validation": {"hit@10": 0.5, "mrr": 0.3}},
            "pixie": {"test": {"hit@10": 0.2, "mrr": 0.05}, "validation": {"hit@10": 0.1, "mrr": 0.01}},
        },
        "config": {"ks": [10, 50], "test_pairs": 900},
    }
    assert gate_metrics(evaluate_layout) == {"hit_rate_at_10": 0.31, "mrr": 0.12}
    with pytest.raises(KeyError, match="ambiguous"):
        gate_metrics({"a": {"hit_rate@10": 0.4, "mrr": 0.2}, "b": {"hit_rate@10": 0.3, "mrr": 0.1}})
    with pytest.raises(KeyError, match="no 'mrr'"):
        gate_metrics({"hit_rate@10": 0.4})


# --- against a real MLflow SQLite store

@pytest.fixture(scope="module")
def area(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield tmp_path_factory.mktemp("runs")


def test_tracking_gate_promote_and_rollback(area):
    from components.tracking import client_for, track_pipeline_run

    cfg = cfg_for("gate-model")
    r1 = track_pipeline_run(cfg, make_run(area / "run1", seed=1, hr10=0.30, mrr=0.10))
    assert r1["tracking_uri"] == f"sqlite:///{area.resolve() / 'mlflow.db'}"
    assert (r1["model_version"], r1["promotion"]["promote"], r1["promotion"]["reason"]) == (1, True, "no champion yet")

    # worse on MRR: registered as challenger, champion stays at version 1
    r2 = track_pipeline_run(cfg, make_run(area / "run2", seed=2, hr10=0.35, mrr=0.05))
    assert r2["model_version"] == 2 and r2["promotion"]["promote"] is False
    assert lifecycle.champion_version(cfg, area)["version"] == 1
    client = client_for(cfg, area)
    assert int(client.get_model_version_by_alias("gate-model", "challenger").version) == 2

    # better on both: champion moves to version 3
    r3 = track_pipeline_run(cfg, make_run(area / "run3", seed=3, hr10=0.40, mrr=0.12))
    assert r3["promotion"]["promote"] is True and r3["promotion"]["champion"] == 1
    champ = lifecycle.champion_version(cfg, area)
    assert champ["version"] == 3 and champ["uri"] == "models:/gate-model@champion"
    assert champ["tags"]["hit_rate_at_10"] == "0.4"

    # what index publishing reads follows the champion alias
    dl = lifecycle.download_champion(cfg, area / "dl3", area)
    assert (dl / "weights.npz").read_bytes() == (area / "run3/model/weights.npz").read_bytes()

    assert lifecycle.rollback(client, "gate-model") == (3, 1)
    dl = lifecycle.download_champion(cfg, area / "dl1", area)
    assert (dl / "weights.npz").read_bytes() == (area / "run1/model/weights.npz").read_bytes()
    with pytest.raises(lifecycle.LifecycleError, match="no previous one"):
        lifecycle.rollback(client, "gate-model")

    # what the run logged
    run = client.get_run(r3["run_id"])
    assert run.data.params["train.batch_size"] == "256"
    assert run.data.params["evaluation.ks"] == "[10, 50, 100]"
    assert run.data.tags["fingerprint.pairs"] == "pairs-3"
    assert run.data.tags["data.test_split"] == champ["tags"]["test_split"] != ""
    assert run.data.metrics["eval.pinsage.hit_rate_at_10"] == 0.40
    assert run.data.metrics["gate.mrr"] == 0.12
    assert [m.value for m in sorted(client.get_metric_history(r3["run_id"], "train.loss"), key=lambda m: m.step)] == [0.9, 0.5, 0.25]
    logged = {f.path for d in ("model", "evaluation") for f in client.list_artifacts(r3["run_id"], d)}
    assert {"model/weights.npz", "model/model_config.json", "model/model.keras", "evaluation/report.md", "evaluation/hit_rate.png"} <= logged
    assert (area / "mlartifacts").is_dir() and not Path("mlruns").exists()


def test_same_model_is_not_registered_twice(area):
    from components.tracking import track_pipeline_run

    cfg = cfg_for("idem-model")
    run = make_run(area / "idem", seed=7, hr10=0.2, mrr=0.1)
    first = track_pipeline_run(cfg, run)
    again = track_pipeline_run(cfg, run)
    assert first["run_id"] != again["run_id"]
    assert first["model_version"] == again["model_version"] == 1
    assert again["promotion"]["reason"] == "version 1 is already champion"


def test_different_split_is_not_promoted(area):
    from components.tracking import track_pipeline_run

    cfg = cfg_for("split-model")
    track_pipeline_run(cfg, make_run(area / "s1", seed=1, hr10=0.2, mrr=0.1))
    r = track_pipeline_run(cfg, make_run(area / "s2", seed=2, hr10=0.9, mrr=0.9, test_pairs=TEST_PAIRS[:2]))
    assert r["promotion"]["promote"] is False and "different test splits" in r["promotion"]["reason"]
    assert lifecycle.champion_version(cfg, area)["version"] == 1


def test_promote_and_rollback_commands(area, tmp_path, capsys):
    from components.cli import main
    from components.tracking import track_pipeline_run

    cfg = cfg_for("cli-model", tolerance=0.05)
    track_pipeline_run(cfg, make_run(area / "c1", seed=1, hr10=0.30, mrr=0.10))
    track_pipeline_run(cfg, make_run(area / "c2", seed=2, hr10=0.20, mrr=0.10), promote=False)
    conf = tmp_path / "c.yaml"
    conf.write_text("name: t\ntracking:\n  registered_model: cli-model\n  promotion_tolerance: 0.05\n")
    base = ["--config", str(conf), "--run-area", str(area)]

    assert main(["promote", *base]) == 3  # 0.20 < 0.30 - 0.05
    assert "version 2 not promoted" in capsys.readouterr().out
    assert main(["promote", *base, "--version", "2", "--force"]) == 0
    assert "version 2 promoted (champion was 1): forced" in capsys.readouterr().out
    assert lifecycle.champion_version(cfg, area)["version"] == 2
    assert main(["rollback", *base]) == 0
    assert "rolled back from version 2 to version 1" in capsys.readouterr().out
    assert main(["rollback", *base]) == 1
    assert set(GATE_METRICS) == {"hit_rate_at_10", "mrr"}


def test_epoch_history_formats():
    from components.tracking import epoch_history

    # components/train.py writes one dict per epoch
    per_epoch = [{"epoch": 0, "loss": 0.9, "val_hit_rate@10": 0.1}, {"epoch": 1, "loss": 0.4, "val_hit_rate@10": 0.3}]
    assert epoch_history(per_epoch) == {"loss": [0.9, 0.4], "val_hit_rate@10": [0.1, 0.3]}
    assert epoch_history({"loss": [0.9, 0.4], "note": "x"}) == {"loss": [0.9, 0.4]}
    assert epoch_history(None) == {}


def test_tracking_cli_with_separate_stage_folders(area, tmp_path):
    """The Kubeflow ``track`` step: stage outputs in separate folders, result in tracking.json."""
    from components.tracking import main

    run = make_run(area / "kfp-like", seed=11, hr10=0.5, mrr=0.2)
    conf = tmp_path / "c.yaml"
    conf.write_text("name: t\ntracking:\n  registered_model: cli-track-model\n")
    out = tmp_path / "track-out"
    args = ["--config", str(conf), "--output", str(out), "--run-area", str(area)]
    assert main([*args, *(a for s in ("pairs", "model", "evaluation") for a in (f"--{s}", str(run / s)))]) == 0
    result = json.loads((out / "tracking.json").read_text())
    assert result["model_version"] == 1 and result["promotion"]["promote"] is True
    assert lifecycle.champion_version(cfg_for("cli-track-model"), area)["tags"]["mrr"] == "0.2"


def add_embeddings(run_dir: Path, seed: int) -> Path:
    """The files the index stage reads: item ids, embeddings made by this run's model."""
    from components.tracking import model_fingerprint

    emb = np.random.default_rng(seed).standard_normal((6, 4)).astype(np.float32)
    (run_dir / "embeddings").mkdir()
    np.save(run_dir / "embeddings" / "items.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    atomic_write_json(
        run_dir / "embeddings" / "model.json",
        {"model_version": f"fp-{seed}", "weights_digest": model_fingerprint(run_dir / "model")},
    )
    atomic_write_parquet(
        run_dir / "graph" / "item_ids.parquet",
        pa.table({"item_idx": pa.array(range(6), pa.int32()), "item_id": [f"i{k}" for k in range(6)], "in_train_graph": [True] * 6}),
    )
    return run_dir


def test_published_index_follows_champion(area, tmp_path, capsys, monkeypatch):
    from components import publish_index
    from components.cli import main
    from components.tracking import track_pipeline_run
    from pinsage_model.index import current_version

    root = tmp_path / "published"
    raw = {"name": "t", "tracking": {"registered_model": "serve-model"}, "index": {"publish_root": str(root)}}
    cfg = config_from_dict(raw)

    def publish(run_dir: Path) -> dict:
        inputs = {"graph": run_dir / "graph", "embeddings": run_dir / "embeddings", "evaluation": run_dir / "evaluation"}
        return publish_index.run(cfg, inputs, run_dir / "index")

    runs = {}
    for name, seed, hr10, mrr in (("p1", 11, 0.30, 0.10), ("p2", 12, 0.20, 0.05), ("p3", 13, 0.40, 0.12)):
        runs[name] = add_embeddings(make_run(area / name, seed=seed, hr10=hr10, mrr=mrr), seed)
        track_pipeline_run(cfg, runs[name])
        runs[name] = (runs[name], publish(runs[name]))

    (_, v1), (_, v2), (_, v3) = runs["p1"], runs["p2"], runs["p3"]
    assert (v1["serving"], v2["serving"], v3["serving"]) == (True, False, True)
    assert v2["champion_version"] == 1  # the worse model was published but not served
    assert current_version(root) == v3["version"]

    conf = tmp_path / "c.yaml"
    conf.write_text(f"name: t\ntracking:\n  registered_model: serve-model\nindex:\n  publish_root: {root}\n")
    assert main(["rollback", "--config", str(conf), "--run-area", str(area)]) == 0
    assert f"CURRENT -> {v1['version']}" in capsys.readouterr().out
    assert current_version(root) == v1["version"]

    # pruning down to one version keeps the newest and the serving (rolled-back) one
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(4102444800))  # 2100-01-01: p4 is the newest by far
    cfg = config_from_dict({**raw, "index": {"publish_root": str(root), "keep_versions": 1, "prune_grace_s": 0}})
    p4 = add_embeddings(make_run(area / "p4", seed=14, hr10=0.10, mrr=0.01), 14)
    track_pipeline_run(cfg, p4)
    v4 = publish(p4)
    assert not v4["serving"] and sorted(v4["pruned_versions"]) == sorted([v2["version"], v3["version"]])
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted([v1["version"], v4["version"]])
    assert current_version(root) == v1["version"]


def test_tracking_does_not_leak_its_store_into_the_environment(area, tmp_path, monkeypatch):
    import os

    from components.tracking import client_for, tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = cfg_for("leak-model")
    client_for(cfg, tmp_path / "a")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert tracking_uri(cfg, tmp_path / "b") == f"sqlite:///{(tmp_path / 'b').resolve() / 'mlflow.db'}"
    user_choice = f"sqlite:///{tmp_path / 'user-choice.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user_choice)
    client_for(cfg, tmp_path / "a")
    assert os.environ["MLFLOW_TRACKING_URI"] == user_choice
