"""The planted training data set shared by the training tests (tests/integration/pinsage_model/model).

A small planted graph: 30 clusters of 10 items in 6 topics. Collections are drawn inside one
cluster (plus a random item), features carry only the topic (plus noise), and the engagement
pairs join items of the same cluster. Content features can at best find the topic (50 items);
the graph tells the cluster (10 items), so PinSage must beat the content baseline. (The synthetic
"tiny" preset is too dense for this: nearly every pair of its items shares a collection, so
neither signal separates clusters.)
"""

from __future__ import annotations

import json

import numpy as np

from pinsage_model.config import ModelConfig, SamplerConfig, TrainConfig
from pinsage_model.graph.csr import CSRGraph

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


def config_to_dict_(section) -> dict:
    from pinsage_model.config import config_to_dict

    return config_to_dict(section)


def stage_config(**train):
    """The model stage's config on the planted data: MODEL, SAMPLER, TRAIN with ``train``'s keys
    replaced, and no user head."""
    from pinsage_model.config import config_from_dict

    return config_from_dict(
        {
            "model": config_to_dict_(MODEL),
            "user_head": {"enabled": False},
            "sampler": config_to_dict_(SAMPLER),
            "train": {**config_to_dict_(TRAIN), **train},
        }
    )
