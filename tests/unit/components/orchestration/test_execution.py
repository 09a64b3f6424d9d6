"""Stage execution: fingerprints skip unchanged stages, failures leave no partial output,
stale temporary folders of killed runs are removed, and each stage gets its own scratch folder."""

import json

import pytest
import stage_fixtures

from components.orchestration.execution import FINGERPRINT_FILE, StageError, execute
from components.stages import Stage, select_stages
from pinsage_model.config import config_from_dict

A = Stage("a", (), ("data",), "first")
B = Stage("b", ("a",), ("train",), "second")
BAD = Stage("bad", ("a",), (), "fails")


@pytest.fixture(autouse=True)
def _patch(monkeypatch):
    stage_fixtures.CALLS.clear()
    stage_fixtures.SCRATCH.clear()
    monkeypatch.setattr(
        Stage, "load_run", lambda self: stage_fixtures.run_fail if self.name == "bad" else stage_fixtures.run_copy
    )


def test_execute_writes_outputs_report_and_fingerprint(tmp_path, stage_ctx):
    cfg = config_from_dict({"seed": 1})
    rep = execute(A, cfg, {}, tmp_path / "a", stage_ctx)
    assert (tmp_path / "a" / "value.txt").read_text() == "seed=1;"
    assert rep["rows"] == 1 and rep["skipped"] is False
    assert json.loads((tmp_path / "a" / "report.json").read_text())["stage"] == "a"
    assert (tmp_path / "a" / FINGERPRINT_FILE).exists()


def test_unchanged_stage_is_skipped_and_changes_rerun(tmp_path, stage_ctx):
    cfg = config_from_dict({"seed": 1})
    execute(A, cfg, {}, tmp_path / "a", stage_ctx)
    execute(B, cfg, {"a": tmp_path / "a"}, tmp_path / "b", stage_ctx)
    assert stage_fixtures.CALLS == ["copy", "copy"]
    assert execute(B, cfg, {"a": tmp_path / "a"}, tmp_path / "b", stage_ctx)["skipped"] is True
    assert stage_fixtures.CALLS == ["copy", "copy"]
    # A config section B does not read leaves it current; one it reads does not.
    execute(
        B, config_from_dict({"seed": 1, "model": {"hidden_dim": 8}}), {"a": tmp_path / "a"}, tmp_path / "b", stage_ctx
    )
    assert stage_fixtures.CALLS == ["copy", "copy"]
    execute(B, config_from_dict({"seed": 1, "train": {"epochs": 1}}), {"a": tmp_path / "a"}, tmp_path / "b", stage_ctx)
    assert stage_fixtures.CALLS == ["copy", "copy", "copy"]
    # A changed upstream output changes the downstream fingerprint.
    cfg2 = config_from_dict({"seed": 2})
    execute(A, cfg2, {}, tmp_path / "a", stage_ctx)
    execute(B, cfg2, {"a": tmp_path / "a"}, tmp_path / "b", stage_ctx)
    assert (tmp_path / "b" / "value.txt").read_text() == "seed=2;seed=2;"


def test_failing_stage_leaves_no_partial_output_and_keeps_old(tmp_path, stage_ctx):
    cfg = config_from_dict({})
    execute(A, cfg, {}, tmp_path / "a", stage_ctx)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "old.txt").write_text("previous good output")
    with pytest.raises(RuntimeError, match="boom"):
        execute(BAD, cfg, {"a": tmp_path / "a"}, tmp_path / "bad", stage_ctx)
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_input_says_what_to_run(tmp_path, stage_ctx):
    with pytest.raises(StageError, match="pinsage run --to a"):
        execute(B, config_from_dict({}), {"a": tmp_path / "missing"}, tmp_path / "b", stage_ctx)


def test_killed_runs_leave_no_temp_folders_for_the_next_run(tmp_path, stage_ctx):
    cfg = config_from_dict({})
    for stale in (tmp_path / ".a.k3j2.tmp", tmp_path / ".a.old-4242", tmp_path / ".b.x1.tmp"):
        (stale / "part").mkdir(parents=True)
    execute(A, cfg, {}, tmp_path / "a", stage_ctx)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".b.x1.tmp"]  # b has not run
    # a skipped stage is cleaned up too: the temp folder of a killed --force rerun goes
    (tmp_path / ".a.q9.tmp").mkdir()
    assert execute(A, cfg, {}, tmp_path / "a", stage_ctx)["skipped"] is True
    assert not (tmp_path / ".a.q9.tmp").exists()


def test_each_stage_gets_a_scratch_folder_kept_on_failure_removed_on_success(tmp_path, stage_ctx):
    from components.orchestration.execution import fingerprint

    cfg = config_from_dict({})
    execute(A, cfg, {}, tmp_path / "a", stage_ctx)
    (scratch,) = stage_fixtures.SCRATCH
    assert scratch == tmp_path / "test" / "checkpoints" / "a" / fingerprint(A, cfg, {})[:16]
    assert not scratch.exists()
    with pytest.raises(RuntimeError, match="boom"):
        execute(BAD, cfg, {"a": tmp_path / "a"}, tmp_path / "bad", stage_ctx)
    assert (stage_fixtures.SCRATCH[-1] / "checkpoint").read_text() == "epoch 1"  # a rerun resumes from it


def test_a_helper_process_runs_the_stage_but_writes_nothing_the_writer_owns(tmp_path, stage_ctx):
    """A process whose stage module says it does not write (a non-chief training worker) runs the
    stage on the same inputs and scratch folder, and leaves the output folder, the writer's
    temporary folders and the scratch folder alone."""
    cfg = config_from_dict({"seed": 1})
    execute(A, cfg, {}, tmp_path / "a", stage_ctx)
    helper = config_from_dict({"seed": 1, "train": {"strategy": "multi_worker"}})
    (tmp_path / ".b.w1.tmp").mkdir()  # the writer's output in progress
    rep = execute(B, helper, {"a": tmp_path / "a"}, tmp_path / "b", stage_ctx)
    assert rep["wrote_outputs"] is False and rep["rows"] == 1 and rep["stage"] == "b"
    assert stage_fixtures.CALLS == ["copy", "copy"]
    assert not (tmp_path / "b").exists() and (tmp_path / ".b.w1.tmp").is_dir()
    assert (stage_fixtures.SCRATCH[-1] / "checkpoint").read_text() == "epoch 1"  # the writer removes it
    writer = config_from_dict({"seed": 1, "train": {"strategy": "mirrored"}})
    assert execute(B, writer, {"a": tmp_path / "a"}, tmp_path / "b", stage_ctx)["skipped"] is False
    assert (tmp_path / "b" / "value.txt").read_text() == "seed=1;seed=1;"
    assert not (tmp_path / ".b.w1.tmp").exists()


def test_select_stages_validates_names_and_order():
    with pytest.raises(ValueError, match="unknown stage"):
        select_stages("nope", None)
    with pytest.raises(ValueError, match="comes after"):
        select_stages("model", "pairs")
    names = [s.name for s in select_stages("raw", "raw")]
    assert names == ["raw"]
    assert [s.name for s in select_stages("evaluation", None)] == ["evaluation", "registration", "index"]


def test_every_stage_module_is_named_as_its_stage_and_reads_only_earlier_stages():
    import importlib
    import inspect

    from components.stages import STAGES

    seen: set[str] = set()
    for s in STAGES:
        assert set(s.inputs) <= seen, s.name
        seen.add(s.name)
        mod = importlib.import_module(s.module)
        assert mod.__name__ == f"components.stages.{s.name}"
        assert list(inspect.signature(mod.run).parameters) == ["cfg", "inputs", "out_dir", "ctx"]
