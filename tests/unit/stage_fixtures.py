"""Tiny stage implementations used by the runner tests (not part of the pipeline)."""

from pathlib import Path

CALLS: list[str] = []


def run_copy(cfg, inputs, out_dir: Path) -> dict:
    """Writes one file derived from the config seed and the upstream file, if any."""
    CALLS.append("copy")
    upstream = "".join((p / "value.txt").read_text() for p in inputs.values())
    (out_dir / "value.txt").write_text(f"{upstream}seed={cfg.seed};")
    return {"rows": 1}


def run_fail(cfg, inputs, out_dir: Path) -> dict:
    CALLS.append("fail")
    (out_dir / "partial.txt").write_text("half")
    raise RuntimeError("boom")
