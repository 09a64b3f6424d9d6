"""The config schema: defaults, strict validation with messages naming key and file."""

import dataclasses

import pytest
import yaml

from pinsage_model.config import (
    ConfigError,
    PipelineConfig,
    config_to_dict,
    flatten,
    load_config,
    save_resolved,
)


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_demo_config_loads_and_is_frozen():
    cfg = load_config("configs/demo.yaml")
    assert cfg.data.preset == "demo"
    assert cfg.sampler.top_t == 20
    assert cfg.pairs.fractions == (0.7, 0.1, 0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


def test_every_config_file_in_repo_validates():
    from pathlib import Path

    files = sorted(Path("configs").glob("*.yaml"))
    assert files, "configs/ holds no YAML"
    for f in files:
        assert isinstance(load_config(f), PipelineConfig)


def test_unknown_key_names_key_and_file(tmp_path):
    p = write(tmp_path, "train:\n  epochz: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "train.epochz" in str(e.value) and str(p) in str(e.value)
    assert "epochs" in str(e.value)  # lists the allowed keys


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(write(tmp_path, "modle: {}\n"))


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("train:\n  epochs: three\n", "train.epochs", "an integer"),
        ("train:\n  epochs: 2.5\n", "train.epochs", "an integer"),
        ("train:\n  deterministic: 1\n", "train.deterministic", "a boolean"),
        ("model:\n  pooling: sum\n", "model.pooling", "one of"),
        ("pairs:\n  fractions: [0.7, 0.3]\n", "pairs.fractions", "a list of 3 items"),
        ("pairs:\n  split: random\n", "pairs.split", "one of 'temporal', 'hash'"),
        ("sampler: 5\n", "sampler", "a mapping"),
        ("train:\n  strategy: parameter_server\n", "train.strategy", "one of 'mirrored', 'multi_worker'"),
    ],
)
def test_wrong_types(tmp_path, text, key, expected):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert f"'{key}'" in str(e.value) and expected in str(e.value)


def test_value_ranges(tmp_path):
    with pytest.raises(ConfigError, match="pairs.fractions"):
        load_config(write(tmp_path, "pairs:\n  fractions: [0.5, 0.1, 0.1]\n"))
    with pytest.raises(ConfigError, match="restart_prob"):
        load_config(write(tmp_path, "sampler:\n  restart_prob: 1.0\n"))
    with pytest.raises(ConfigError, match="pairs.train_window"):
        load_config(write(tmp_path, "pairs:\n  train_window: 0\n"))
    with pytest.raises(ConfigError, match="train.num_devices' must be >= 1"):
        load_config(write(tmp_path, "train:\n  num_devices: 0\n"))
    with pytest.raises(ConfigError, match="orchestration.tfjob_workers' must be >= 0"):
        load_config(write(tmp_path, "orchestration:\n  tfjob_workers: -1\n"))


def test_a_tfjob_needs_the_multi_worker_strategy(tmp_path):
    with pytest.raises(
        ConfigError, match="tfjob_workers' = 4 launches a multi-worker TFJob, which needs train.strategy"
    ):
        load_config(write(tmp_path, "orchestration:\n  tfjob_workers: 4\n"))
    cfg = load_config(write(tmp_path, "orchestration:\n  tfjob_workers: 4\ntrain:\n  strategy: multi_worker\n"))
    assert cfg.orchestration.tfjob_workers == 4 and cfg.train.strategy == "multi_worker"


def test_features_runner_settings(tmp_path):
    cfg = load_config(write(tmp_path, "features:\n  direct_running_mode: multi_processing\n  direct_num_workers: 0\n"))
    assert (cfg.features.direct_running_mode, cfg.features.direct_num_workers) == ("multi_processing", 0)
    # in_memory is one worker in this process: more workers would silently not happen
    with pytest.raises(ConfigError, match="features.direct_num_workers' must be 1"):
        load_config(write(tmp_path, "features:\n  direct_num_workers: 2\n"))
    with pytest.raises(ConfigError, match="features.direct_num_workers' must be >= 0 and batch_rows >= 1"):
        load_config(write(tmp_path, "features:\n  batch_rows: 0\n"))
    with pytest.raises(ConfigError, match="features.direct_running_mode"):
        load_config(write(tmp_path, "features:\n  direct_running_mode: threads\n"))


def test_int_accepted_for_float_and_optional(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  base_lr: 1\npairs:\n  min_rating: 4\n"))
    assert cfg.train.base_lr == 1.0 and isinstance(cfg.train.base_lr, float)
    assert cfg.pairs.min_rating == 4.0


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [\n"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("configs/demo.yaml", overrides={"train": {"epochs": 2}})
    save_resolved(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg and again.train.epochs == 2
    assert yaml.safe_load((tmp_path / "resolved.yaml").read_text()) == config_to_dict(cfg)
    assert flatten(cfg)["train.epochs"] == 2
