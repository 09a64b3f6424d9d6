"""Stage execution: fingerprints skip unchanged stages, failures leave no partial output."""

import json

import pytest

import stage_fixtures
from components.base import FINGERPRINT_FILE, Stage, StageError, execute
from components.runner import select_stages
from pinsage_model.config import config_from_dict

A = Stage("a", (), ("data",), "first", "stage_fixtures")
B = Stage("b", ("a",), ("train",), "second", "stage_fixtures")
BAD = Stage("bad", ("a",), (), "fails", "stage_fixtures")


@pytest.fixture(autouse=True)
def _patch(monkeypatch):
    stage_fixtures.CALLS.clear()
    monkeypatch.setattr(Stage, "load_run", lambda self: stage_fixtures.run_fail if self.name == "bad" else stage_fixtures.run_copy)


def test_execute_writes_outputs_report_and_fingerprint(tmp_path):
    cfg = config_from_dict({"seed": 1})
    rep = execute(A, cfg, {}, tmp_path / "a")
    assert (tmp_path / "a" / "value.txt").read_text() == "seed=1;"
    assert rep["rows"] == 1 and rep["skipped"] is False
    assert json.loads((tmp_path / "a" / "report.json").read_text())["stage"] == "a"
    assert (tmp_path / "a" / FINGERPRINT_FILE).exists()


def test_unchanged_stage_is_skipped_and_changes_rerun(tmp_path):
    cfg = config_from_dict({"seed": 1})
    execute(A, cfg, {}, tmp_path / "a")
    execute(B, cfg, {"a": tmp_path / "a"}, tmp_path / "b")
    assert stage_fixtures.CALLS == ["copy", "copy"]
    assert execute(B, cfg, {"a": tmp_path / "a"}, tmp_path / "b")["skipped"] is True
    assert stage_fixtures.CALLS == ["copy", "copy"]
    # A config section B does not read leaves it current; one it reads does not.
    execute(B, config_from_dict({"seed": 1, "model": {"hidden_dim": 8}}), {"a": tmp_path / "a"}, tmp_path / "b")
    assert stage_fixtures.CALLS == ["copy", "copy"]
    execute(B, config_from_dict({"seed": 1, "train": {"epochs": 1}}), {"a": tmp_path / "a"}, tmp_path / "b")
    assert stage_fixtures.CALLS == ["copy", "copy", "copy"]
    # A changed upstream output changes the downstream fingerprint.
    cfg2 = config_from_dict({"seed": 2})
    execute(A, cfg2, {}, tmp_path / "a")
    execute(B, cfg2, {"a": tmp_path / "a"}, tmp_path / "b")
    assert (tmp_path / "b" / "value.txt").read_text() == "seed=2;seed=2;"


def test_failing_stage_leaves_no_partial_output_and_keeps_old(tmp_path):
    cfg = config_from_dict({})
    execute(A, cfg, {}, tmp_path / "a")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "old.txt").write_text("previous good output")
    with pytest.raises(RuntimeError, match="boom"):
        execute(BAD, cfg, {"a": tmp_path / "a"}, tmp_path / "bad")
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_input_says_what_to_run(tmp_path):
    with pytest.raises(StageError, match="pinsage run --to a"):
        execute(B, config_from_dict({}), {"a": tmp_path / "missing"}, tmp_path / "b")


def test_select_stages_validates_names_and_order():
    with pytest.raises(ValueError, match="unknown stage"):
        select_stages("nope", None)
    with pytest.raises(ValueError, match="comes after"):
        select_stages("model", "pairs")
    names = [s.name for s in select_stages("raw", "raw")]
    assert names == ["raw"]
