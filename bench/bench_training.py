"""Training throughput (issue #24): examples/s at two settings, where a step's time goes, the FLOP
bound, DGL's PinSAGE example and the code before the speed-ups, all measured in one run.

Settings:

* ``paper``: the paper's settings on the 1M-item bench graph (10M edges): T = 50 neighbours from
  200 random walks, K = 2, hidden 256, output 128, batch 512, 500 shared negatives, max-margin
  loss (``configs/bench.yaml``), F = 32 random features.
* ``ml-latest-small``: the shipped config on MovieLens (``configs/ml-latest-small.yaml``, data in
  ``../shared/data``); its upstream stages run once into ``runs/bench_mls``.

Per setting:

1. **Throughput**: :func:`pinsage_model.model.training.train` for two epochs of ``--steps`` steps
   (epoch 1 carries the one-off tracing; epoch 2 adds a hard negative per example, the
   curriculum), ``--repeats`` times; the median of epoch 2's examples/s.
2. **Breakdown** of one step on prebuilt batches: producer (one thread), host-to-device copy,
   forward (loss), backward (gradients minus forward) and update (whole step minus gradients).
3. **FLOPs** of one step counted from the batch shapes: every dense product, forward and
   backward; the sparse pooling product separately. The achieved rate (dense FLOPs over the
   step's compute time) against numpy and TensorFlow on the same shapes, and a 2048^3 sgemm.
4. **Peer** (``paper``): DGL's PinSAGE example on the same graph, features, T, K, widths and batch
   (:mod:`bench.peers.run`, its own venv from ``make bench-peers``); skipped with a note when
   that venv is missing.
5. **Before** (``--baseline REF``): the same throughput measurement with the library of git
   revision REF (a worktree under ``runs/bench_baseline``), in a subprocess; ``--history REF...``
   measures intermediate revisions the same way (``paper``), so each change's gain is measured.

For ``ml-latest-small`` the model stage itself is also timed (``--stage``): two epochs and the user
head, as ``pinsage run`` does them, for the current code and REF.

Writes ``bench/results/training_<setting>.json`` per setting (``--output FILE``: one file for all) and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"  # training_<setting>.json
CACHE = ROOT / "runs" / "bench_cache"
MLS_RUN = ROOT / "runs" / "bench_mls"
BASELINE_DIR = ROOT / "runs" / "bench_baseline"
PAPER = {"top_t": 50, "num_walks": 200, "feature_dim": 32, "batch_size": 512}


# --- data -----------------------------------------------------------------------------------------


def _graph(preset: str, seed: int):
    """The synthetic graph of ``preset`` (cached in ``runs/bench_cache``)."""
    from pinsage_model.data.synthetic import generate_graph
    from pinsage_model.graph.csr import CSRGraph

    path = CACHE / f"{preset}_graph_{seed}.npz"
    if path.exists():
        return CSRGraph.load(path, mmap=False)
    graph = generate_graph(preset, seed, progress=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    graph.save(path)
    return graph


def _pairs(graph, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(q, pos): an item with edges and a random co-member of one of its collections."""
    items = np.flatnonzero(graph.item_degree() > 0)
    q = rng.choice(items, n)
    deg = graph.item_indptr[q + 1] - graph.item_indptr[q]
    coll = graph.item_indices[graph.item_indptr[q] + (rng.random(n) * deg).astype(np.int64)]
    size = graph.coll_indptr[coll + 1] - graph.coll_indptr[coll]
    pos = graph.coll_indices[graph.coll_indptr[coll] + (rng.random(n) * size).astype(np.int64)]
    keep = pos != q
    return q[keep].astype(np.int32), pos[keep].astype(np.int32)


def paper_data(steps: int) -> tuple[Any, Any]:
    """(config, TrainData) of the ``paper`` setting; neighbourhoods cached beside the graph."""
    from pinsage_model.config import load_config
    from pinsage_model.graph.csr import Neighbourhoods
    from pinsage_model.graph.sampler import compute_neighbourhoods
    from pinsage_model.model.batches import TrainData

    cfg = load_config(ROOT / "configs" / "bench.yaml")
    sampler = cfg.sampler.replace(num_walks=PAPER["num_walks"], top_t=PAPER["top_t"])
    cfg = cfg.replace(sampler=sampler, train=cfg.train.replace(batch_size=PAPER["batch_size"]))
    graph = _graph("bench", 0)
    path = CACHE / f"bench_neighbourhoods_T{sampler.top_t}_W{sampler.num_walks}.npz"
    if path.exists():
        nb = Neighbourhoods.load(path)
    else:
        nb = compute_neighbourhoods(graph, sampler, progress=True)
        nb.save(path)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(graph.num_items, PAPER["feature_dim"])).astype(np.float32)  # (N, F)
    q, p = _pairs(graph, (steps + 1) * 2 * PAPER["batch_size"] + 200, rng)
    return cfg, TrainData(features, nb, graph, q[200:], p[200:], q[:200], p[:200])


def _mls_config_path() -> Path:
    """The shipped ml-latest-small config with the data path made absolute (subprocesses run
    from other folders)."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "ml-latest-small.yaml").read_text())
    raw["data"]["path"] = str((ROOT / raw["data"]["path"]).resolve())
    path = ROOT / "runs" / "bench_mls.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def mls_data() -> tuple[Any, Any]:
    """(config, TrainData) of ``ml-latest-small``: the stages up to neighbourhoods run once."""
    from components.stages.model import load_train_data
    from pinsage_model.config import load_config

    config = _mls_config_path()
    if not (MLS_RUN / "neighbourhoods").is_dir():
        _pinsage(["run", "--config", str(config), "--run-dir", str(MLS_RUN), "--to", "neighbourhoods"], ROOT)
    cfg = load_config(config)
    inputs = {s: MLS_RUN / s for s in ("graph", "features", "neighbourhoods")}
    quarantine = ROOT / "runs" / "bench_cache" / "mls_quarantine"
    quarantine.mkdir(parents=True, exist_ok=True)
    return cfg, load_train_data(cfg, inputs, quarantine)[0]


def _pinsage(args: list[str], cwd: Path) -> None:
    """``pinsage ARGS`` with the library of ``cwd`` (the current tree or a baseline worktree)."""
    code = f"import sys; sys.path.insert(0, {str(cwd)!r}); from components.cli import main; sys.exit(main({args!r}))"
    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True, stdout=subprocess.DEVNULL)


# --- throughput -----------------------------------------------------------------------------------


def throughput(cfg: Any, data: Any, steps: int, repeats: int, workdir: Path) -> dict:
    """Median examples/s of epoch 2 (and epoch 1, tracing included) over ``repeats`` fresh runs."""
    from pinsage_model.model.training import train

    train_cfg = cfg.train.replace(
        epochs=2,
        steps_per_epoch=steps,
        max_hard_negatives=1,
        use_hard_negatives=True,
        validation_pairs=200,
        eval_candidates=2000,
        early_stopping_patience=5,
    )
    runs = []
    for r in range(repeats):
        result = train(data, cfg.model, train_cfg, cfg.sampler, checkpoint_dir=workdir / f"r{r}", progress=False)
        runs.append({f"epoch{h['epoch']}": _epoch_figures(h) for h in result.history})
    med = {e: {k: statistics.median(r[e][k] for r in runs) for k in runs[0][e]} for e in ("epoch1", "epoch2")}
    return {"examples_per_s": med["epoch2"]["examples_per_s"], "median": med, "runs": runs, "steps": steps}


def _epoch_figures(h: dict) -> dict:
    return {
        "examples_per_s": round(h["examples_per_s"], 1),
        "step_s": round(h["step_s"], 5),
        "producer_thread_s_per_batch": round(h["producer_s_per_step"], 5),
        "compute_s_per_step": round(h["compute_s_per_step"], 5),
    }


def baseline_throughput(ref: str, setting: str, steps: int, repeats: int) -> dict:
    """:func:`throughput` with the library of git revision ``ref``, in a subprocess."""
    tree = _worktree(ref)
    out = BASELINE_DIR / f"{setting}-{ref}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--library", str(tree), "--throughput-only"]
    cmd += ["--settings", setting, "--steps", str(steps), "--repeats", str(repeats), "--output", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads(out.read_text())["settings"][setting]["throughput"]


def _worktree(ref: str) -> Path:
    tree = BASELINE_DIR / ref
    if not (tree / "pinsage_model").is_dir():
        BASELINE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree), ref], cwd=ROOT, check=True)
    return tree


def stage_timing(ref: str | None, repeats: int) -> dict:
    """The model stage on ml-latest-small (2 epochs, then the user head) as ``pinsage run`` does
    it, with the current library or that of ``ref``: medians of epoch 2's seconds and examples/s,
    of its validation pass and of the user head's seconds."""
    import yaml

    from pinsage_model.config import load_config

    tree = ROOT if ref is None else _worktree(ref)
    raw = yaml.safe_load(_mls_config_path().read_text())
    raw.setdefault("train", {})["epochs"] = 2
    config = ROOT / "runs" / "bench_mls_stage.yaml"
    config.write_text(yaml.safe_dump(raw))
    run_dir = ROOT / "runs" / ("bench_mls" if ref is None else f"bench_mls_{ref}")
    runs = []
    for _ in range(repeats):
        args = ["run", "--config", str(config), "--run-dir", str(run_dir), "--to", "model"]
        _pinsage(args + (["--from", "model", "--force"] if (run_dir / "neighbourhoods").is_dir() else []), tree)
        report = json.loads((run_dir / "model" / "report.json").read_text())
        epoch2 = report["epochs"][1]
        steps = report["train_pairs"] // load_config(config).train.batch_size
        runs.append(
            {
                "epoch2_s": epoch2["seconds"],
                # the epoch less its steps: the early-stopping validation pass and checkpointing
                "validation_s": round(epoch2["seconds"] - steps * epoch2["step_s"], 3),
                "epoch2_examples_per_s": epoch2["examples_per_s"],
                "user_head_s": (report.get("user_head") or {}).get("seconds"),
                "train_s": report["train_seconds"],
            }
        )
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]} | {"runs": runs, "ref": ref or "HEAD"}


# --- one step, taken apart ------------------------------------------------------------------------


def breakdown(cfg: Any, data: Any, profile_dir: Path, batches: int = 6) -> dict:
    """Seconds per step of producer, host->device, forward, backward, update (medians over
    prebuilt batches of epoch 2, one hard negative per example), the step's shapes and the
    op types that take its time (:func:`op_profile`, trace in ``profile_dir``)."""
    import keras
    import tensorflow as tf

    from pinsage_model.model.batches import BatchProducer
    from pinsage_model.model.layers import build_model
    from pinsage_model.model.training import per_example_loss

    train_cfg = cfg.train.replace(steps_per_epoch=batches, max_hard_negatives=1, use_hard_negatives=True)
    producer = BatchProducer(data, cfg.model.num_layers, train_cfg, cfg.sampler)
    order = producer.epoch_order(2)
    produced, producer_s = [], []
    for s in range(batches):
        t0 = time.perf_counter()
        produced.append(producer.make(2, s, order)["shards"][0])
        producer_s.append(time.perf_counter() - t0)
    model = build_model(cfg.model, data.features.shape[1], data.num_items, data.id_embedding_dim)
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    loss_of = per_example_loss(train_cfg, model.shift_queries)
    batch = float(producer.batch_size)
    spec = {k: tf.TensorSpec([None] * v.ndim, tf.as_dtype(v.dtype)) for k, v in produced[0].items()}

    @tf.function(input_signature=[spec])
    def forward(x):
        return tf.reduce_sum(loss_of(model(x, training=True), x)) / batch

    @tf.function(input_signature=[spec])
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(loss_of(model(x, training=True), x)) / batch
        return tape.gradient(loss, model.trainable_variables)

    @tf.function(input_signature=[spec])
    def step(x):
        grads = gradients(x)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return grads[0]

    h2d, fwd, grad, full = [], [], [], []
    for i, arrays in enumerate(produced):
        t0 = time.perf_counter()
        x = {k: tf.constant(v) for k, v in arrays.items()}
        h2d.append(time.perf_counter() - t0)
        for fn, acc in ((forward, fwd), (gradients, grad), (step, full)):
            t0 = time.perf_counter()
            fn(x)  # a function call on the CPU returns once every output is computed
            if i:  # the first batch traces
                acc.append(time.perf_counter() - t0)
    med = statistics.median
    parts = {
        "producer_thread_s": med(producer_s[1:]),
        "host_to_device_s": med(h2d),
        "forward_s": med(fwd),
        "backward_s": max(0.0, med(grad) - med(fwd)),
        "update_s": max(0.0, med(full) - med(grad)),
        "compute_s": med(full),
    }
    profile = op_profile(step, [{k: tf.constant(v) for k, v in a.items()} for a in produced[1:4]], profile_dir)
    last = produced[-1]
    shapes = {
        "n": [int(last["node_ids"].shape[0])]
        + [int(last[f"index_{k}"].shape[0]) for k in range(1, cfg.model.num_layers + 1)],
        "T": int(last["index_1"].shape[1]),
        "F": int(data.features.shape[1]),
        "e": int(data.id_embedding_dim),
        # fed as their non-zero entries (pinsage_model.model.minibatch.SPARSE_MAX_DENSITY)
        "nnz": int(last["feature_values"].shape[0]) if "feature_values" in last else None,
        "b": int(last["q_pos"].shape[0]),
        "negatives": int(last["n_pos"].shape[0]),
        "hard": int(last["h_pos"].shape[1]),
    }
    return {"seconds": {k: round(v, 5) for k, v in parts.items()}, "shapes": shapes, "op_profile": profile}


def op_profile(step: Any, inputs: list[dict], logdir: Path) -> list[dict]:
    """TensorFlow profiler trace of ``step`` over ``inputs``; the op types by time per step.

    Reads the trace's host plane directly (``xplane.pb``: TraceMe events named ``name:OpType``),
    so no TensorBoard plugin is needed; the trace itself stays in ``logdir`` for TensorBoard.
    """
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.profiler.experimental.start(str(logdir))
    for x in inputs:
        step(x)
    tf.profiler.experimental.stop()
    totals: dict[str, float] = {}
    for path in sorted(logdir.rglob("*.xplane.pb"))[-1:]:
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            names = {k: v.name for k, v in plane.event_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    op = name.rsplit(":", 1)[-1].strip()
                    # executor and function-call events enclose the ops: not op time of their own
                    if ":" in name and op not in _NOT_OPS and not op.startswith("__inference"):
                        totals[op] = totals.get(op, 0.0) + event.duration_ps / 1e12
    per_step = sorted(((v / len(inputs), k) for k, v in totals.items()), reverse=True)
    return [{"op": k, "s_per_step": round(v, 5)} for v, k in per_step]


_NOT_OPS = ("Process", "Run", "EagerExecute", "EagerLocalExecute")


def dense_op_seconds(profile: list[dict]) -> float:
    """Seconds per step the profile spent in dense products (every MatMul kind, not the sparse one)."""
    return sum(o["s_per_step"] for o in profile if "MatMul" in o["op"] and not o["op"].startswith("SparseMatrix"))


def dense_products(shapes: dict, model_cfg: Any, in_batch: bool) -> list[tuple[str, int, int, int]]:
    """Every dense product of one step, forward and backward, as (name, M, K, N) of an
    (M, K) @ (K, N) product, as :class:`pinsage_model.model.layers.PinSageConv` forms them. The
    sparse products (pooling; the first layer's sparse features) are counted by :func:`sparse_flops`.

    ``shapes``: ``n`` (n_0 .. n_K), ``T``, ``F`` feature columns, ``e`` id-embedding width,
    ``nnz`` non-zero feature entries of S^(0) (None: the features are fed dense), ``b``,
    ``negatives``, ``hard``."""
    n, f, e, m, d = shapes["n"], shapes["F"], shapes["e"], model_cfg.hidden_dim, model_cfg.output_dim
    out: list[tuple[str, int, int, int]] = []

    def product(name: str, rows: int, inner: int, cols: int, input_grad: bool = True) -> None:
        out.append((f"{name} fwd", rows, inner, cols))
        out.append((f"{name} dW", inner, rows, cols))
        if input_grad:
            out.append((f"{name} dX", rows, cols, inner))

    for k in range(1, len(n)):
        # [h, 1] @ [Q; q] and h_self @ W_self; the first layer's features get no input gradient
        if k > 1 or shapes["nnz"] is None:
            product(f"conv{k} projection", n[k - 1], (f if k == 1 else d) + 1, m, k > 1)
            product(f"conv{k} W self", n[k], f if k == 1 else d, d, k > 1)
        if k == 1 and e:
            product("conv1 projection ids", n[0], e, m)
            product("conv1 W ids", n[1], e, d)
        product(f"conv{k} W pooled", n[k], m, d)
    product("head G1", n[-1], d, d)
    product("head G2", n[-1], d, d)
    b, neg, h = shapes["b"], shapes["negatives"], shapes["hard"]
    product("scores shared negatives", b, d, neg)
    if in_batch:
        product("scores in-batch", b, d, b)
    if h:
        out += [("scores hard fwd", b * h, d, 1), ("scores hard dq", b, h, d), ("scores hard dhard", b * h, 1, d)]
    return out


def sparse_flops(shapes: dict, model_cfg: Any) -> int:
    """Multiply-adds x 2 of the sparse products: pooling A @ P and its transpose per layer, and
    with sparse features the first layer's [h Q | h W] and its transpose (for dQ, dW)."""
    n, t, m, d = shapes["n"], shapes["T"], model_cfg.hidden_dim, model_cfg.output_dim
    pooling = sum(2 * 2 * n[k] * t * m for k in range(1, len(n)))
    return pooling + (0 if shapes["nnz"] is None else 2 * 2 * shapes["nnz"] * (m + d))


def product_rates(products: list[tuple[str, int, int, int]], repeats: int = 3) -> dict:
    """Seconds of the step's dense products in numpy and TensorFlow (same shapes, float32)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    seconds = {"numpy": 0.0, "tensorflow": 0.0}
    for _, rows, inner, cols in products:
        a = rng.standard_normal((rows, inner), dtype=np.float32)
        b = rng.standard_normal((inner, cols), dtype=np.float32)
        ta, tb = tf.constant(a), tf.constant(b)
        matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(ta, tb)))
        matmul()
        np.matmul(a, b)
        seconds["numpy"] += _best(lambda: np.matmul(a, b), repeats)
        seconds["tensorflow"] += _best(lambda: matmul().numpy(), repeats)
    return seconds


def sgemm_2048(repeats: int = 3) -> dict:
    """GFLOP/s of a 2048^3 float32 product in numpy and TensorFlow."""
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    ta = tf.constant(a)
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(ta, ta)))
    matmul()
    flops = 2 * 2048**3
    return {
        "numpy_gflops": round(flops / _best(lambda: a @ a, repeats) / 1e9, 1),
        "tensorflow_gflops": round(flops / _best(lambda: matmul().numpy(), repeats) / 1e9, 1),
    }


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def flop_bound(cfg: Any, data: Any, parts: dict) -> dict:
    """FLOPs of one step and the achieved rate against numpy and TensorFlow on the same shapes."""
    from pinsage_model.model.batches import in_batch_negatives

    products = dense_products(parts["shapes"], cfg.model, in_batch_negatives(cfg.train))
    dense = sum(2 * r * k * c for _, r, k, c in products)
    seconds = product_rates(products)
    compute = parts["seconds"]["compute_s"]
    achieved = dense / compute / 1e9
    numpy_rate = dense / seconds["numpy"] / 1e9
    in_step = dense_op_seconds(parts["op_profile"])
    return {
        # the step's own product ops (profiler time) against numpy on the same shapes
        "step_dense_products_s": round(in_step, 5),
        "step_dense_products_gflops": round(dense / in_step / 1e9, 1) if in_step else None,
        "step_dense_products_over_numpy": round(seconds["numpy"] / in_step, 3) if in_step else None,
        "dense_gflop_per_step": round(dense / 1e9, 3),
        "sparse_gflop_per_step": round(sparse_flops(parts["shapes"], cfg.model) / 1e9, 3),
        "numpy_same_shapes_s": round(seconds["numpy"], 5),
        "tensorflow_same_shapes_s": round(seconds["tensorflow"], 5),
        "numpy_same_shapes_gflops": round(numpy_rate, 1),
        "tensorflow_same_shapes_gflops": round(dense / seconds["tensorflow"] / 1e9, 1),
        "step_achieved_gflops": round(achieved, 1),
        "step_over_numpy_rate": round(achieved / numpy_rate, 3),
        "products": [{"name": n, "shape": [r, k, c]} for n, r, k, c in products],
    }


# --- driver ---------------------------------------------------------------------------------------


def measure(setting: str, args: argparse.Namespace) -> dict:
    cfg, data = paper_data(args.steps) if setting == "paper" else mls_data()
    workdir = ROOT / "runs" / "bench_training" / setting
    out: dict[str, Any] = {"items": int(data.num_items), "train_pairs": int(len(data.train_q))}
    out["throughput"] = throughput(cfg, data, args.steps, args.repeats, workdir)
    if args.throughput_only:
        return out
    out["breakdown"] = breakdown(cfg, data, workdir / "profile")
    out["flops"] = flop_bound(cfg, data, out["breakdown"])
    if args.baseline and setting == "paper":  # ml-latest-small's before/after is the stage's (below)
        base = baseline_throughput(args.baseline, setting, args.steps, args.repeats)
        out["baseline"] = {"ref": args.baseline, **base}
        out["speedup"] = round(out["throughput"]["examples_per_s"] / base["examples_per_s"], 2)
    if setting == "paper" and args.history:
        out["history"] = [
            {"ref": ref, **baseline_throughput(ref, setting, args.steps, args.repeats)} for ref in args.history
        ]
    if setting == "paper" and not args.no_peer:
        out["peer"] = _peer(args)
        if "examples_per_s" in out["peer"]:
            out["over_peer"] = round(out["throughput"]["examples_per_s"] / out["peer"]["examples_per_s"], 2)
    if setting == "ml-latest-small" and args.stage:
        out["stage"] = {"current": stage_timing(None, args.repeats)}
        if args.baseline:
            base = stage_timing(args.baseline, args.repeats)
            out["stage"]["baseline"] = base
            current = out["stage"]["current"]
            out["stage"]["epoch_speedup"] = round(base["epoch2_s"] / current["epoch2_s"], 2)
            out["speedup"] = round(current["epoch2_examples_per_s"] / base["epoch2_examples_per_s"], 2)
            out["stage"]["validation_speedup"] = round(base["validation_s"] / current["validation_s"], 2)
            if base["user_head_s"] and current["user_head_s"]:
                out["stage"]["user_head_speedup"] = round(base["user_head_s"] / current["user_head_s"], 2)
    return out


def _peer(args: argparse.Namespace) -> dict:
    from bench.peers.run import measure_peer

    path = ROOT / "runs" / "bench_training" / "peer_dgl.json"
    try:
        report = measure_peer("bench", path)
    except FileNotFoundError as exc:
        return {"skipped": str(exc)}
    return {"examples_per_s": report["median"]["examples_per_s"], "median": report["median"], "peer": report["peer"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = ["paper", "ml-latest-small"]
    parser.add_argument("--settings", nargs="*", default=names, choices=names)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch of the throughput runs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (medians are quoted)")
    parser.add_argument("--baseline", default=None, help="git revision measured beside the current code")
    parser.add_argument("--stage", action="store_true", help="also time the model stage on ml-latest-small")
    parser.add_argument(
        "--history", nargs="*", default=[], help="revisions between --baseline and now, each measured (paper) as it was"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip DGL's PinSAGE example")
    parser.add_argument("--quick", action="store_true", help="smoke run: ml-latest-small, 5 steps, 1 repeat")
    parser.add_argument("--throughput-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library", default=None, help=argparse.SUPPRESS)  # a baseline worktree's root
    parser.add_argument("--output", default="", help="one JSON file for every setting (default: one per setting)")
    args = parser.parse_args(argv)
    if args.quick:
        args.settings, args.steps, args.repeats, args.no_peer = ["ml-latest-small"], 5, 1, True
    if args.library:
        sys.path.insert(0, args.library)  # its pinsage_model shadows the installed one
    results = {
        "benchmark": "training",
        "date": time.strftime("%Y-%m-%d"),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "args": {k: v for k, v in vars(args).items() if k not in ("output", "library")},
        "settings": {s: measure(s, args) for s in args.settings},
    }
    if not args.throughput_only:
        results["sgemm_2048"] = sgemm_2048()
        results["machine"]["load_average_after"] = list(os.getloadavg())
    if args.output:
        outputs = {Path(args.output): results}
    else:  # one file per setting, each with the run's machine and sgemm, so a setting reruns alone
        per = results["settings"].items()
        outputs = {RESULTS / f"training_{s}.json": results | {"settings": {s: r}} for s, r in per}
    for path, body in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2) + "\n")
    if not args.throughput_only:
        _print(results)
    return 0


def _print(results: dict) -> None:
    head = f"{'ex/s':>8} {'before':>8} {'x':>5} {'DGL':>7} {'x':>5}  {'step s':>7} {'GFLOP/s':>8} {'numpy':>6}"
    print(f"\n{'setting':16} {head}")
    for name, r in results["settings"].items():
        base = r.get("baseline", {}).get("examples_per_s", float("nan"))
        if "stage" in r and "baseline" in r["stage"]:
            base = r["stage"]["baseline"]["epoch2_examples_per_s"]
        peer = r.get("peer", {}).get("examples_per_s", float("nan"))
        print(
            f"{name:16} {r['throughput']['examples_per_s']:8.0f} {base:8.0f} {r.get('speedup', float('nan')):5.2f} "
            f"{peer:7.1f} {r.get('over_peer', float('nan')):5.1f}  {r['breakdown']['seconds']['compute_s']:7.3f} "
            f"{r['flops']['step_achieved_gflops']:8.1f} {r['flops']['step_over_numpy_rate']:6.2f}"
        )
        print("   breakdown:", ", ".join(f"{k} {v:.4f}" for k, v in r["breakdown"]["seconds"].items()))
        print("   ops:", ", ".join(f"{o['op']} {o['s_per_step']:.4f}" for o in r["breakdown"]["op_profile"][:8]))
        f = r["flops"]
        print(
            f"   dense products: {f['dense_gflop_per_step']} GFLOP/step; in the step's MatMul ops "
            f"{f['step_dense_products_gflops']} GFLOP/s = {f['step_dense_products_over_numpy']} x numpy's "
            f"{f['numpy_same_shapes_gflops']} on the same shapes; over the whole step {f['step_achieved_gflops']} "
            f"({f['step_over_numpy_rate']} x); sparse pooling {f['sparse_gflop_per_step']} GFLOP/step"
        )
        if "stage" in r:
            print("   model stage:", json.dumps({k: v for k, v in r["stage"].items() if k != "runs"}))
    print(f"2048^3 sgemm: {results['sgemm_2048']}")


if __name__ == "__main__":
    sys.exit(main())
