"""Settings the gate or a stage cannot work with are refused before any stage runs, as one line
naming the key (issue 26, point 5)."""

from __future__ import annotations

import pytest

from components.cli import main

BAD = [
    ("evaluation:\n  ks: [50, 100]\n", "evaluation.ks", "must include 10 while tracking.enabled"),
    ("evaluation:\n  ks: []\n", "evaluation.ks", "expects a non-empty list"),
    ("pairs:\n  fractions: [0.8, 0.0, 0.2]\n", "pairs.fractions", "needs a validation share > 0"),
    ("index:\n  recall_queries: 0\n", "index.recall_queries", "must be greater than 0"),
    ("data:\n  preset: tiny\nsampler:\n  top_t: 300\n", "sampler.top_t", "must be below the number of items (300)"),
    (
        "data:\n  preset: tiny\nsampler:\n  hard_negative_band: [0.001, 0.002]\n",
        "sampler.hard_negative_band",
        "holds no PPR rank of 300 items",
    ),
]


@pytest.mark.parametrize("text,key,why", BAD, ids=[b[1] + ":" + b[2][:12] for b in BAD])
def test_pinsage_run_refuses_the_config_before_any_stage(tmp_path, capsys, text, key, why):
    conf = tmp_path / "bad.yaml"
    conf.write_text(text)
    assert main(["run", "--config", str(conf), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {conf}: key '{key}' ") and why in err[0]
    assert not (tmp_path / "run").exists()  # no stage ran, nothing was written


def test_without_tracking_the_gate_settings_are_free(tmp_path):
    from pinsage_model.config import config_from_dict

    cfg = config_from_dict(
        {"tracking": {"enabled": False}, "evaluation": {"ks": [50]}, "pairs": {"fractions": [0.8, 0, 0.2]}}
    )
    assert cfg.evaluation.ks == (50,)


def test_the_sampler_is_checked_against_a_graph_size_the_config_cannot_know():
    """Other data sets learn their item count from the graph: the neighbourhoods stage calls this
    check with it and reports its message as one line."""
    from pinsage_model.config import SamplerConfig, check_sampler

    with pytest.raises(ValueError, match=r"= 5 must be below the number of items \(5\)") as e:
        check_sampler(SamplerConfig(top_t=5), 5)
    assert e.value.key == "sampler.top_t"  # type: ignore[attr-defined]
    check_sampler(SamplerConfig(top_t=4, hard_negative_band=(0.0, 0.5)), 5)
