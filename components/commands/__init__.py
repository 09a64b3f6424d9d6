"""``pinsage`` subcommands other than ``run``: generate, recommend, tune, ablation, promote/rollback."""
