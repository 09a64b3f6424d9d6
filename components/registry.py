"""The ordered list of pipeline stages. Orchestrators (local runner, Airflow, KFP) read this.

Importing this module is cheap: component modules import TensorFlow/Spark inside ``run``.
"""

from __future__ import annotations

from components.base import Stage

STAGES: tuple[Stage, ...] = (
    Stage("raw", (), ("data",), "load or generate interactions and items into the data contracts", "components.ingest"),
    Stage("pairs", ("raw",), ("pairs", "spark"), "engagement pairs and 70/10/20 splits (Spark)", "components.extract_pairs"),
    Stage("graph", ("raw", "pairs"), ("graph", "spark"), "item-collection CSR graph and training subgraph", "components.build_graph"),
    Stage("features", ("raw", "graph"), ("features",), "TF Transform item features", "components.features"),
    Stage("neighbourhoods", ("graph",), ("sampler",), "random-walk importance neighbourhoods", "components.neighbourhoods"),
    Stage("model", ("graph", "features", "neighbourhoods"), ("model", "train", "sampler"), "PinSage training", "components.train"),
    Stage("embeddings", ("graph", "features", "neighbourhoods", "model"), ("inference", "spark"), "layer-wise inference of item and collection embeddings", "components.infer"),
    Stage("evaluation", ("raw", "graph", "features", "neighbourhoods", "embeddings"), ("evaluation", "sampler"), "hit-rate, MRR, kurtosis vs baselines", "components.evaluate"),
    Stage("index", ("graph", "embeddings", "evaluation"), ("index",), "faiss index publishing", "components.publish_index"),
)

STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name_or_module: str) -> Stage:
    """Look a stage up by name (``pairs``) or module (``components.extract_pairs``)."""
    for s in STAGES:
        if name_or_module in (s.name, s.module, s.module.rsplit(".", 1)[-1]):
            return s
    raise KeyError(f"unknown stage '{name_or_module}'; stages are: {', '.join(STAGE_NAMES)}")


def available_stages() -> tuple[Stage, ...]:
    """Stages whose component module exists in this checkout."""
    import importlib.util

    return tuple(s for s in STAGES if importlib.util.find_spec(s.module) is not None)
