"""The local runner imports later stages' slow libraries ahead, in a background thread."""

from __future__ import annotations

import sys

from components.orchestration.local_runner import _import_ahead
from components.stages import Stage


def stage(name: str, *libraries: str) -> Stage:
    return Stage(name, (), (), "test stage", libraries)


def test_later_stages_libraries_are_imported_ahead(tmp_path, monkeypatch):
    for name in ("ahead_first", "ahead_later", "ahead_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / "ahead_first.py").write_text("")
    (tmp_path / "ahead_later.py").write_text("")
    (tmp_path / "ahead_broken.py").write_text("raise ImportError('missing native library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    thread = _import_ahead(
        [stage("a", "ahead_first"), stage("b", "ahead_broken", "ahead_later"), stage("c", "ahead_later")]
    )
    assert thread is not None and thread.daemon
    thread.join(timeout=30)
    assert "ahead_later" in sys.modules  # after a failing one: the stage itself reports that failure
    assert "ahead_broken" not in sys.modules
    assert "ahead_first" not in sys.modules  # the first stage imports its own, no head start to give


def test_nothing_to_import_ahead():
    assert _import_ahead([stage("a", "json"), stage("b", "json", "os")]) is None  # already imported
    assert _import_ahead([stage("a")]) is None
