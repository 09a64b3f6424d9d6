"""PinSage training on several devices and workers takes the same steps as one process
(mirrored logical CPU devices, MultiWorkerMirroredStrategy over localhost), with the user term
off and on; the planted data set is ``planted_training``'s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from planted_training import MODEL, SAMPLER, TRAIN, config_to_dict_, model_run_dir, planted, stage_config

pytestmark = pytest.mark.slow


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from pinsage_model.model.training import configure_devices
    configure_devices(2)  # before TensorFlow initialises
    from pinsage_model.config import ModelConfig, SamplerConfig, TrainConfig
    from pinsage_model.graph.csr import CSRGraph, Neighbourhoods
    from pinsage_model.model.training import TrainData, train
    d = dict(np.load(sys.argv[1]))
    graph = CSRGraph(d["item_indptr"], d["item_indices"], d["coll_indptr"], d["coll_indices"])
    nbhd = Neighbourhoods(d["indices"], d["weights"])
    cfg = TrainConfig(**json.loads(sys.argv[2]))
    users = None
    if cfg.user_loss_weight > 0:  # every collection a training user; no times
        from pinsage_model.model.users import UserRows
        users = UserRows.from_graph(graph, np.zeros(len(d["coll_indices"])), np.arange(len(d["coll_indptr"]) - 1))
    data = TrainData(d["features"], nbhd, graph, d["tq"], d["tp"], d["vq"], d["vp"], users=users)
    model, sampler = ModelConfig(**json.loads(sys.argv[3])), SamplerConfig(**json.loads(sys.argv[4]))
    out = {}
    for devices in (1, 2):
        ckpt = sys.argv[5] + str(devices)
        r = train(data, model, cfg.replace(num_devices=devices), sampler, checkpoint_dir=ckpt, progress=False)
        out[devices] = r.step_losses
    print("LOSSES" + json.dumps(out))
    """
)


@pytest.mark.parametrize("user_loss_weight", [0.0, 1.0], ids=["items", "items+users"])
def test_two_logical_cpu_devices_match_one_device(tmp_path, user_loss_weight):
    """Two mirrored replicas take the same steps as one, with the user term off and on (each
    replica then scores its share of the step's users)."""
    from pinsage_model.config import config_to_dict

    graph, features, nb, (tq, tp), (vq, vp) = planted(7)
    np.savez(
        tmp_path / "data.npz",
        features=features,
        indices=nb.indices,
        weights=nb.weights,
        tq=tq,
        tp=tp,
        vq=vq,
        vp=vp,
        item_indptr=graph.item_indptr,
        item_indices=graph.item_indices,
        coll_indptr=graph.coll_indptr,
        coll_indices=graph.coll_indices,
    )
    cfg = TRAIN.replace(epochs=2, steps_per_epoch=2, seed=7, validation_pairs=50, user_loss_weight=user_loss_weight)
    # section seeds are left out of dumps (they derive from the top-level seed): pass them on
    args = [json.dumps(config_to_dict(cfg) | {"seed": cfg.seed}), json.dumps(config_to_dict(MODEL))]
    args.append(json.dumps(config_to_dict(SAMPLER) | {"seed": SAMPLER.seed}))
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "data.npz"), *args, str(tmp_path / "ck")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LOSSES"))
    losses = json.loads(line[len("LOSSES") :])
    one, two = losses["1"], losses["2"]
    assert len(one) == len(two) == 4  # two epochs of two steps; epoch 2 has hard negatives
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_model_stage_trains_on_logical_devices_after_tensorflow_started(tmp_path):
    """As in ``pinsage run``: TensorFlow already initialised, num_devices = 2 on CPU -> fresh process."""
    import tensorflow as tf

    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.model.export import load_weights_npz

    tf.constant(1.0)  # initialises the runtime in this process, as the features stage does
    run, _, _, n_tr, _ = model_run_dir(tmp_path, 12)
    cfg = stage_config(epochs=1, steps_per_epoch=2, num_devices=2, batch_size=32)
    stage = get_stage("model")
    ctx = StageContext.for_run_dir(run, "2026-01-12T00:00:00Z")
    report = execute(stage, cfg, {name: run / name for name in stage.inputs}, run / "model", ctx)
    assert report["fresh_process"] and report["num_devices"] == 2
    assert report["train_pairs"] == n_tr and report["epochs_run"] == 1
    weights, config = load_weights_npz(run / "model")
    assert config["output_dim"] == MODEL.output_dim and np.all(np.isfinite(weights["conv1/Q"]))


def test_multi_worker_stage_after_tensorflow_started_trains_alone_in_a_fresh_process(tmp_path, monkeypatch):
    """As ``pinsage run`` with train.strategy multi_worker and no TF_CONFIG: TensorFlow is
    already running here, so the stage trains in a fresh process, as a cluster of one worker."""
    import tensorflow as tf

    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage

    monkeypatch.delenv("TF_CONFIG", raising=False)
    tf.constant(1.0)  # initialises the runtime in this process, as the features stage does
    run, _, _, n_tr, _ = model_run_dir(tmp_path, 14)
    cfg = stage_config(epochs=1, steps_per_epoch=1, strategy="multi_worker")
    stage = get_stage("model")
    report = execute(
        stage,
        cfg,
        {name: run / name for name in stage.inputs},
        run / "model",
        StageContext.for_run_dir(run, "2026-01-12T00:00:00Z"),
    )
    assert report["fresh_process"] and report["strategy"] == "multi_worker" and report["workers"] == 1
    assert report["train_pairs"] == n_tr and (run / "model" / "weights.npz").exists()


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 (held open together while chosen)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("user_loss_weight", [0.0, 1.0], ids=["items", "items+users"])
def test_two_workers_on_localhost_match_one_process(tmp_path, user_loss_weight):
    """``train.strategy: multi_worker``: the model stage's CLI in two worker processes
    (MultiWorkerMirroredStrategy over gRPC on 127.0.0.1, CPU only, one replica each) takes the
    same steps as one process on the same global batch of 64: equal loss and updated weights,
    with the user term off and on. Two epochs of one step each, so the second step has a hard
    negative per example. Only the chief writes the stage's outputs."""
    import os
    import subprocess

    import yaml

    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.config import config_from_dict
    from pinsage_model.model.export import load_weights_npz

    train = {
        **config_to_dict_(TRAIN),
        "epochs": 2,
        "steps_per_epoch": 1,
        "deterministic": True,
        "validation_pairs": 50,
        "user_loss_weight": user_loss_weight,
    }
    raw = {
        "model": config_to_dict_(MODEL),
        "sampler": config_to_dict_(SAMPLER),
        "train": train,
        "user_head": {"enabled": False},
    }
    multi = {**raw, "train": {**train, "strategy": "multi_worker"}}

    one, *_ = model_run_dir(tmp_path / "one", 13)
    stage = get_stage("model")
    execute(
        stage,
        config_from_dict(raw),
        {n: one / n for n in stage.inputs},
        one / "model",
        StageContext.for_run_dir(one, "2026-01-12T00:00:00Z"),
    )

    run, *_ = model_run_dir(tmp_path / "two", 13)
    conf = tmp_path / "multi.yaml"
    conf.write_text(yaml.safe_dump(multi))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs, logs = [], []
    try:
        for index in range(2):
            env = {
                **os.environ,
                "CUDA_VISIBLE_DEVICES": "-1",
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            }
            out, err = (
                open(tmp_path / f"worker{index}.{k}", "w") for k in ("out", "err")
            )  # files: pipes could fill and stall a worker
            logs.append((out, err))
            cwd = tmp_path / f"worker{index}"
            cwd.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "components.stages.model",
                        "--config",
                        str(conf),
                        "--run-dir",
                        str(run),
                        "--logical-time",
                        "2026-01-12T00:00:00Z",
                    ],
                    cwd=cwd,
                    env=env,
                    stdout=out,
                    stderr=err,
                )
            )
        codes = [p.wait(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for out, err in logs:
            out.close(), err.close()
    errors = [(tmp_path / f"worker{i}.err").read_text()[-3000:] for i in range(2)]
    assert codes == [0, 0], errors
    chief, helper = (json.loads((tmp_path / f"worker{i}.out").read_text()) for i in range(2))
    assert chief["workers"] == helper["workers"] == 2 and chief["strategy"] == "multi_worker"
    assert "wrote_outputs" not in chief and helper["wrote_outputs"] is False
    assert json.loads((run / "model" / "report.json").read_text())["workers"] == 2  # the chief's
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temp folder left beside it

    h_one, h_two = (json.loads((d / "model" / "history.json").read_text()) for d in (one, run))
    assert [h["hard_negatives"] for h in h_one] == [h["hard_negatives"] for h in h_two] == [0, 1]
    assert h_one[0]["learning_rate"] > 0  # a real update
    np.testing.assert_allclose([h["loss_first"] for h in h_two], [h["loss_first"] for h in h_one], rtol=0, atol=1e-5)
    (w_one, c_one), (w_two, c_two) = load_weights_npz(one / "model"), load_weights_npz(run / "model")
    assert c_one == c_two and set(w_one) == set(w_two)
    for key in w_one:
        np.testing.assert_allclose(w_two[key], w_one[key], rtol=0, atol=1e-5, err_msg=key)
