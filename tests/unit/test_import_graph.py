"""The import graph of ``pinsage_model/``, ``components/`` and ``dags/``, read from source with ``ast``:
no cycles (function-local imports included) and no arrow against the layers
(library -> components, library -> dags, components -> dags)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = {"pinsage_model": 0, "components": 1, "dags": 2}


def modules() -> dict[str, Path]:
    out = {}
    for package in LAYERS:
        for f in sorted((REPO / package).rglob("*.py")):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imported(tree: ast.AST, me: str, is_package: bool, known: dict[str, Path]) -> set[str]:
    """First-party modules a module imports anywhere in its body (``from a import b`` -> ``a.b``
    when that is a module, else ``a``)."""

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        return ".".join(parts) or None

    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = me.split(".")[: len(me.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in map(resolve, names) if m and m != me}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imported(ast.parse(f.read_text()), m, f.name == "__init__.py", known) for m, f in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_source():
    edges = graph()
    assert "components.registry.mlflow_store" in edges["components.stages.registration"]
    assert "components.stages" in edges["components.orchestration.execution"]
    # `from pinsage_model.evaluation import protocol` inside a function
    assert "pinsage_model.evaluation.protocol" in edges["components.stages.evaluation"]


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_a_made_up_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_arrow_against_the_layers():
    against = sorted(
        f"{m} -> {t}"
        for m, targets in graph().items()
        for t in targets
        if LAYERS[t.split(".")[0]] > LAYERS[m.split(".")[0]]
    )
    assert against == []
