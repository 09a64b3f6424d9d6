"""The README and docs/ stay true to the tree: links resolve, named paths and modules exist.

Checked in README.md and docs/*.md:

* every relative Markdown link points to an existing file, and its ``#anchor`` to a heading of
  that file (GitHub's slugs);
* every repository path written in backticks (``pinsage_model/...``, ``components/...``, ...)
  exists;
* every dotted reference to the code (``components.orchestration.execution.execute``) names a
  module, and what follows the module is defined in it; a ``Class.member`` of the library or the
  components names a member defined in the class's module;
* the README stays a page a newcomer reads: at most 250 lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("pinsage_model", "components", "dags", "tests", "bench", "configs", "infra", "docs", "requirements")
# Paths inside the container images, not in the repository: the image copies
# infra/config/cluster.yaml to configs/cluster.yaml.
IMAGE_ONLY = {"configs/cluster.yaml"}


def _ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_slug_follows_github():
    assert slug("Multi-worker training (TFJob)") == "multi-worker-training-tfjob"
    assert slug("Features stage (TF Transform), `python -m bench.bench_features`") == (
        "features-stage-tf-transform-python--m-benchbench_features"
    )


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert [p.name for p in PAGES[1:] if f"(docs/{p.name})" not in readme] == []


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_relative_links_resolve(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with this anchor")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_backticked_paths_exist(page):
    missing = []
    for code in re.findall(r"`([^`\n]+)`", page.read_text()):
        for word in code.split():
            path = word.split("::")[0].rstrip(",;:)")
            if path.split("/")[0] not in TOP or "/" not in path or re.search(r"[<*>{]|\.\.\.", path):
                continue
            if path not in IMAGE_ONLY and not (ROOT / path).exists():
                missing.append(path)
    assert missing == []


def _defines(source: str, name: str) -> bool:
    return (
        re.search(rf"^\s*(def|class) {name}\b|^\s*{name}\s*[:=]|^from .* import .*\b{name}\b", source, re.M) is not None
    )


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_dotted_references_resolve(page):
    unknown = []
    for code in re.findall(r"`([^`\n]+)`", page.read_text()):
        for ref in re.findall(r"\b((?:pinsage_model|components|dags|bench)(?:\.\w+)+)", code):
            parts = ref.split(".")
            for n in range(len(parts), 0, -1):
                base = ROOT.joinpath(*parts[:n])
                module = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
                if module.exists():
                    break
            else:
                unknown.append(ref)
                continue
            if n == 1 and not base.is_dir():
                unknown.append(ref)
            elif n < len(parts) and not _defines(module.read_text(), parts[n]):
                unknown.append(ref)
    assert unknown == []


def _class_modules() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for top in ("pinsage_model", "components"):
        for module in (ROOT / top).rglob("*.py"):
            for name in re.findall(r"^class (\w+)", module.read_text(), re.M):
                found.setdefault(name, []).append(module)
    return found


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_class_members_resolve(page):
    classes = _class_modules()
    unknown = []
    for code in re.findall(r"`([^`\n]+)`", page.read_text()):
        for cls, member in re.findall(r"(?<![\w.])([A-Z]\w+)\.([a-z_]\w*)\b", code):
            if cls in classes and not any(_defines(m.read_text(), member) for m in classes[cls]):
                unknown.append(f"{cls}.{member}")
    assert unknown == []
