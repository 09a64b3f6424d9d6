"""``--set section.key=value``: typed by the schema, errors name the key (issue 28, point 1)."""

from __future__ import annotations

import pytest

from pinsage_model.config import ConfigError, load_config, parse_sets


def test_values_are_typed_by_the_schema():
    assert parse_sets(["train.base_lr=0.01", "name=123", "spark.master=local[2]", "evaluation.ks=[10, 50]"]) == {
        "train": {"base_lr": 0.01},
        "name": "123",  # a string field keeps the text: "123" is not made an int
        "spark": {"master": "local[2]"},  # nor is local[2] read as YAML
        "evaluation": {"ks": [10, 50]},
    }
    cfg = load_config(
        "configs/tiny.yaml", sets=["train.epochs=3", "user_head.enabled=true", "pairs.min_rating=null", "name=123"]
    )
    assert (cfg.train.epochs, cfg.user_head.enabled, cfg.pairs.min_rating, cfg.name) == (3, True, None, "123")


def test_a_tagged_union_switches_kind_or_keeps_it():
    demo = load_config("configs/demo.yaml")  # loss: {kind: xent, temperature: 0.133}
    kept = load_config("configs/demo.yaml", sets=["train.loss.in_batch_negatives=false"])
    assert (kept.train.loss.temperature, kept.train.loss.in_batch_negatives) == (demo.train.loss.temperature, False)
    switched = load_config("configs/demo.yaml", sets=["train.loss=max_margin", "train.loss.margin=0.3"])
    assert (switched.train.loss.kind, switched.train.loss.margin) == ("max_margin", 0.3)
    shorthand = load_config("configs/tiny.yaml", sets=["train.loss.margin=0.2"])  # tiny says `loss: max_margin`
    assert shorthand.train.loss.margin == 0.2


@pytest.mark.parametrize(
    "sets, message",
    [
        (["train.base_lr=abc"], "--set: key 'train.base_lr' expects a number, got str 'abc'"),
        (["train.epochs=0"], "--set: key 'train.epochs' must be greater than 0, got 0"),
        (["train.foo=1"], "--set: unknown key 'train.foo'; allowed here: epochs,"),
        (["pairs.split=random"], "--set: key 'pairs.split' expects one of 'temporal', 'hash', got 'random'"),
        (["train.epochs"], "--set 'train.epochs': expected section.key=value"),
        (["evaluation.ks=[10"], "--set: key 'evaluation.ks' has a value that is not valid YAML"),
    ],
)
def test_a_wrong_set_is_one_line_naming_the_key(sets, message):
    with pytest.raises(ConfigError) as e:
        load_config("configs/tiny.yaml", sets=sets)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_an_error_in_the_file_still_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: -1}\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: key 'train.epochs'"):
        load_config(bad, sets=["train.epochs=3"])
