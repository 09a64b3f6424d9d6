"""The registration stage's run report (issue 28, points 4 and 5): what changes if the challenger
is promoted, on a fixed sample of queries, logged to MLflow and shown in ``report.md`` and the
self-contained ``report.html``, which headless Chromium renders with its tables and plot.

Two hand-built runs (random unit embeddings of 40 items, titles, three users) are registered in
turn on a SQLite store in tmp; the second is compared with the first, the champion.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from run_fixtures import make_run

from components.orchestration.execution import execute
from components.registry import mlflow_store
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict

CHROMIUM = Path("/usr/bin/chromium")
EVAL_MD = """# Offline evaluation

## Test split

| method | hit@10 | MRR |
|---|---:|---:|
| pinsage | 0.3000 | 0.1000 |

![hit-rate@K](hit_rate_curve.png)
"""


def register(cfg, run_dir: Path, area: Path) -> dict:
    stage = get_stage("registration")
    ctx = StageContext.create(area, run_dir.name, "2026-01-12T00:00:00Z")
    execute(stage, cfg, {n: run_dir / n for n in stage.inputs}, run_dir / "registration", ctx)
    return json.loads((run_dir / "registration" / "decision.json").read_text())


def hand_built_run(run_dir: Path, seed: int, hr10: float) -> Path:
    """A run of 40 items whose evaluation report has a table and a real plot (a red line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = make_run(run_dir, seed=seed, hr10=hr10, mrr=0.1, num_items=40, dim=8)
    (run / "evaluation" / "report.md").write_text(EVAL_MD)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 10, 50], [0.1, 0.3, 0.6], color="red", linewidth=4)
    fig.savefig(run / "evaluation" / "hit_rate_curve.png", dpi=60)
    plt.close(fig)
    return run


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    area = tmp_path_factory.mktemp("report")
    cfg = config_from_dict({"name": "t", "tracking": {"registered_model": "report-model"}})
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        first = register(cfg, hand_built_run(area / "run1", 1, 0.3), area)
        second = register(cfg, hand_built_run(area / "run2", 2, 0.4), area)
        yield cfg, area, first, second


def test_the_first_model_has_no_champion_to_compare(registered):
    _, area, first, _ = registered
    assert first["changes"] is None
    assert "No champion to compare with" in (area / "run1" / "registration" / "report.md").read_text()


def test_changes_against_the_champion_are_in_the_decision_mlflow_and_the_report(registered):
    cfg, area, _, second = registered
    changes = second["changes"]
    assert changes["champion"] == 1 and changes["seed"] == cfg.seed_for("index")
    related, feeds = changes["related_items"], changes["homefeeds"]
    assert related["queries"] == 40 and feeds["queries"] == 3  # every common item, every user
    for c in (related, feeds):  # two unrelated random models: the answers differ, some items are new
        assert 0 <= c["mean_overlap_at_10"] < 1 and 0 <= c["share_changed_entirely"] <= 1 and c["new_items"] >= 0
    client = mlflow_store.client_for(cfg, area)
    run = client.get_run(second["mlflow_run_id"])
    assert run.data.metrics["changes.related_items.mean_overlap_at_10"] == pytest.approx(related["mean_overlap_at_10"])
    assert run.data.metrics["changes.homefeeds.new_items"] == feeds["new_items"]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert logged == {"report/report.md", "report/report.html"}
    md = (area / "run2" / "registration" / "report.md").read_text()
    assert "## What changes if this model is promoted" in md and "Against the champion, version 1" in md
    assert f"| related items | 40 | {related['mean_overlap_at_10']:.3f} |" in md


def test_the_report_shows_samples_with_titles(registered):
    _, area, _, _ = registered
    md = (area / "run2" / "registration" / "report.md").read_text()
    assert md.count("### Related to i") == 5 and md.count("### Homefeed of user u") == 3
    assert "Title i" in md  # titles beside the ids


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: `make test` installs Debian's chromium (target `browser`)")
    return CHROMIUM


def headless(chromium: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
    ]
    return subprocess.run([str(chromium), *flags, *args], capture_output=True, text=True, timeout=120)


def test_report_html_renders_tables_and_plots_in_chromium(registered, chromium, tmp_path):
    _, area, _, _ = registered
    page = (area / "run2" / "registration" / "report.html").resolve()
    dom = headless(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<table>") >= 1 + 1 + 5 + 3  # evaluation, changes, 5 related, 3 homefeeds
    assert '<img alt="hit-rate@K" src="data:image/png;base64,' in dom.stdout
    shot = tmp_path / "shot.png"
    done = headless(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image

    rgb = matplotlib.image.imread(str(shot))[..., :3]  # floats in [0, 1]
    ink = (rgb < 0.9).any(axis=2).mean()
    red = ((rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).sum()
    assert ink > 0.01, f"the screenshot is blank ({ink:.4f} of pixels not white)"
    assert red > 50, "the plot's red line is not on the screenshot: the inlined image did not render"
