"""The README's "Run on your own data" example, run as written on a generated CSV.

The shell block after the ``<!-- own-data -->`` marker in README.md (``pinsage init --data``,
``pinsage run --data``, ``pinsage recommend``) is run with bash in a temp folder that holds
``events.csv`` (the file the block names), with the README's ``.venv/bin/`` replaced by this
interpreter's folder. The block must write the sparse config, train with the shipped settings,
say which settings ran and where the results, report and index are, publish an index and print
related items for an item of the CSV.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- own-data -->"


def own_data_block(text: str) -> str:
    """The first ```bash block after the own-data marker."""
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```bash\n(.*?)```", after, re.S)
    assert match, f"no ```bash block after {MARKER} in README.md"
    return match.group(1)


def write_events(path: Path, *, users: int = 300, items: int = 400, topics: int = 10, seed: int = 0) -> set[str]:
    """A CSV of user_id,item_id,timestamp with structure a model can learn; returns its item ids.

    Items belong to topics (item i to topic i % topics); each user browses one favourite topic
    most of the time, in sessions of consecutive events a few minutes apart, so consecutive
    items of a user are related. About 5,000 events over 60 days of 2024.
    """
    rng = np.random.default_rng(seed)
    by_topic = [np.arange(t, items, topics) for t in range(topics)]
    start = 1_704_067_200  # 2024-01-01 UTC: well before any run's logical time
    rows = ["user_id,item_id,timestamp"]
    seen: set[str] = set()
    for u in range(users):
        favourite = rng.integers(topics)
        t = start + int(rng.integers(0, 60 * 86_400))
        for _ in range(int(rng.integers(8, 27))):
            topic = favourite if rng.random() < 0.8 else rng.integers(topics)
            pool = by_topic[topic]
            # a skewed choice inside the topic: a few popular items, a long tail
            item = pool[min(int(rng.exponential(len(pool) / 5)), len(pool) - 1)]
            rows.append(f"user{u},item{item},{t}")
            seen.add(f"item{item}")
            t += int(rng.integers(60, 1_800))
    path.write_text("\n".join(rows) + "\n")
    return seen


def test_own_data_block_is_the_three_lines():
    block = own_data_block(README.read_text())
    lines = [ln for ln in block.splitlines() if ln.strip()]
    assert len(lines) == 3, block
    assert "pinsage init --data events.csv" in lines[0] and "pinsage run --data events.csv" in lines[1]
    assert re.search(r"pinsage recommend --run-dir runs/events --item \S+", lines[2])


@pytest.mark.slow
def test_readme_own_data_example_runs(tmp_path):
    block = own_data_block(README.read_text())
    item_ids = write_events(tmp_path / "events.csv")
    query = re.search(r"--item (\S+)", block).group(1)
    assert query in item_ids, f"the README's example item {query} is not in the generated CSV"
    script = block.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "interactions_path: events.csv" in (tmp_path / "events.yaml").read_text()
    # the settings that ran (the shipped defaults) and where to look, printed by `run`
    assert "settings: the shipped defaults" in done.stdout and "train.loss.kind=xent" in done.stdout
    for what in ("results:", "report:", "index:", "recommendations:"):
        assert re.search(rf"^{what}\s+\S", done.stdout, re.M), (what, done.stdout[-3000:])
    run_dir = tmp_path / "runs" / "events"
    assert (run_dir / "registration" / "report.html").exists()
    assert any((run_dir / "index").iterdir()), "the run published no index"
    # the recommendations: other items of the CSV, printed after the query
    after_query = re.split(rf"\b{query}\b", done.stdout, maxsplit=1)[-1]
    related = set(re.findall(r"\bitem\d+\b", after_query)) & item_ids
    assert len(related - {query}) >= 5, done.stdout
