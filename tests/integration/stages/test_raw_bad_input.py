"""Issue 14: every case of the bad-input corpus has one exact outcome on every entry point.

The corpus (``tests/integration/bad_input_corpus.py``) is written by the ``corpus_case`` fixture
into a fresh folder. Each case runs through ``pinsage run --to raw`` (``components.cli.main``) and
``python -m components.stages.raw`` (``components.orchestration.execution.stage_main``) in process, and both must
give the same exit code, the same one-line error and the same report and files; a few cases run
the real commands as subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bad_input_corpus import CASES, FUTURE_REASON, NOW, Case, count_records

from components import cli
from components.orchestration.execution import stage_main

REPO = Path(__file__).resolve().parents[3]
BY_NAME = {c.name: c for c in CASES}


@pytest.fixture(params=[c.name for c in CASES])
def corpus_case(request, tmp_path, monkeypatch) -> tuple[Case, Path]:
    """One corpus case written under ``tmp_path/in``; returns it with its config file."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(NOW))
    case = BY_NAME[request.param]
    folder = tmp_path / "in"
    folder.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "corpus", "data": case.build(folder)}))
    return case, config


def _outcome(rc: int, err: str, run_dir: Path) -> dict:
    """What a user sees: exit code, the error line, and the raw stage's report and files."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    raw = run_dir / "raw"
    report = json.loads((raw / "report.json").read_text()) if (raw / "report.json").exists() else None
    if report:
        report.pop("seconds")
    files = {p.name: p.read_bytes() for p in sorted(raw.glob("*.parquet"))} if raw.exists() else {}
    return {"rc": rc, "errors": errors, "traceback": "Traceback" in err, "report": report, "files": files}


def _run_both(config: Path, tmp_path: Path, capsys) -> tuple[dict, dict]:
    capsys.readouterr()
    rc = cli.main(["run", "--config", str(config), "--run-dir", str(tmp_path / "a"), "--to", "raw"])
    via_run = _outcome(rc, capsys.readouterr().err, tmp_path / "a")
    rc = stage_main("components.stages.raw", ["--config", str(config), "--run-dir", str(tmp_path / "b")])
    via_stage = _outcome(rc, capsys.readouterr().err, tmp_path / "b")
    return via_run, via_stage


def _check_expected(case: Case, out: dict, inputs: Path) -> None:
    assert out["rc"] == case.rc, out["errors"]
    assert not out["traceback"]
    if case.rc:
        assert len(out["errors"]) == 1, out["errors"]
        for word in case.words:
            assert word in out["errors"][0], (word, out["errors"][0])
        assert out["report"] is None and not out["files"]  # nothing half-written
        return
    assert out["errors"] == []
    report = out["report"]
    files = {Path(k).name: v for k, v in report["files"].items()}
    assert set(files) == set(case.files), files
    paths = {p.name: p for p in inputs.rglob("*") if p.is_file()}
    for name, (kept, reasons) in case.files.items():
        got = files[name]
        assert got["in"] == count_records(paths[name]), (name, got)  # counted from the file itself
        assert got["in"] == got["kept"] + got["quarantined"], (name, got)
        assert (got["kept"], got["reasons"]) == (kept, reasons), (name, got)
        assert got["quarantined"] == sum(reasons.values())
    for name, notes in files.items():
        wanted = case.notes.get(name, ())
        if not wanted:
            assert notes["notes"] == [], (name, notes["notes"])  # valid input: nothing converted
        else:
            assert any(all(w in n for w in wanted) for n in notes["notes"]), (name, notes["notes"])
    assert set(report["findings"]) == set(case.findings), report["findings"]
    for key, fields in case.findings.items():
        for f, v in fields.items():
            assert report["findings"][key][f] == v, (key, f, report["findings"][key])
    assert report["rows"]["in"] == report["rows"]["kept"] + report["rows"]["quarantined"]


def test_corpus_covers_every_class_in_every_format():
    seen = {(c.fmt, c.cls) for c in CASES}
    for fmt in ("movielens", "adjacency", "csv", "parquet", "npy"):
        assert (fmt, "valid") in seen
        for cls in "234567":
            if (fmt, cls) in (("parquet", "7"),):  # Parquet strings are UTF-8 by the format (checked by pyarrow)
                continue
            assert (fmt, cls) in seen, (fmt, cls)
    assert any(c.cls == "1" for c in CASES)  # plus every case runs through every entry point


def test_case_has_one_outcome_on_both_entry_points(corpus_case, tmp_path, capsys):
    case, config = corpus_case
    via_run, via_stage = _run_both(config, tmp_path, capsys)
    _check_expected(case, via_run, tmp_path / "in")
    if case.check is not None:
        case.check(tmp_path / "a" / "raw")
    assert via_stage == via_run


SUBPROCESS_CASES = [
    "ml_ratings_gzip_named_csv",
    "adj_leak_is_an_error",
    "npy_pickled_object_array",
    "ml_unknown_config_key",
    "csv_duplicates",
]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_real_commands_agree_and_print_one_line(name, tmp_path):
    case = BY_NAME[name]
    folder = tmp_path / "in"
    folder.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "corpus", "data": case.build(folder)}))
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(NOW)}
    commands = {
        "pinsage run": [str(Path(sys.executable).parent / "pinsage"), "run", "--to", "raw"],
        "components.stages.raw": [sys.executable, "-m", "components.stages.raw"],
    }
    outcomes = {}
    for label, cmd in commands.items():
        run_dir = tmp_path / label.replace(" ", "_")
        proc = subprocess.run(
            [*cmd, "--config", str(config), "--run-dir", str(run_dir)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        out = _outcome(proc.returncode, proc.stderr, run_dir)
        _check_expected(case, out, folder)
        outcomes[label] = out
    first = outcomes["pinsage run"]
    for label, out in outcomes.items():
        assert out == first, label


@pytest.mark.parametrize("name", ["pq_truncated", "adj_leak_is_an_error", "ml_unknown_config_key"])
def test_in_host_front_ends_print_the_same_line_and_exit_1(name, tmp_path, capsys, monkeypatch, stage_ctx):
    """The Kubeflow lightweight components (``execute_paths``) and the Airflow tasks
    (``exit_on_known_error(execute, ...)``) run inside a host process: they print the same one
    line as ``pinsage run`` and raise ``SystemExit(1)``, which both hosts report without a traceback."""
    from components.orchestration.execution import execute, execute_paths, exit_on_known_error
    from components.stages import get_stage
    from pinsage_model.config import load_config

    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(NOW))
    case = BY_NAME[name]
    (tmp_path / "in").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "corpus", "data": case.build(tmp_path / "in")}))
    capsys.readouterr()
    assert cli.main(["run", "--config", str(config), "--run-dir", str(tmp_path / "a"), "--to", "raw"]) == case.rc
    line = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    with pytest.raises(SystemExit) as kfp:
        execute_paths("raw", str(config), str(tmp_path / "kfp"), stage_ctx)
    assert kfp.value.code == 1
    assert [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")] == line
    if case.rc == 2:
        return  # the DAG loads its config at parse time; a config error is a DagBag import error
    with pytest.raises(SystemExit) as airflow:
        exit_on_known_error(
            execute, get_stage("raw"), load_config(config), {}, tmp_path / "dag" / "raw", stage_ctx, force=True
        )
    assert airflow.value.code == 1
    assert [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")] == line
    assert not (tmp_path / "kfp").exists() and not (tmp_path / "dag" / "raw").exists()


def test_a_bug_is_not_swallowed():
    from components.orchestration.execution import exit_on_known_error

    def bug():
        raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError):
        exit_on_known_error(bug)


def test_future_rule_follows_the_logical_time_and_is_off_at_the_epoch(tmp_path):
    """A timestamp is "in the future" relative to the run's logical time; the Kubeflow pipeline's
    default logical time (the Unix epoch, none given) turns the rule off rather than refusing all."""
    from components.orchestration.execution import execute
    from components.stages import StageContext, get_stage
    from pinsage_model.config import config_from_dict

    (tmp_path / "in").mkdir()
    cfg = config_from_dict({"data": BY_NAME["csv_bad_values"].build(tmp_path / "in")})
    reports = {}
    for when in ("2026-01-01T00:00:00Z", "2200-01-01T00:00:00Z", "1970-01-01T00:00:00Z"):
        ctx = StageContext.create(tmp_path / "runs", "r", when)
        reports[when] = execute(get_stage("raw"), cfg, {}, tmp_path / when[:4] / "raw", ctx)
    reasons = {w: next(iter(r["files"].values()))["reasons"] for w, r in reports.items()}
    assert reasons["2026-01-01T00:00:00Z"] == {"negative weight": 1, FUTURE_REASON: 1, "negative timestamp": 1}
    assert (
        reasons["2200-01-01T00:00:00Z"]
        == reasons["1970-01-01T00:00:00Z"]
        == {"negative weight": 1, "negative timestamp": 1}
    )
    assert reports["2026-01-01T00:00:00Z"]["future_timestamps_after"] == "2026-01-01T00:00:00Z"
    assert reports["1970-01-01T00:00:00Z"]["future_timestamps_after"] is None
