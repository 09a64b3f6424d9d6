"""The layout the README's Layout section describes: a library in sub-packages that each say what
they hold, a small top level, and components grouped by role."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def packages(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("__init__.py"))


def test_library_top_level_holds_at_most_six_modules():
    top = sorted(p.name for p in (REPO / "pinsage_model").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 6, top


def test_every_subpackage_has_a_docstring():
    for root in ("pinsage_model", "components"):
        for pkg in packages(REPO / root):
            if pkg == REPO / root:
                continue
            doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text()))
            assert doc and len(doc.split()) >= 5, (
                f"{pkg.relative_to(REPO)}/__init__.py needs a docstring saying what it holds"
            )


def test_components_are_grouped_by_role():
    expected = {"stages", "orchestration", "commands", "registry"}
    found = {p.name for p in (REPO / "components").iterdir() if (p / "__init__.py").exists()}
    assert found == expected
    loose = sorted(p.name for p in (REPO / "components").glob("*.py") if p.name != "__init__.py")
    assert loose == ["cli.py", "logs.py"]


def test_stage_modules_are_named_as_the_stages():
    from components.stages import STAGE_NAMES

    modules = {p.stem for p in (REPO / "components" / "stages").glob("*.py") if p.stem != "__init__"}
    assert modules == set(STAGE_NAMES)


def test_no_function_over_sixty_lines():
    """Long functions hide what a stage does; split them into named steps (tests and benches aside)."""
    long = []
    for root in ("pinsage_model", "components", "dags"):
        for f in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    size = node.end_lineno - node.lineno + 1
                    if size > 60:
                        long.append(f"{f.relative_to(REPO)}:{node.lineno} {node.name} ({size} lines)")
    assert long == []
