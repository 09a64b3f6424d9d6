"""``pinsage config show``: the resolved config as YAML, non-default values marked."""

import argparse

import yaml

from components.commands import config as config_command
from pinsage_model.config import config_from_dict, load_config


def test_config_show_marks_every_non_default_value(capsys):
    assert config_command.main(config_command_args("configs/demo.yaml")) == 0
    out = capsys.readouterr().out
    marked = {line.split(":")[0].strip() for line in out.splitlines() if config_command.MARK in line}
    assert marked == {"name", "query_shift", "epochs", "base_lr", "temperature", "user_loss_weight", "enabled"}
    assert "  base_lr: 0.00206  # * default: 0.003" in out
    assert "  batch_size: 256\n" in out  # defaults unmarked
    # the output is YAML of the whole resolved config
    assert config_from_dict(yaml.safe_load(out)) == load_config("configs/demo.yaml")


def config_command_args(path: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config_command.add_arguments(parser)
    return parser.parse_args(["show", "--config", path])
