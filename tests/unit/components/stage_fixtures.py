"""Tiny stage implementations used by the runner tests (not part of the pipeline)."""

from pathlib import Path

CALLS: list[str] = []
SCRATCH: list[Path] = []


def run_copy(cfg, inputs, out_dir: Path, ctx) -> dict:
    """Writes one file derived from the config seed and the upstream file, if any; leaves a
    checkpoint in its scratch folder (which it records)."""
    CALLS.append("copy")
    SCRATCH.append(ctx.scratch_dir)
    ctx.scratch_dir.mkdir(parents=True, exist_ok=True)
    (ctx.scratch_dir / "checkpoint").write_text("epoch 1")
    upstream = "".join((p / "value.txt").read_text() for p in inputs.values())
    (out_dir / "value.txt").write_text(f"{upstream}seed={cfg.seed};")
    return {"rows": 1}


def run_fail(cfg, inputs, out_dir: Path, ctx) -> dict:
    CALLS.append("fail")
    SCRATCH.append(ctx.scratch_dir)
    ctx.scratch_dir.mkdir(parents=True, exist_ok=True)
    (ctx.scratch_dir / "checkpoint").write_text("epoch 1")
    (out_dir / "partial.txt").write_text("half")
    raise RuntimeError("boom")


def writes_outputs(cfg) -> bool:
    """As the model stage's rule, for these stages: a ``train.strategy: multi_worker`` process
    here stands for a non-chief worker, which takes part without writing the outputs."""
    return cfg.train.strategy != "multi_worker"
