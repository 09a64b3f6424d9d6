"""DGL's PinSAGE example, trained on our benchmark bundle, timed step by step (peer of issue #24).

Runs in the peer environment (``.venv-peers``: PyTorch CPU + DGL, ``make bench-peers``), never in
the project's venv; it imports nothing of the project. Usage::

    .venv-peers/bin/python bench/peers/dgl_pinsage.py --bundle runs/peers/demo --output out.json

What it reproduces. The model, sampler and training step follow DGL's official example
``examples/pytorch/pinsage`` (``model.py``, ``layers.py``, ``sampler.py``; Copyright the DGL
team, Apache License 2.0), re-implemented here on the same DGL calls:

* batches: (head, tail) item pairs and one uniform random negative tail per pair
  (``ItemToItemBatchSampler``); here the pairs are the bundle's (ours: an item and a co-member of
  one of its collections, which is what the example's item -> user -> item walk draws);
* neighbourhoods: one ``dgl.sampling.PinSAGESampler`` per layer, sampled online for every batch;
  edges between a head and its tail or negative are removed from the frontier, which is compacted
  into a block with its ``weights`` (``NeighborSampler``, ``compact_and_copy``);
* model: a linear projection of the item features, K ``WeightedSAGEConv`` layers (dropout 0.5,
  weighted mean of ReLU(Q h) over neighbours, ReLU(W [n, h]), L2 normalisation), the projection
  added back, and ``ItemToItemScorer`` (dot product plus a learned bias per item);
* loss: hinge ``max(0, s_neg - s_pos + 1)``, mean; Adam (the example's lr 3e-5);
* producer: ``torch.utils.data.DataLoader`` over the batch sampler with the sampling as its
  ``collate_fn`` and ``--num-workers`` worker processes (the example's default is 0: sampling
  then runs in the training loop).

Collections play the example's "user" role. The example's widths are one ``hidden_dims`` for
every layer; here the projection and every layer's output are d = ``output_dim`` (the projection
is added to the last layer's output, so they must agree) and every layer pools in
m = ``hidden_dim``: WeightedSAGEConv(d, m, d), as our layers have Q: F_k -> m, W: F_k + m -> d.
The item features are one dense feature (the example's projector is then a single Linear); the
example's learned id embeddings and text features are left out, as our benchmark has none.

Environment. dgl 2.1.0, the newest DGL on PyPI for Linux, ships its graphbolt and tensoradapter
libraries only for torch 2.0.0-2.2.1, and torch 2.13.0 is the CPU build this machine has.
``dgl.distributed`` imports ``dgl.graphbolt`` eagerly, which then fails to find
``libgraphbolt_pytorch_2.13.0.so``; the example uses nothing of graphbolt (it is DGL's newer
sampling stack), so :func:`import_dgl` registers an empty module in its place. Without a
tensoradapter for this torch DGL logs "Memory optimization with PyTorch is not enabled" and
allocates its own output arrays (handed to torch by DLPack). ``dgl.utils`` also imports
``setuptools.extern.packaging``, which setuptools >= 71 no longer has; it is mapped to
``packaging``.

Timing: ``torch.set_num_threads(threads)``; ``warmup_steps`` untimed steps, then ``repeats``
windows of ``steps`` steps; per window examples/s = batch_size * steps / wall, and per step the
producer's time (sampling, in the worker process or the loop), the wait for a batch, and the
compute (forward, backward, update). The JSON reports every window and the medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

ITEM, COLL = "item", "coll"
ITEM_TO_COLL, COLL_TO_ITEM = "in", "contains"


def import_dgl() -> types.ModuleType:
    """Import dgl 2.1.0 beside a torch it has no graphbolt build for (see the module docstring)."""
    spec = importlib.util.find_spec("dgl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dgl is not installed in this environment; run `make bench-peers`")
    root = Path(list(spec.submodule_search_locations)[0])
    version = torch.__version__.split("+", maxsplit=1)[0]
    if not (root / "graphbolt" / f"libgraphbolt_pytorch_{version}.so").exists():
        sys.modules["dgl.graphbolt"] = types.ModuleType("dgl.graphbolt", "placeholder: no graphbolt for this torch")
    try:
        import setuptools.extern.packaging  # noqa: F401
    except ImportError:
        import packaging
        import packaging.version

        extern = types.ModuleType("setuptools.extern")
        extern.packaging = packaging  # type: ignore[attr-defined]
        sys.modules["setuptools.extern"] = extern
        sys.modules["setuptools.extern.packaging"] = packaging
    import dgl

    return dgl


dgl = import_dgl()
fn = dgl.function  # DGL's built-in message and reduce functions


# --------------------------------------------------------------------------------------------
# Sampling (the example's sampler.py)


class PairBatches(IterableDataset):
    """Endless (heads, tails, negative tails) batches: the bundle's pairs in order, cycled, and
    uniform random negatives. With several DataLoader workers, worker w takes batches w, w + W, ..."""

    def __init__(self, q: torch.Tensor, pos: torch.Tensor, num_items: int, batch_size: int):
        self.q, self.pos, self.num_items, self.batch_size = q, pos, num_items, batch_size

    def __iter__(self):
        info = get_worker_info()
        b, stride = (info.id, info.num_workers) if info is not None else (0, 1)
        n = len(self.q)
        while True:
            rows = (torch.arange(b * self.batch_size, (b + 1) * self.batch_size) % n).long()
            heads, tails = self.q[rows], self.pos[rows]
            negs = torch.randint(0, self.num_items, (self.batch_size,))
            yield heads, tails, negs
            b += stride


class BlockSampler:
    """K PinSAGE neighbourhood samplers, one per layer, and the pair graphs of a batch."""

    def __init__(self, g, settings: dict):
        self.g = g
        self.num_items = g.num_nodes(ITEM)
        self.samplers = [
            dgl.sampling.PinSAGESampler(
                g,
                ITEM,
                COLL,
                settings["walk_length"],  # traversals item -> collection -> item per walk
                settings["restart_prob"],  # termination probability after each traversal
                settings["num_walks"],
                settings["top_t"],
            )
            for _ in range(settings["num_layers"])
        ]

    def blocks(self, seeds: torch.Tensor, heads: torch.Tensor, tails: torch.Tensor, negs: torch.Tensor) -> list:
        """Blocks from the input layer to the output layer; the output nodes are ``seeds``."""
        blocks: list = []
        for sampler in self.samplers:
            frontier = sampler(seeds)
            # The example drops the edges that join a pair, so a head does not pool its own target.
            eids = frontier.edge_ids(torch.cat([heads, heads]), torch.cat([tails, negs]), return_uv=True)[2]
            if len(eids) > 0:
                frontier = dgl.remove_edges(frontier, eids)
            block = dgl.to_block(frontier, seeds)
            block.edata["weights"] = frontier.edata["weights"][block.edata[dgl.EID]]
            seeds = block.srcdata[dgl.NID]
            blocks.insert(0, block)
        return blocks

    def __call__(self, batch: list) -> tuple:
        """DataLoader ``collate_fn``: (pos_graph, neg_graph, blocks, stats) of one batch."""
        t0 = time.perf_counter()
        heads, tails, negs = batch[0]
        pos_graph = dgl.graph((heads, tails), num_nodes=self.num_items)
        neg_graph = dgl.graph((heads, negs), num_nodes=self.num_items)
        pos_graph, neg_graph = dgl.compact_graphs([pos_graph, neg_graph])
        blocks = self.blocks(pos_graph.ndata[dgl.NID], heads, tails, negs)
        features = self.g.nodes[ITEM].data["feat"]
        blocks[0].srcdata["feat"] = features[blocks[0].srcdata[dgl.NID]]
        blocks[-1].dstdata["feat"] = features[blocks[-1].dstdata[dgl.NID]]
        stats = {
            "producer_s": time.perf_counter() - t0,
            "output_nodes": blocks[-1].num_dst_nodes(),
            "input_nodes": blocks[0].num_src_nodes(),
            "edges": sum(b.num_edges() for b in blocks),
        }
        return pos_graph, neg_graph, blocks, stats


# --------------------------------------------------------------------------------------------
# Model (the example's layers.py and model.py)


class WeightedSAGEConv(nn.Module):
    """z = ReLU(W [sum_v w_uv ReLU(Q h_v) / max(1, sum_v w_uv), h_u]), then z / ||z||."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.Q = nn.Linear(input_dim, hidden_dim)
        self.W = nn.Linear(input_dim + hidden_dim, output_dim)
        self.dropout = nn.Dropout(0.5)
        gain = nn.init.calculate_gain("relu")
        for lin in (self.Q, self.W):
            nn.init.xavier_uniform_(lin.weight, gain=gain)
            nn.init.constant_(lin.bias, 0)

    def forward(self, block, h_src: torch.Tensor, h_dst: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        with block.local_scope():
            block.srcdata["n"] = F.relu(self.Q(self.dropout(h_src)))  # (n_src, m)
            block.edata["w"] = weights.float()
            block.update_all(fn.u_mul_e("n", "w", "m"), fn.sum("m", "n"))
            block.update_all(fn.copy_e("w", "m"), fn.sum("m", "ws"))
            n = block.dstdata["n"]  # (n_dst, m)
            ws = block.dstdata["ws"].unsqueeze(1).clamp(min=1)
            z = F.relu(self.W(self.dropout(torch.cat([n / ws, h_dst], 1))))  # (n_dst, d)
            norm = z.norm(2, 1, keepdim=True)
            return z / torch.where(norm == 0, torch.ones_like(norm), norm)


class PinSAGEModel(nn.Module):
    """Projection + K WeightedSAGEConv layers + item-to-item scorer with a per-item bias."""

    def __init__(self, num_items: int, feature_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        self.proj = nn.Linear(feature_dim, output_dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.constant_(self.proj.bias, 0)
        self.convs = nn.ModuleList(WeightedSAGEConv(output_dim, hidden_dim, output_dim) for _ in range(num_layers))
        self.bias = nn.Parameter(torch.zeros(num_items))

    def embed(self, blocks: list) -> torch.Tensor:
        h = self.proj(blocks[0].srcdata["feat"])
        for conv, block in zip(self.convs, blocks):
            h = conv(block, h, h[: block.num_dst_nodes()], block.edata["weights"])
        return self.proj(blocks[-1].dstdata["feat"]) + h

    def score(self, pair_graph, h: torch.Tensor) -> torch.Tensor:
        with pair_graph.local_scope():
            pair_graph.ndata["h"] = h
            pair_graph.apply_edges(fn.u_dot_v("h", "h", "s"))
            src, dst = pair_graph.edges()
            ids = pair_graph.ndata[dgl.NID]
            return pair_graph.edata["s"].squeeze(1) + self.bias[ids[src]] + self.bias[ids[dst]]

    def forward(self, pos_graph, neg_graph, blocks: list) -> torch.Tensor:
        h = self.embed(blocks)
        return (self.score(neg_graph, h) - self.score(pos_graph, h) + 1).clamp(min=0)


# --------------------------------------------------------------------------------------------
# Bundle, timing, report


def load_graph(bundle: Path, settings: dict):
    """The item <-> collection heterograph of the bundle, with item features ``feat``."""
    indptr = np.load(bundle / "item_indptr.npy")
    colls = torch.from_numpy(np.load(bundle / "item_indices.npy").astype(np.int64))
    items = torch.repeat_interleave(torch.arange(settings["items"]), torch.from_numpy(np.diff(indptr)))
    g = dgl.heterograph(
        {(ITEM, ITEM_TO_COLL, COLL): (items, colls), (COLL, COLL_TO_ITEM, ITEM): (colls, items)},
        num_nodes_dict={ITEM: settings["items"], COLL: settings["collections"]},
    )
    g.nodes[ITEM].data["feat"] = torch.from_numpy(np.load(bundle / "features.npy"))
    return g


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _median(windows: list[dict], key: str) -> float:
    return statistics.median(w[key] for w in windows)


def run(bundle: Path, num_workers: int, threads: int) -> dict:
    """Train on the bundle and time it; returns the report (see the module docstring)."""
    settings = json.loads((bundle / "settings.json").read_text())
    load_before = [round(x, 2) for x in os.getloadavg()]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    g = load_graph(bundle, settings)
    q = torch.from_numpy(np.load(bundle / "pairs_q.npy").astype(np.int64))
    pos = torch.from_numpy(np.load(bundle / "pairs_pos.npy").astype(np.int64))
    load_s = time.perf_counter() - t0
    batches = PairBatches(q, pos, settings["items"], settings["batch_size"])
    loader = DataLoader(batches, collate_fn=BlockSampler(g, settings), num_workers=num_workers)
    dims = (settings[k] for k in ("feature_dim", "hidden_dim", "output_dim", "num_layers"))
    model = PinSAGEModel(settings["items"], *dims)
    opt = torch.optim.Adam(model.parameters(), lr=3e-5)
    model.train()
    it = iter(loader)

    def step() -> dict:
        t0 = time.perf_counter()
        pos_graph, neg_graph, blocks, stats = next(it)
        t1 = time.perf_counter()
        loss = model(pos_graph, neg_graph, blocks).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {**stats, "wait_s": t1 - t0, "compute_s": time.perf_counter() - t1, "loss": loss.item()}

    for _ in range(settings["warmup_steps"]):
        step()
    windows = []
    for _ in range(settings["repeats"]):
        t0 = time.perf_counter()
        steps = [step() for _ in range(settings["steps"])]
        wall = time.perf_counter() - t0
        n = len(steps)
        producer = sum(s["producer_s"] for s in steps) / n
        windows.append(
            {
                "wall_s": round(wall, 4),
                "examples_per_s": round(settings["batch_size"] * n / wall, 1),
                "step_s": round(wall / n, 5),
                # producer time per step as our benchmark reports it: one producer's time per batch
                # divided by the producers working in parallel (workers, or the loop itself)
                "producer_s_per_step": round(producer / max(1, num_workers), 5),
                "producer_s_per_batch": round(producer, 5),
                "wait_s_per_step": round(sum(s["wait_s"] for s in steps) / n, 5),
                "compute_s_per_step": round(sum(s["compute_s"] for s in steps) / n, 5),
                "output_nodes_per_step": round(sum(s["output_nodes"] for s in steps) / n, 1),
                "input_nodes_per_step": round(sum(s["input_nodes"] for s in steps) / n, 1),
                "block_edges_per_step": round(sum(s["edges"] for s in steps) / n, 1),
                "last_loss": round(steps[-1]["loss"], 5),
            }
        )
    keys = ("examples_per_s", "step_s", "producer_s_per_step", "wait_s_per_step", "compute_s_per_step")
    return {
        "peer": "dgl examples/pytorch/pinsage",
        "versions": {"dgl": dgl.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            # 1/5/15-minute load averages: other work on the cores shows up here
            "load_avg_before": load_before,
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {**settings, "num_workers": num_workers, "torch_threads": threads, "lr": 3e-5},
        "load_s": round(load_s, 2),
        "median": {k: _median(windows, k) for k in keys},
        "windows": windows,
        "per_step_work_vs_ours": (
            "DGL's example embeds the unique items among heads, tails and one uniform negative tail "
            "per example (up to 3 x batch_size output nodes; 'output_nodes_per_step' is the measured "
            "count) and scores one positive and one negative per example; ours embeds batch_size "
            "queries + batch_size positives + 500 shared negatives and scores every query against "
            "all shared negatives. DGL samples each layer's neighbourhoods online with random walks "
            "from every node of that layer at every step (in the producer); ours reads neighbourhoods "
            "precomputed once for all items (bench_training's neighbourhoods_s), so its producer "
            "only gathers. Width mapping: projection F -> d and K x WeightedSAGEConv(d, m, d) here, "
            "ours Q: F_k -> m, W: F_k + m -> d with F_1 = F. The peer also learns one bias per item "
            "(N parameters, updated densely by Adam each step) and applies dropout 0.5."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="folder written by bench/peers/export_bundle.py")
    parser.add_argument("--output", required=True, help="JSON report path")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (the example's 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    bundle = Path(args.bundle)
    if not (bundle / "settings.json").exists():
        print(f"error: {bundle}/settings.json not found; export the bundle first", file=sys.stderr)
        return 2
    report = run(bundle, args.num_workers, args.threads)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(report["median"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
