"""The ablation's variant configs (paper Tables 1 and 4) and its table."""

import argparse

from components.commands import ablation
from pinsage_model.config import config_from_dict

# the paper's model: the full variant (importance pooling, hard negatives, max-margin) is this config
BASE = config_from_dict({"sampler": {"top_t": 20}, "model": {"pooling": "importance"}, "train": {"loss": "max_margin"}})


def test_table1_variants_override_pooling_loss_and_hard_negatives():
    got = {name: ablation.variant_config(BASE, name) for name in ablation.VARIANTS}
    assert (got["max-pooling"].model.pooling, got["max-pooling"].train.use_hard_negatives) == ("max", False)
    assert (got["mean-pooling"].model.pooling, got["mean-pooling"].train.loss.kind) == ("mean", "max_margin")
    xent = got["mean-pooling-xent"].train
    assert xent.loss.kind == "xent" and not xent.use_hard_negatives
    assert got["mean-pooling-hard"].train.use_hard_negatives and got["mean-pooling-hard"].model.pooling == "mean"
    assert got["pinsage"].model.pooling == "importance" and got["pinsage"].train.use_hard_negatives
    # baselines are evaluated once, with the full variant
    assert got["pinsage"].evaluation.baselines == BASE.evaluation.baselines
    assert all(got[n].evaluation.baselines == () for n in ablation.VARIANTS if n != "pinsage")
    # the full variant is the configured model itself, so the ablation reuses the run's own stages
    assert got["pinsage"] == BASE
    # nothing else changes
    assert all(c.data == BASE.data and c.sampler == BASE.sampler for c in got.values())


def test_t_sweep_reuses_the_configured_t():
    plan = ablation.plan(BASE, ["mean-pooling", "pinsage"], [10, 20, 50])
    assert list(plan) == ["mean-pooling", "pinsage", "pinsage-T10", "pinsage-T50"]  # T=20 is "pinsage"
    assert plan["pinsage-T10"].sampler.top_t == 10 and plan["pinsage-T50"].sampler.top_t == 50
    assert plan["pinsage-T10"].evaluation.baselines == ()


def test_table_rows_and_baselines_once():
    def res(hit, mrr, kurt, with_baseline):
        methods = {
            "pinsage": {
                "test": {"hit_rate_at_10": hit, "mrr": mrr},
                "validation": {"mrr": mrr / 2},
                "similarity": {"kurtosis": kurt},
            }
        }
        if with_baseline:
            methods["popularity"] = {
                "test": {"hit_rate_at_10": 0.1, "mrr": 0.05},
                "validation": {"mrr": 0.04},
                "similarity": None,
            }
        return {"metrics": {"methods": methods}, "train_seconds": 12.0}

    results = {"pinsage": res(0.5, 0.4, 0.5, True), "mean-pooling": res(0.3, 0.2, 1.0, False)}
    md, rows = ablation.table(results, (10,), ("popularity",))
    assert [r["method"] for r in rows] == ["pinsage", "mean-pooling", "popularity"]  # baselines last
    assert "| pinsage | 0.5000 | 0.4000 | 0.50 | 0.2000 | 12.0 |" in md
    assert "| popularity | 0.1000 | 0.0500 | n/a | 0.0400 | n/a |" in md


def test_cli_rejects_unknown_variant(capsys):
    parser = argparse.ArgumentParser()
    ablation.add_arguments(parser)
    args = parser.parse_args(["--config", "configs/tiny.yaml", "--variants", "sum-pooling"])
    assert ablation.main(args) == 2
    assert "unknown variant 'sum-pooling'" in capsys.readouterr().err
