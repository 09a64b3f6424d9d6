"""PinSage training on the planted data set (``planted_training``): quality against the content
baseline, resume, and the model stage's contract outputs. Several devices and workers:
test_training_devices.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from planted_training import MODEL, SAMPLER, TRAIN, model_run_dir, stage_config, train_data

pytestmark = pytest.mark.slow


def content_hit_rate(data) -> float:
    from pinsage_model.model.training import validation_metrics

    return validation_metrics(lambda nodes: data.features[nodes], data.val_q, data.val_pos, data.num_items)[
        "hit_rate_at_10"
    ]


def test_pinsage_beats_content_baseline_over_seeds(tmp_path):
    from pinsage_model.model.training import train

    seen = []
    for seed in (0, 1, 2):
        data = train_data(seed)
        logged = []
        result = train(
            data,
            MODEL,
            TRAIN.replace(seed=seed),
            SAMPLER,
            checkpoint_dir=tmp_path / f"s{seed}",
            progress=False,
            on_epoch_end=lambda e, m: logged.append((e, m)),
        )
        best = max(h["val_hit_rate_at_10"] for h in result.history)
        base = content_hit_rate(data)
        seen.append((seed, best, base))
        assert [e for e, _ in logged] == [h["epoch"] for h in result.history]
        assert [h["hard_negatives"] for h in result.history] == [0, 1, 2, 2, 2, 2, 2][: len(result.history)]
        assert result.history[-1]["loss"] < result.history[0]["loss_first"]
    print("seed, PinSage best val hit@10, content hit@10:", seen)
    for seed, best, base in seen:
        assert best >= base + 0.25, f"seed {seed}: PinSage hit@10 {best:.3f} vs content {base:.3f} ({seen})"


def test_interrupt_and_resume_gives_the_same_weights(tmp_path):
    from pinsage_model.model.export import model_weights
    from pinsage_model.model.training import train

    data = train_data(5)
    cfg = TRAIN.replace(epochs=3, deterministic=True, seed=5, steps_per_epoch=4)
    full = train(data, MODEL, cfg, SAMPLER, checkpoint_dir=tmp_path / "full", progress=False)

    class Interrupted(Exception):
        pass

    def stop_after_two(epoch, metrics):
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(data, MODEL, cfg, SAMPLER, checkpoint_dir=tmp_path / "cut", progress=False, on_epoch_end=stop_after_two)
    resumed = train(data, MODEL, cfg, SAMPLER, checkpoint_dir=tmp_path / "cut", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert len(resumed.step_losses) == 4  # only epoch 3 ran again
    np.testing.assert_allclose(resumed.step_losses, full.step_losses[-4:], rtol=0, atol=1e-6)
    a, b = model_weights(full.model), model_weights(resumed.model)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    history = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_model_stage_writes_contract_outputs_that_inference_reproduces(tmp_path):
    """The component end to end on a run dir; numpy layer-wise inference equals the Keras model."""
    import pyarrow.parquet as pq

    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.inference.layerwise import embed_all
    from pinsage_model.model.export import load_weights_npz
    from pinsage_model.model.training import embed_nodes

    run, features, nb, n_tr, n_val = model_run_dir(tmp_path, 11)
    cfg = stage_config(epochs=2, steps_per_epoch=3)
    stage = get_stage("model")
    ctx = StageContext.for_run_dir(run, "2026-01-12T00:00:00Z")
    report = execute(stage, cfg, {name: run / name for name in stage.inputs}, run / "model", ctx)
    out = run / "model"
    assert report["pairs_in"] == n_tr + n_val + 2 and report["pairs_quarantined"] == 2
    assert report["train_pairs"] == n_tr and report["validation_pairs"] == n_val
    assert report["epochs_run"] == 2 and len(report["epochs"]) == 2
    reasons = pq.read_table(out / "quarantine.parquet").column("reason").to_pylist()
    assert sorted(reasons) == ["q_idx equals pos_idx", "q_idx or pos_idx outside [0, 300)"]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"val_hit_rate_at_10", "val_mrr"} <= set(history[0])  # the metric_keys spelling
    assert not (run / "checkpoints" / "model").exists() or not any((run / "checkpoints" / "model").iterdir())
    weights, config = load_weights_npz(out)
    emb = embed_all(weights, config, features, nb)  # numpy, layer-wise
    import keras

    model = keras.saving.load_model(out / "model.keras")
    nodes = np.arange(len(features), dtype=np.int32)
    np.testing.assert_allclose(embed_nodes(model, nodes, nb, features), emb, atol=1e-5)
