"""Stage ``raw`` through the shared executor and the stage CLI."""

import json

import pyarrow.parquet as pq
import pytest

from components.orchestration.execution import execute, stage_main
from components.stages import get_stage
from pinsage_model.config import config_from_dict
from pinsage_model.data.inputs import LoaderError

STAGE = get_stage("raw")


def _cfg(**data):
    return config_from_dict({"data": data}, "<test>")


def test_synthetic_tiny_is_written_and_reproducible(tmp_path, stage_ctx):
    cfg = _cfg(source="synthetic", preset="tiny")
    rep = execute(STAGE, cfg, {}, tmp_path / "a" / "raw", stage_ctx)
    execute(STAGE, cfg, {}, tmp_path / "b" / "raw", stage_ctx)
    for name in ("interactions.parquet", "items.parquet", "quarantine.parquet"):
        assert (tmp_path / "a" / "raw" / name).read_bytes() == (tmp_path / "b" / "raw" / name).read_bytes()
    assert rep["interactions"] == 3000 and rep["items"] == 300 and rep["items_with_features"] == 300
    assert rep["rows"] == {"in": 3000, "kept": 3000, "quarantined": 0}
    assert rep["degree_stats"]["edges"] == 3000
    assert not (tmp_path / "a" / "raw" / "test_interactions.parquet").exists()
    again = execute(STAGE, cfg, {}, tmp_path / "a" / "raw", stage_ctx)
    assert again["skipped"]


def test_movielens_quarantine_file_and_report(tmp_path, stage_ctx):
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,10\n1,2,5,20\nx,2,5,30\n2,1,3,\n")
    (ml / "movies.csv").write_text("movieId,title,genres\n1,One,Drama\n2,Two,Comedy\n")
    out = tmp_path / "run" / "raw"
    rep = execute(STAGE, _cfg(source="movielens", path=str(ml)), {}, out, stage_ctx)
    assert rep["interactions"] == 2 and rep["items"] == 2 and rep["users"] == 1
    assert rep["rows"] == {"in": 6, "kept": 4, "quarantined": 2}
    assert rep["quarantine_reasons"] == {"bad int userId": 1, "unparsable timestamp": 1}
    q = pq.read_table(out / "quarantine.parquet").to_pydict()
    assert q["row"] == [2, 3] and q["userId"] == ["x", "2"] and q["source"] == [str(ml / "ratings.csv")] * 2
    assert json.loads((out / "report.json").read_text())["quarantine_reasons"] == rep["quarantine_reasons"]


def test_adjacency_folder_writes_test_interactions_and_id_items(tmp_path, stage_ctx):
    data = tmp_path / "gowalla"
    data.mkdir()
    (data / "train.txt").write_text("0 1 2\n1 2 3\n")
    (data / "test.txt").write_text("0 3\n1 4\n")
    out = tmp_path / "raw"
    rep = execute(STAGE, _cfg(source="adjacency", path=str(data)), {}, out, stage_ctx)
    assert rep["interactions"] == 4 and rep["test_interactions"] == 2
    assert pq.read_table(out / "test_interactions.parquet")["item_id"].to_pylist() == ["3", "4"]
    assert pq.read_table(out / "items.parquet")["item_id"].to_pylist() == ["1", "2", "3", "4"]


def test_empty_or_unusable_input_fails_and_leaves_nothing(tmp_path, stage_ctx):
    bad = tmp_path / "train.txt"
    bad.write_text("a b c\n")
    out = tmp_path / "raw"
    with pytest.raises(
        LoaderError,
        match=r"train\.txt: no usable interactions: all 2 records quarantined \(bad int user_id: 2\); first at line 1",
    ):
        execute(STAGE, _cfg(source="adjacency", interactions_path=str(bad)), {}, out, stage_ctx)
    assert not out.exists()
    with pytest.raises(LoaderError, match="'data.interactions_path' must be set for data.source 'table'"):
        execute(STAGE, _cfg(source="table"), {}, out, stage_ctx)


def test_stage_cli_on_the_tiny_config(tmp_path, capsys):
    rc = stage_main("components.stages.raw", ["--config", "configs/tiny.yaml", "--run-dir", str(tmp_path)])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 3000
    assert (tmp_path / "raw" / "interactions.parquet").exists()
    assert (tmp_path / "config.resolved.yaml").exists()


def test_generate_cli_writes_identical_files_and_prints_degree_stats(tmp_path, capsys):
    import argparse

    from components.commands import generate

    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    for out in ("a", "b"):
        assert generate.main(parser.parse_args(["--preset", "tiny", "--seed", "7", "--out", str(tmp_path / out)])) == 0
    stats = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "\n}")
    assert stats["edges"] == 3000 and stats["item_degree"]["count"] == 300
    assert stats["collection_degree"]["max"] <= 150
    for name in ("interactions.parquet", "items.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    args = parser.parse_args(["--preset", "tiny", "--seed", "7", "--out", str(tmp_path / "g"), "--graph-only"])
    assert generate.main(args) == 0
    from pinsage_model.graph.csr import CSRGraph

    assert CSRGraph.load(tmp_path / "g" / "graph.npz").num_edges == 3000


def test_table_source_with_mapping_and_npy_vectors(tmp_path, monkeypatch, stage_ctx):
    import numpy as np

    monkeypatch.chdir(tmp_path)  # relative config paths resolve against the working directory
    (tmp_path / "events.csv").write_text("who,what,at\nu1,a,1\nu1,b,2\nu2,a,3\n")
    np.save(tmp_path / "vec.npy", np.eye(2, dtype=np.float32))
    (tmp_path / "ids.txt").write_text("a\nb\n")
    cfg = _cfg(
        source="table",
        interactions_path="events.csv",
        item_vectors_path="vec.npy",
        item_vector_ids_path="ids.txt",
        user_column="who",
        item_column="what",
        timestamp_column="at",
    )
    rep = execute(STAGE, cfg, {}, tmp_path / "raw", stage_ctx)
    assert rep["interactions"] == 3 and rep["users"] == 2 and rep["collections"] == 2
    assert rep["items"] == 2 and rep["items_with_features"] == 2
    items = pq.read_table(tmp_path / "raw" / "items.parquet").to_pydict()
    assert items == {"item_id": ["a", "b"], "features": [[1.0, 0.0], [0.0, 1.0]]}
