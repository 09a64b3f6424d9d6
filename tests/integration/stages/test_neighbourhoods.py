"""Stage "neighbourhoods" on the demo data: ``sampler.backend: spark`` writes the same bytes as ``numba``."""

from __future__ import annotations

import numpy as np
import pytest

from pinsage_model.graph.csr import CSRGraph

LOGICAL_TIME = "2026-01-12T00:00:00Z"


@pytest.fixture(scope="module")
def demo_graph_dir(tmp_path_factory):
    """A graph stage output on the demo preset: full graph, training subgraph and indexed pairs."""
    import pyarrow as pa

    from pinsage_model.data import synthetic
    from pinsage_model.io import atomic_write_parquet

    graph = synthetic.graph_of(synthetic.generate("demo", seed=0))
    run = tmp_path_factory.mktemp("runs") / "demo"
    graph.save(run / "graph" / "graph.npz")
    # Training subgraph: every fifth collection, on the same item id space (as the graph stage keeps 20%).
    items = graph.coll_indices.astype(np.int64)
    colls = np.repeat(np.arange(graph.num_collections), graph.collection_degree())
    keep = colls % 5 == 0
    CSRGraph.from_edges(items[keep], colls[keep], graph.num_items, graph.num_collections).save(
        run / "graph" / "train_graph.npz"
    )
    # Pairs: consecutive items of each kept collection train, the rest validate.
    q, pos = items[:-1], items[1:]
    same = (colls[:-1] == colls[1:]) & (q != pos)
    q, pos, train = q[same], pos[same], keep[:-1][same]
    atomic_write_parquet(
        run / "graph" / "pairs_indexed.parquet",
        pa.table(
            {
                "q_idx": pa.array(q.astype(np.int32)),
                "pos_idx": pa.array(pos.astype(np.int32)),
                "count": pa.array(np.ones(len(q), np.int64)),
                "split": pa.array(np.where(train, "train", "validation")),
                "in_train_graph": pa.array(train),
            }
        ),
    )
    return run


def run_stage(run, out_name: str, spark_section: dict, backend: str) -> dict:
    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.config import config_from_dict, config_to_dict, load_config

    stage = get_stage("neighbourhoods")
    sampler = {**config_to_dict(load_config("configs/demo.yaml").sampler), "backend": backend}
    cfg = config_from_dict({"spark": spark_section, "sampler": sampler})
    ctx = StageContext.for_run_dir(run, LOGICAL_TIME)
    return execute(stage, cfg, {"graph": run / "graph"}, run / out_name, ctx, force=True)


@pytest.mark.slow
def test_spark_backend_writes_the_same_files(demo_graph_dir, spark_section):
    run = demo_graph_dir
    local = run_stage(run, "neighbourhoods", spark_section, "numba")
    spark = run_stage(run, "neighbourhoods_spark", spark_section, "spark")
    for name in ("train.npz", "full.npz"):
        assert (run / "neighbourhoods_spark" / name).read_bytes() == (run / "neighbourhoods" / name).read_bytes()
    assert sorted(p.name for p in (run / "neighbourhoods_spark").iterdir()) == sorted(
        p.name for p in (run / "neighbourhoods").iterdir()
    )  # the shared scratch files are gone
    assert spark["sampler"]["backend"] == "spark" and local["sampler"]["backend"] == "numba"
    for part in ("train", "full"):
        timing = ("seconds", "items_per_second")
        assert {k: v for k, v in spark[part].items() if k not in timing} == {
            k: v for k, v in local[part].items() if k not in timing
        }
    assert spark["full"]["items"] == 5000 and spark["full"]["tie_slot_share"] > 0
    assert 0 < spark["train"]["positive_coverage"] <= 1
