"""``pinsage tune`` helpers: overrides are validated, trials skip baselines, only validation is read."""

from __future__ import annotations

import argparse

import optuna
import pytest
import yaml

from components.commands import tune
from pinsage_model.config import ConfigError, config_from_dict, load_config


def test_apply_overrides_dotted_keys_and_validates():
    cfg = load_config("configs/tiny.yaml")
    out = tune.apply(cfg, {"train.base_lr": 0.003, "sampler.top_t": 50, "sampler.hard_negative_band": [0.01, 0.03]})
    assert (out.train.base_lr, out.sampler.top_t, out.sampler.hard_negative_band) == (0.003, 50, (0.01, 0.03))
    assert out.model == cfg.model
    with pytest.raises(ConfigError, match="train.loss"):
        tune.apply(cfg, {"train.loss": "hinge"})


def test_trials_evaluate_no_baselines():
    cfg = load_config("configs/tiny.yaml")
    assert cfg.evaluation.baselines
    assert tune.trial_config(cfg, {"train.epochs": 2}).evaluation.baselines == ()


def test_the_objective_reads_the_validation_split_only():
    metrics = {
        "methods": {
            "pinsage": {
                "validation": {"hit_rate_at_10": 0.2, "mrr": 0.1},
                "test": {"hit_rate_at_10": 0.9, "mrr": 0.8},
            }
        }
    }
    assert tune.validation_score(metrics) == (0.2, 0.1)


def test_the_user_objective_reads_the_users_validation_events_only():
    cfg = load_config("configs/tiny.yaml")
    names = tune.score_names(cfg, "user")
    assert names == (f"recall_at_{cfg.evaluation.user_ks[0]}", f"ndcg_at_{cfg.evaluation.user_ks[0]}")
    assert tune.score_names(cfg, "item") == ("hit_rate_at_10", "mrr")
    row = lambda r, n: {names[0]: r, names[1]: n}  # noqa: E731
    metrics = {
        "methods": {"pinsage": {"validation": {"hit_rate_at_10": 0.2, "mrr": 0.1}}},
        "user_level": {
            "methods": {"pinsage-pooled": row(0.9, 0.8)},
            "validation": {"pinsage-pooled": row(0.3, 0.25), "svd-recent": row(0.7, 0.6)},
        },
    }
    assert tune.validation_score(metrics, names) == (0.3, 0.25)
    with pytest.raises(ValueError, match="user-level validation"):
        tune.validation_score({"methods": metrics["methods"], "user_level": None}, names)


def test_the_user_objective_is_refused_without_users_validation_events(tmp_path, capsys):
    conf = tmp_path / "hash.yaml"
    conf.write_text("name: t\npairs:\n  split: hash\n")
    parser = argparse.ArgumentParser()
    tune.add_arguments(parser)
    args = parser.parse_args(
        ["--config", str(conf), "--trials", "1", "--objective", "user", "--run-dir", str(tmp_path / "r")]
    )
    assert tune.main(args) == 2
    assert "pairs.split: temporal" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("dims", [["lr"], ["loss"], list(tune.SPACES)])
def test_every_search_dimension_yields_a_valid_config(dims):
    cfg = load_config("configs/tiny.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        params = {}
        for d in dims:
            params.update(tune.SPACES[d](trial))
        tune.trial_config(cfg, params)  # raises ConfigError on any out-of-schema value
        study.tell(trial, 0.0)


def test_trial_zero_is_the_config_as_given():
    cfg = load_config("configs/tiny.yaml")
    start = tune.starting_point(cfg, ["lr", "loss", "band"])
    assert start["train.base_lr"] == cfg.train.base_lr and start["train.loss.kind"] == cfg.train.loss.kind
    assert start["sampler.hard_negative_band_lo"] == cfg.sampler.hard_negative_band[0]
    # the loss branch follows the config: max-margin asks for its margin, not a temperature
    assert cfg.train.loss.kind == "max_margin"
    assert start["train.loss.margin"] == cfg.train.loss.margin and "train.loss.temperature" not in start
    xent = tune.starting_point(load_config("configs/demo.yaml"), ["loss"])
    assert xent == {"train.loss.kind": "xent", "train.loss.temperature": 0.133, "train.loss.in_batch_negatives": True}


def test_the_best_config_is_written_as_rounded_overrides():
    cfg = tune.apply(load_config("configs/tiny.yaml"), {"train.base_lr": 0.0020554062603827007})
    text = tune.sparse_yaml(cfg)
    assert "base_lr: 0.00206\n" in text and "hard_negative_band" in text  # tiny's own choices stay
    assert "ease_lambda" not in text  # defaults are not written
    again = config_from_dict(yaml.safe_load(text))
    assert again.train.base_lr == 0.00206 and again.replace(train=cfg.train) == cfg
