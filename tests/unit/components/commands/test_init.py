"""``pinsage init --data`` and ``pinsage run --data``: columns found by name, a sparse config,
one clear line for bad input (issue 28, point 1)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from components.cli import main
from pinsage_model.config import PipelineConfig, load_config
from pinsage_model.data.inputs import LoaderError
from pinsage_model.data.table import detect_columns

REPO = Path(__file__).resolve().parents[4]


def write(path, text: str):
    path.write_text(text)
    return path


def test_columns_are_found_by_name_in_csv_and_parquet(tmp_path):
    csv = write(tmp_path / "a.csv", "userId,movieId,rating,Timestamp\n1,2,4.0,964982703\n")
    assert detect_columns(csv) == {"user": "userId", "item": "movieId", "timestamp": "Timestamp", "weight": "rating"}
    table = pa.table({"customer_id": ["c"], "product_id": ["p"], "event_time": ["2024-01-01"], "board_id": ["b"]})
    pq.write_table(table, tmp_path / "b.parquet")
    assert detect_columns(tmp_path / "b.parquet") == {
        "user": "customer_id",
        "item": "product_id",
        "timestamp": "event_time",
        "collection": "board_id",
    }


def test_given_columns_win_and_are_checked(tmp_path):
    csv = write(tmp_path / "a.csv", "u,i,when,user_id\nx,y,1,z\n")
    assert detect_columns(csv, {"user": "u", "item": "i", "timestamp": "when"}) == {
        "user": "u",
        "item": "i",
        "timestamp": "when",
    }
    with pytest.raises(LoaderError, match=rf"^{csv}: line 1: no column 'pin' \(given for item\); has: u, i, when"):
        detect_columns(csv, {"item": "pin"})


def test_a_missing_column_is_one_line_naming_file_and_role(tmp_path):
    csv = write(tmp_path / "a.csv", "user_id,when,rating\n1,2,3\n")
    with pytest.raises(LoaderError) as e:
        detect_columns(csv)
    assert str(e.value).startswith(f"{csv}: line 1: no item column (looked for item_id, item, iid")
    assert "has: user_id, when, rating" in str(e.value) and "--columns item=COLUMN" in str(e.value)


def test_a_table_without_a_time_column_maps_timestamp_to_nothing(tmp_path):
    csv = write(tmp_path / "a.csv", "user_id,item_id,rating\n1,2,3\n")
    assert detect_columns(csv) == {"user": "user_id", "item": "item_id", "timestamp": "", "weight": "rating"}


def test_init_writes_the_sparse_config_run_data_uses(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "events.csv", "uid,pin,ts,weight\nu1,p1,1704067200,1\n")
    args = ["init", "--data", "events.csv", "--columns", "user=uid,item=pin", "--set", "train.epochs=3"]
    assert main(args) == 0
    raw = yaml.safe_load((tmp_path / "events.yaml").read_text())
    assert raw == {
        "name": "events",
        "data": {
            "source": "table",
            "interactions_path": "events.csv",
            "user_column": "uid",
            "item_column": "pin",
            "timestamp_column": "ts",
            "weight_column": "weight",
        },
        "train": {"epochs": 3},
    }
    # everything else is the shipped default
    cfg = load_config(tmp_path / "events.yaml")
    assert cfg.model == PipelineConfig().model and cfg.train.loss == PipelineConfig().train.loss
    out = capsys.readouterr().out
    assert "train.epochs = 3" in out and "train.loss.kind=xent" in out
    assert main(args) == 2  # an existing file is not overwritten
    assert "events.yaml exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--data", "events.csv", "--columns", "item=nope"], "no column 'nope' (given for item)"),
        (["run", "--data", "missing.csv"], "interactions table 'missing.csv' not found"),
        (["run", "--data", "events.csv", "--set", "train.lr=1"], "--set: unknown key 'train.lr'"),
        (["run", "--data", "events.csv", "--columns", "usr=uid"], "--columns: 'usr=uid' is not ROLE=COLUMN"),
        (["run", "--config", "configs/tiny.yaml", "--data", "events.csv"], "give --config FILE or --data FILE"),
        (["config", "show", "--config", "configs/tiny.yaml", "--set", "train.epochs=x"], "key 'train.epochs'"),
    ],
)
def test_bad_input_is_one_line_and_nothing_runs(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "events.csv", "uid,item_id,timestamp\nu1,p1,1704067200\n")
    args = [a.replace("configs/", f"{REPO}/configs/") for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "runs" / "events").exists()
