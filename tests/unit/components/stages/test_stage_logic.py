"""Pure (no Spark, no Beam, no TensorFlow) logic of the pairs/graph/features/model stages."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from components.stages.graph import degree_quantiles
from components.stages.pairs import check_interactions_schema
from pinsage_model.data.contracts import ContractError
from pinsage_model.features.transform import item_rows


def test_degree_quantiles_on_a_known_vector():
    q = degree_quantiles(np.array([0, 1, 2, 3, 4]))
    assert q["p0"] == 0 and q["p50"] == 2 and q["p100"] == 4 and q["p25"] == 1
    assert degree_quantiles(np.array([], dtype=np.int64)) == {}


def test_missing_interactions_column_is_named(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "interactions.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "timestamp": [1]}), path)
    with pytest.raises(ContractError, match=r"interactions.parquet: missing required column 'item_id'"):
        check_interactions_schema(path)
    with pytest.raises(ContractError, match="file not found"):
        check_interactions_schema(tmp_path / "nope.parquet")


def test_item_rows_align_with_dense_ids_and_reject_bad_rows():
    item_ids = pa.table({"item_idx": pa.array([0, 1, 2, 3], pa.int32()), "item_id": ["a", "b", "c", "d"]})
    items = pa.table(
        {
            "item_id": ["c", "a", "zz", "a", None, "b"],
            "features": pa.array([[1, 2], [3, 4], [5, 6], [7, 8], [0, 0], [math.nan, 1]], pa.list_(pa.float32())),
            "genres": ["x|y", None, "q", "r", "s", "t"],
        }
    )
    rows, rejected = item_rows(items, item_ids, np.array([3, 0, 1, 7]))
    assert rejected == [(2, "unknown_item_id"), (3, "duplicate_item_id"), (4, "null_item_id"), (5, "bad_vector")]
    assert rows["item_idx"].tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(rows["vector"], [[3, 4], [0, 0], [1, 2], [0, 0]])
    assert rows["has_vector"].tolist() == [1, 0, 1, 0]
    assert rows["genres"].tolist() == ["", "t", "x|y", ""]  # b's text is kept despite its bad vector
    assert rows["has_features"].tolist() == [1, 1, 1, 0]
    np.testing.assert_allclose(rows["log_degree"], np.log1p([3, 0, 1, 7]), rtol=1e-6)


def test_item_rows_without_an_item_table():
    item_ids = pa.table({"item_idx": pa.array([0, 1], pa.int32()), "item_id": ["a", "b"]})
    rows, rejected = item_rows(None, item_ids, np.array([1, 2]))
    assert rejected == [] and set(rows) == {"item_idx", "log_degree", "has_features"}
    assert rows["has_features"].tolist() == [0, 0]


def test_model_stage_writer_is_the_chief_and_a_cluster_needs_the_multi_worker_strategy(
    tmp_path, monkeypatch, stage_ctx
):
    import json

    from components.orchestration.execution import StageError
    from components.stages import model
    from pinsage_model.config import config_from_dict

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    mirrored, multi = config_from_dict({}), config_from_dict({"train": {"strategy": "multi_worker"}})
    for index, chief in ((0, True), (1, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        assert model.writes_outputs(multi) is chief
        assert model.writes_outputs(mirrored) is True
        with pytest.raises(StageError, match="TF_CONFIG names 2 workers but train.strategy is 'mirrored'"):
            model.run(mirrored, {}, tmp_path, stage_ctx)  # before reading any input
