"""No module reaches into another first-party module's private names: neither ``from X import
_name`` nor ``X._name`` on an imported first-party module (issue #27). A helper another module
needs is public, with a docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pinsage_model", "components", "dags")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _first_party(dotted: str | None) -> bool:
    return bool(dotted) and dotted.split(".")[0] in PACKAGES


def private_uses(path: Path) -> list[str]:
    """``line: what`` for every private name of another first-party module that ``path`` uses."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    modules: set[str] = set()  # local names bound to first-party modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or _first_party(node.module)):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}")
                elif node.module and _is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _first_party(alias.name):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):  # pinsage_model.data.x._y: the root name
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=lambda f: int(f.split(":")[0]))


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_names_across_modules(path):
    assert private_uses(path) == []


def test_the_check_sees_both_forms(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from pinsage_model.io import _tmp_sibling\n"
        "from pinsage_model import io\n"
        "from pinsage_model.io import atomic_path\n"
        "import pinsage_model.graph.csr as csr\n"
        "io._json_default(1)\ncsr._mmap_member\natomic_path.__name__\nself._own\n"
    )
    assert private_uses(src) == [
        "1: from pinsage_model.io import _tmp_sibling",
        "5: io._json_default",
        "6: csr._mmap_member",
    ]
