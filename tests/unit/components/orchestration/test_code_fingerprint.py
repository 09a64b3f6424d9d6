"""Fingerprints know the code: editing a stage's code reruns it and everything downstream, comments
and docstrings do not; the environment's tracking URI counts for registration; ``--force`` starts
from scratch instead of resuming an older attempt's checkpoints."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import textwrap
import uuid

import pytest
import stage_fixtures

from components.orchestration.execution import execute, fingerprint
from components.stages import Stage, get_stage
from pinsage_model.config import config_from_dict

STAGE_SOURCE = textwrap.dedent(
    '''
    """A test stage: copies its upstream values and appends its own tag."""
    CALLS = []


    def run(cfg, inputs, out_dir, ctx):
        CALLS.append(__name__)
        upstream = "".join((p / "value.txt").read_text() for p in inputs.values())
        (out_dir / "value.txt").write_text(upstream + "{tag};")
        return {{}}
    '''
)


@dataclasses.dataclass(frozen=True)
class CopiedStage(Stage):
    """A stage whose module lives in a package the test writes (a copy it may edit)."""

    package: str = ""

    @property
    def module(self) -> str:
        return f"{self.package}.{self.name}"


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    package = f"copied_stages_{uuid.uuid4().hex[:8]}"
    (tmp_path / "src" / package).mkdir(parents=True)
    (tmp_path / "src" / package / "__init__.py").write_text("")
    for name in ("a", "b", "c"):
        (tmp_path / "src" / package / f"{name}.py").write_text(STAGE_SOURCE.format(tag=name))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    stages = [
        CopiedStage("a", (), ("data",), "first", package=package),
        CopiedStage("b", ("a",), ("train",), "second", package=package),
        CopiedStage("c", ("b",), ("model",), "third", package=package),
    ]
    yield tmp_path / "src" / package, stages
    for name in [m for m in sys.modules if m.startswith(package)]:
        del sys.modules[name]


def run_all(stages, run_dir, ctx) -> list[str]:
    """Run the stages in order; the names of those that ran (not skipped)."""
    cfg = config_from_dict({})
    ran = []
    for s in stages:
        importlib.invalidate_caches()
        rep = execute(s, cfg, {i: run_dir / i for i in s.inputs}, run_dir / s.name, ctx)
        ran += [] if rep["skipped"] else [s.name]
    return ran


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    module = f"{path.parent.name}.{path.stem}"
    sys.modules.pop(module, None)  # the next run imports the edited code


def test_editing_a_stage_reruns_it_and_everything_downstream(pipeline, tmp_path, stage_ctx):
    src, stages = pipeline
    run_dir = tmp_path / "run"
    assert run_all(stages, run_dir, stage_ctx) == ["a", "b", "c"]
    assert run_all(stages, run_dir, stage_ctx) == []  # the code untouched: everything skips
    edit(src / "b.py", '"b;"', '"b2;"')
    assert run_all(stages, run_dir, stage_ctx) == ["b", "c"]
    assert (run_dir / "c" / "value.txt").read_text() == "a;b2;c;"
    # comments, layout and docstrings are not code: nothing reruns
    edit(src / "a.py", '"""A test stage', '# a comment\n\n"""An edited test stage')
    assert run_all(stages, run_dir, stage_ctx) == []


def test_the_library_the_package_version_and_first_party_imports_are_part_of_the_code(monkeypatch):
    import importlib.metadata

    from components.orchestration import execution

    registration = get_stage("registration")
    code = execution.code_version(registration)
    assert "components.registry.mlflow_store" in code["modules"]  # what registration imports
    assert "components.registry.servable" in code["modules"]  # the pyfunc it logs
    assert not any(m.startswith("components.orchestration") for m in code["modules"])
    cfg = config_from_dict({})
    before = fingerprint(registration, cfg, {})
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")
    assert fingerprint(registration, cfg, {}) != before


def test_the_tracking_uri_from_the_environment_counts_for_registration_only(monkeypatch):
    cfg = config_from_dict({})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    reg, pairs = get_stage("registration"), get_stage("pairs")
    before = fingerprint(reg, cfg, {}), fingerprint(pairs, cfg, {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:secret@mlflow.example:5000")
    assert fingerprint(reg, cfg, {}) != before[0]
    assert fingerprint(pairs, cfg, {}) == before[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:rotated@mlflow.example:5000")
    with_secret = fingerprint(reg, cfg, {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:secret@mlflow.example:5000")
    assert fingerprint(reg, cfg, {}) == with_secret  # a rotated password is the same registry


def test_the_sampler_backend_and_thread_counts_leave_the_fingerprint():
    stage = get_stage("neighbourhoods")
    base = fingerprint(stage, config_from_dict({}), {})
    other = config_from_dict({"sampler": {"backend": "spark", "num_threads": 3}, "features": {}})
    assert fingerprint(stage, other, {}) == base


def test_force_starts_from_scratch_instead_of_resuming_checkpoints(tmp_path, stage_ctx, monkeypatch):
    stage_fixtures.CALLS.clear()
    stage_fixtures.SCRATCH.clear()
    seen: list[bool] = []

    def run(cfg, inputs, out_dir, ctx):
        seen.append((ctx.scratch_dir / "checkpoint").exists())
        return stage_fixtures.run_fail(cfg, inputs, out_dir, ctx)

    monkeypatch.setattr(Stage, "load_run", lambda self: run)
    stage = Stage("m", (), ("train",), "trains")
    cfg = config_from_dict({})
    for force in (False, False, True):
        with pytest.raises(RuntimeError, match="boom"):
            execute(stage, cfg, {}, tmp_path / "m", stage_ctx, force=force)
    assert seen == [False, True, False]  # a plain retry resumes; --force does not
