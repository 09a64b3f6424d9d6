"""Data contracts: CSR construction by hand, memory-mapped loading, table validation."""

import numpy as np
import pyarrow as pa
import pytest

from pinsage_model.data.contracts import INTERACTIONS, ContractError
from pinsage_model.graph.csr import CSRGraph, Neighbourhoods, load_npz
from pinsage_model.io import atomic_dir, atomic_write_parquet, file_digest


def test_csr_from_edges_by_hand():
    # items 0..2, collections 0..1; edge (1,0) given twice -> merged.
    g = CSRGraph.from_edges([0, 1, 1, 2, 1], [0, 0, 1, 1, 0], num_items=3, num_collections=2)
    assert g.item_indptr.tolist() == [0, 1, 3, 4]
    assert g.item_indices.tolist() == [0, 0, 1, 1]
    assert g.coll_indptr.tolist() == [0, 2, 4]
    assert g.coll_indices.tolist() == [0, 1, 1, 2]
    assert g.num_edges == 4 and g.item_degree().tolist() == [1, 2, 1]
    g.validate()


def test_graph_save_load_memory_mapped(tmp_path):
    g = CSRGraph.from_edges([0, 1, 2], [0, 0, 1], 4, 2)
    g.save(tmp_path / "g.npz")
    h = CSRGraph.load(tmp_path / "g.npz")
    assert isinstance(h.item_indices, np.memmap)
    for name in ("item_indptr", "item_indices", "coll_indptr", "coll_indices"):
        np.testing.assert_array_equal(getattr(g, name), getattr(h, name))
    assert h.item_degree().tolist() == [1, 1, 1, 0]


def test_graph_validation_errors():
    g = CSRGraph.from_edges([0], [0], 1, 1)
    bad = CSRGraph(g.item_indptr, g.item_indices.astype(np.int64), g.coll_indptr, g.coll_indices)
    with pytest.raises(ContractError, match="item_indices"):
        bad.validate("x.npz")


def test_neighbourhoods_validate(tmp_path):
    ok = Neighbourhoods(np.array([[1, -1], [0, 2]], np.int32), np.array([[1.0, 0.0], [0.25, 0.75]], np.float32))
    ok.save(tmp_path / "n.npz")
    back = Neighbourhoods.load(tmp_path / "n.npz")
    np.testing.assert_array_equal(back.mask, [[True, False], [True, True]])
    with pytest.raises(ContractError, match="sum to 1"):
        Neighbourhoods(ok.indices, np.array([[0.5, 0.0], [0.25, 0.75]], np.float32)).validate()


def test_table_contract_names_missing_column_and_file():
    t = pa.table({"user_id": ["u"], "timestamp": [1]})
    with pytest.raises(ContractError) as e:
        INTERACTIONS.validate(t, "events.parquet")
    assert "'item_id'" in str(e.value) and "events.parquet" in str(e.value)


def test_table_contract_casts_and_rejects():
    t = pa.table({"user_id": [1], "item_id": ["a"], "timestamp": [5], "weight": [4]})
    out = INTERACTIONS.validate(t, "x")
    assert out.schema.field("user_id").type == pa.string()
    assert out.schema.field("weight").type == pa.float64()
    with pytest.raises(ContractError, match="'timestamp'"):
        INTERACTIONS.validate(pa.table({"user_id": ["u"], "item_id": ["a"], "timestamp": ["yesterday"]}), "x")


def test_atomic_dir_and_deterministic_parquet(tmp_path):
    out = tmp_path / "stage"
    for _ in range(2):
        with atomic_dir(out) as tmp:
            atomic_write_parquet(tmp / "t.parquet", pa.table({"a": [1, 2, 3]}))
        digest = file_digest(out)
    with atomic_dir(out) as tmp:
        atomic_write_parquet(tmp / "t.parquet", pa.table({"a": [1, 2, 3]}))
    assert file_digest(out) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_load_npz_falls_back_for_compressed(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(3))
    assert load_npz(tmp_path / "c.npz")["x"].tolist() == [0, 1, 2]


def test_read_query_shift(tmp_path):
    from pinsage_model.data.contracts import ContractError, read_query_shift

    with pytest.raises(ContractError, match="query_shift.npy: not found; rerun the embeddings stage"):
        read_query_shift(tmp_path, 3)
    np.save(tmp_path / "query_shift.npy", np.float32([1, 2, 3]))
    assert read_query_shift(tmp_path, 3).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ContractError, match=r"expected \(4,\)"):
        read_query_shift(tmp_path, 4)
