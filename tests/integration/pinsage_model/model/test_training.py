"""PinSage training: quality against the content baseline, resume, and multi-device equivalence.

The data set is a small planted graph: 30 clusters of 10 items in 6 topics. Collections are drawn
inside one cluster (plus a random item), features carry only the topic (plus noise), and the
engagement pairs join items of the same cluster. Content features can at best find the topic
(50 items); the graph tells the cluster (10 items), so PinSage must beat the content baseline.
(The synthetic "tiny" preset is too dense for this: nearly every pair of its items shares a
collection, so neither signal separates clusters.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pinsage_model.config import ModelConfig, SamplerConfig, TrainConfig
from pinsage_model.graph.csr import CSRGraph

pytestmark = pytest.mark.slow

CLUSTERS, CLUSTER_SIZE, TOPICS = 30, 10, 6
SAMPLER = SamplerConfig(
    num_walks=60, walk_length=4, restart_prob=0.5, top_t=10, hard_negative_band=(0.034, 0.2), hard_negative_walks=100
)
MODEL = ModelConfig(num_layers=2, hidden_dim=32, output_dim=16, pooling="importance", id_embedding_dim=0)
TRAIN = TrainConfig(
    loss="max_margin",
    epochs=7,
    batch_size=64,
    base_lr=0.2,
    num_negatives=64,
    max_hard_negatives=2,
    producer_threads=2,
    queue_size=4,
    early_stopping_patience=3,
    validation_pairs=1000,
    # the item->item model alone (the planted data has no users); the user term is tested in
    # tests/unit/pinsage_model/model/test_users.py and through the stages in test_user_head_pipeline
    user_loss_weight=0.0,
)


def planted(seed: int):
    """(graph, features, neighbourhoods, train pairs, validation pairs) of the planted data set."""
    from pinsage_model.graph.sampler import compute_neighbourhoods

    rng = np.random.default_rng(seed)
    n = CLUSTERS * CLUSTER_SIZE
    cluster = np.arange(n) // CLUSTER_SIZE
    topic = cluster % TOPICS
    items, colls = [], []
    for c in range(n):  # 300 collections of 6 items
        members = rng.choice(np.flatnonzero(cluster == rng.integers(CLUSTERS)), 5, replace=False)
        for i in [*members, rng.integers(n)]:
            items.append(i)
            colls.append(c)
    graph = CSRGraph.from_edges(np.array(items), np.array(colls), n, n).validate()
    centroids = rng.normal(size=(TOPICS, 16))
    features = (centroids[topic] + rng.normal(size=(n, 16))).astype(np.float32)
    nb = compute_neighbourhoods(graph, SAMPLER.replace(seed=seed), progress=False)
    q = np.repeat(np.arange(n), 4)
    p = (cluster[q] * CLUSTER_SIZE + rng.integers(0, CLUSTER_SIZE, len(q))).astype(np.int32)
    keep = p != q
    q, p = q[keep].astype(np.int32), p[keep]
    perm = rng.permutation(len(q))
    val, tr = perm[: len(q) // 5], perm[len(q) // 5 :]
    return graph, features, nb, (q[tr], p[tr]), (q[val], p[val])


def train_data(seed: int):
    from pinsage_model.model.training import TrainData

    graph, features, nb, (tq, tp), (vq, vp) = planted(seed)
    return TrainData(features, nb, graph, tq, tp, vq, vp)


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


def model_run_dir(tmp_path, seed: int):
    """A run directory holding the model stage's inputs, with two bad pair rows to quarantine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    graph, features, nb, (tq, tp), (vq, vp) = planted(seed)
    run = tmp_path / "run"
    (run / "graph").mkdir(parents=True)
    (run / "features").mkdir()
    (run / "neighbourhoods").mkdir()
    graph.save(run / "graph" / "train_graph.npz")
    graph.save(run / "graph" / "graph.npz")  # the user term's users: every collection, no times
    np.save(run / "graph" / "collection_recency.npy", np.zeros(len(graph.coll_indices), np.int64))
    np.save(run / "features" / "features.npy", features)
    (run / "features" / "feature_names.json").write_text(
        json.dumps({"id_embedding_dim": 0, "items_without_features": 0})
    )
    nb.save(run / "neighbourhoods" / "train.npz")
    nb.save(run / "neighbourhoods" / "full.npz")  # validation embeds with full-graph neighbourhoods
    n_tr, n_val = len(tq), len(vq)
    q = np.concatenate([tq, vq, [0, 5000]]).astype(np.int32)  # two bad rows: q == pos, out of range
    p = np.concatenate([tp, vp, [0, 1]]).astype(np.int32)
    split = ["train"] * n_tr + ["validation"] * n_val + ["train", "train"]
    pq.write_table(
        pa.table(
            {
                "q_idx": pa.array(q, pa.int32()),
                "pos_idx": pa.array(p, pa.int32()),
                "count": pa.array(np.ones(len(q), np.int64)),
                "split": pa.array(split),
                "in_train_graph": pa.array(np.ones(len(q), bool)),
            }
        ),
        run / "graph" / "pairs_indexed.parquet",
    )
    return run, features, nb, n_tr, n_val


def test_model_stage_writes_contract_outputs_that_inference_reproduces(tmp_path):
    """The component end to end on a run dir; numpy layer-wise inference equals the Keras model."""
    import pyarrow.parquet as pq

    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.config import config_from_dict
    from pinsage_model.inference.layerwise import embed_all
    from pinsage_model.model.export import load_weights_npz
    from pinsage_model.model.training import embed_nodes

    run, features, nb, n_tr, n_val = model_run_dir(tmp_path, 11)
    cfg = config_from_dict(
        {
            "model": config_to_dict_(MODEL),
            "user_head": {"enabled": False},
            "sampler": config_to_dict_(SAMPLER),
            "train": {**config_to_dict_(TRAIN), "epochs": 2, "steps_per_epoch": 3},
        }
    )
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


@pytest.mark.slow
def test_model_stage_trains_on_logical_devices_after_tensorflow_started(tmp_path):
    """As in ``pinsage run``: TensorFlow already initialised, num_devices = 2 on CPU -> fresh process."""
    import tensorflow as tf

    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.config import config_from_dict
    from pinsage_model.model.export import load_weights_npz

    tf.constant(1.0)  # initialises the runtime in this process, as the features stage does
    run, _, _, n_tr, _ = model_run_dir(tmp_path, 12)
    cfg = config_from_dict(
        {
            "model": config_to_dict_(MODEL),
            "user_head": {"enabled": False},
            "sampler": config_to_dict_(SAMPLER),
            "train": {**config_to_dict_(TRAIN), "epochs": 1, "steps_per_epoch": 2, "num_devices": 2, "batch_size": 32},
        }
    )
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
    from pinsage_model.config import config_from_dict

    monkeypatch.delenv("TF_CONFIG", raising=False)
    tf.constant(1.0)  # initialises the runtime in this process, as the features stage does
    run, _, _, n_tr, _ = model_run_dir(tmp_path, 14)
    cfg = config_from_dict(
        {
            "model": config_to_dict_(MODEL),
            "user_head": {"enabled": False},
            "sampler": config_to_dict_(SAMPLER),
            "train": {**config_to_dict_(TRAIN), "epochs": 1, "steps_per_epoch": 1, "strategy": "multi_worker"},
        }
    )
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


def config_to_dict_(section) -> dict:
    from pinsage_model.config import config_to_dict

    return config_to_dict(section)
