"""``bench.webscale``: the paper-scale estimate is arithmetic on the measured rates, and a stage
no benchmark measured is reported as not measured, never filled in."""

from __future__ import annotations

import json

import pytest

from bench import webscale


def test_core_hours_and_machines_follow_the_measured_per_core_rate(tmp_path):
    (tmp_path / "pairs.json").write_text(
        json.dumps(
            {
                "machine": {"cpus": 2},
                "datasets": {
                    "synthetic-bench": {
                        "pairs": {"interactions_per_s": 7200.0},
                        "graph": {"interactions_per_s": 3600.0},
                    }
                },
            }
        )
    )
    rates = webscale.measured_rates(tmp_path)
    assert rates["pairs"].per_s == 7200.0 and rates["pairs"].cores == 2
    assert rates["features"] is None and rates["model"] is None
    rows = {r["stage"]: r for r in webscale.estimate(rates, hours=1.0, cores=10)}
    # 18e9 interactions at 3,600 per core-second: 1,388.9 core-hours, 139 ten-core machines for 1 h
    assert rows["pairs"]["core_hours"] == pytest.approx(18e9 / 3600 / 3600)
    assert rows["pairs"]["machines"] == 139
    assert rows["graph"]["machines"] == 278
    assert rows["features"]["measured"] is False and "core_hours" not in rows["features"]
    assert "not measured" in webscale.table(list(rows.values()), 1.0, 10)


def test_the_command_writes_its_json_and_refuses_bad_arguments(tmp_path, capsys):
    assert webscale.main(["--results", str(tmp_path), "--hours", "0"]) == 2
    assert "--hours" in capsys.readouterr().err
    assert webscale.main(["--results", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "webscale.json").read_text())
    assert out["paper_scale"]["edges"] == 18e9 and all(not r["measured"] for r in out["stages"])
