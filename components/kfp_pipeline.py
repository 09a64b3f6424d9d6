"""Kubeflow Pipelines v2: the registered stages as one pipeline with typed artifacts.

Each stage is one KFP component whose output is a directory artifact
(``dsl.Output[dsl.Artifact]``); downstream components receive the upstream directories as
``dsl.Input[dsl.Artifact]`` and only paths travel between tasks. Two flavours share the wiring:

* **cluster**: container components running the image from ``orchestration.image`` with
  ``python -m components.<stage> --config C --<input> DIR ... --output DIR``;
* **local**: lightweight Python components (for ``kfp.local``'s ``SubprocessRunner``) that call
  :func:`components.base.execute` with the same arguments in the current virtualenv.

With ``tracking.enabled`` a ``track`` step (:mod:`components.tracking`: MLflow run, model
registration, promotion gate) runs after evaluation and before index publishing, which reads
``models:/<name>@champion``.

Usage::

    python -m components.kfp_pipeline --output build/pinsage_pipeline.yaml     # compile (make kfp)
    python -m components.kfp_pipeline --run-local runs/kfp --config configs/demo.yaml
    python -m components.kfp_pipeline --submit --config configs/demo.yaml      # to orchestration.kfp_host
"""

# No ``from __future__ import annotations``: KFP reads component annotations as real types.
import argparse
import dataclasses
import inspect
import logging
import sys
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

from kfp import dsl

from components.base import Stage
from components.lifecycle import READS_CHAMPION
from pinsage_model.config import PipelineConfig
from components.registry import STAGES

log = logging.getLogger("pinsage")

PIPELINE_NAME = "pinsage"
DEFAULT_CONFIG = "configs/demo.yaml"
# Lightweight components run in the current venv under kfp.local; this image only labels them.
LOCAL_BASE_IMAGE = "python:3.11-slim"


# --- lightweight components (local runs). One per stage; the signature mirrors the registry's
# inputs (tests/integration/test_kfp.py checks it). KFP ships each function's source to the
# executor, so the bodies import what they need (inside the executor ``kfp.dsl`` is a runtime
# stub, so they must not import this module).

@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def raw(config: str, output: dsl.Output[dsl.Artifact]):
    """Load or generate interactions and items into the data contracts."""
    from components.base import execute_paths

    execute_paths("raw", config, output.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def pairs(config: str, raw: dsl.Input[dsl.Artifact], output: dsl.Output[dsl.Artifact]):
    """Engagement pairs and 70/10/20 splits (Spark)."""
    from components.base import execute_paths

    execute_paths("pairs", config, output.path, raw=raw.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def graph(
    config: str, raw: dsl.Input[dsl.Artifact], pairs: dsl.Input[dsl.Artifact], output: dsl.Output[dsl.Artifact]
):
    """Item-collection CSR graph and training subgraph."""
    from components.base import execute_paths

    execute_paths("graph", config, output.path, raw=raw.path, pairs=pairs.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def features(
    config: str, raw: dsl.Input[dsl.Artifact], graph: dsl.Input[dsl.Artifact], output: dsl.Output[dsl.Artifact]
):
    """TF Transform item features."""
    from components.base import execute_paths

    execute_paths("features", config, output.path, raw=raw.path, graph=graph.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def neighbourhoods(config: str, graph: dsl.Input[dsl.Artifact], output: dsl.Output[dsl.Artifact]):
    """Random-walk importance neighbourhoods."""
    from components.base import execute_paths

    execute_paths("neighbourhoods", config, output.path, graph=graph.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def model(
    config: str,
    graph: dsl.Input[dsl.Artifact],
    features: dsl.Input[dsl.Artifact],
    neighbourhoods: dsl.Input[dsl.Artifact],
    output: dsl.Output[dsl.Artifact],
):
    """PinSage training."""
    from components.base import execute_paths

    execute_paths("model", config, output.path, graph=graph.path, features=features.path, neighbourhoods=neighbourhoods.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def embeddings(
    config: str,
    graph: dsl.Input[dsl.Artifact],
    features: dsl.Input[dsl.Artifact],
    neighbourhoods: dsl.Input[dsl.Artifact],
    model: dsl.Input[dsl.Artifact],
    output: dsl.Output[dsl.Artifact],
):
    """Layer-wise inference of item and collection embeddings."""
    from components.base import execute_paths

    execute_paths("embeddings", config, output.path, graph=graph.path, features=features.path, neighbourhoods=neighbourhoods.path, model=model.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def evaluation(
    config: str,
    raw: dsl.Input[dsl.Artifact],
    graph: dsl.Input[dsl.Artifact],
    features: dsl.Input[dsl.Artifact],
    neighbourhoods: dsl.Input[dsl.Artifact],
    embeddings: dsl.Input[dsl.Artifact],
    output: dsl.Output[dsl.Artifact],
):
    """Hit-rate, MRR, kurtosis vs baselines."""
    from components.base import execute_paths

    execute_paths("evaluation", config, output.path, raw=raw.path, graph=graph.path, features=features.path, neighbourhoods=neighbourhoods.path, embeddings=embeddings.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def index(
    config: str,
    graph: dsl.Input[dsl.Artifact],
    embeddings: dsl.Input[dsl.Artifact],
    evaluation: dsl.Input[dsl.Artifact],
    output: dsl.Output[dsl.Artifact],
):
    """faiss index publishing."""
    from components.base import execute_paths

    execute_paths("index", config, output.path, graph=graph.path, embeddings=embeddings.path, evaluation=evaluation.path)


@dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
def track(
    config: str,
    output: dsl.Output[dsl.Artifact],
    raw: Optional[dsl.Input[dsl.Artifact]] = None,
    pairs: Optional[dsl.Input[dsl.Artifact]] = None,
    graph: Optional[dsl.Input[dsl.Artifact]] = None,
    features: Optional[dsl.Input[dsl.Artifact]] = None,
    neighbourhoods: Optional[dsl.Input[dsl.Artifact]] = None,
    model: Optional[dsl.Input[dsl.Artifact]] = None,
    embeddings: Optional[dsl.Input[dsl.Artifact]] = None,
    evaluation: Optional[dsl.Input[dsl.Artifact]] = None,
):
    """MLflow: log the run, register the model, apply the promotion gate (before ``index``)."""
    from pathlib import Path

    from components.tracking import track_stage_dirs
    from pinsage_model.config import load_config

    given = {
        "raw": raw,
        "pairs": pairs,
        "graph": graph,
        "features": features,
        "neighbourhoods": neighbourhoods,
        "model": model,
        "embeddings": embeddings,
        "evaluation": evaluation,
    }
    dirs = {name: Path(art.path) for name, art in given.items() if art is not None}
    out = Path(output.path)
    out.mkdir(parents=True, exist_ok=True)
    # Locally the store sits in the kfp.local run folder; on a cluster MLFLOW_TRACKING_URI is set.
    track_stage_dirs(load_config(config), dirs, out, run_area=out.parents[1])


LOCAL_COMPONENTS: dict[str, Callable] = {
    "raw": raw,
    "pairs": pairs,
    "graph": graph,
    "features": features,
    "neighbourhoods": neighbourhoods,
    "model": model,
    "embeddings": embeddings,
    "evaluation": evaluation,
    "index": index,
}


def container_component(stage: Stage, image: str) -> Callable:
    """A container component running ``python -m <stage.module>`` in ``image``.

    Built from the registry so the CLI flags can never drift from ``components.base.stage_main``:
    ``--config C --<input> <input artifact path> ... --output <output artifact path>``.
    """

    def spec(*args):  # (config, *inputs, output) placeholders, in signature order
        config, *ins, output = args
        cli = ["--config", config]
        for name, art in zip(stage.inputs, ins):
            cli += [f"--{name}", art.path]
        return dsl.ContainerSpec(image=image, command=["python", "-m", stage.module], args=[*cli, "--output", output.path])

    params = [inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)]
    params += [
        inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Input[dsl.Artifact])
        for n in stage.inputs
    ]
    params.append(inspect.Parameter("output", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Output[dsl.Artifact]))
    spec.__signature__ = inspect.Signature(params)
    spec.__name__ = spec.__qualname__ = stage.name.replace("-", "_")
    spec.__doc__ = stage.description
    return dsl.container_component(spec)


def container_track_component(stages: Sequence[Stage], image: str) -> Callable:
    """The cluster ``track`` step: ``python -m components.tracking --config C --<stage> DIR ... --output DIR``."""
    names = tuple(s.name for s in stages if s.name not in READS_CHAMPION)
    tracked = Stage("track", names, (), "MLflow tracking, registration, promotion gate", "components.tracking")
    return container_component(tracked, image)


def pipeline_stages(stop_after: str = "") -> list[Stage]:
    """Implemented stages up to ``stop_after`` (all when empty) whose inputs are all included."""
    from components.runner import select_stages

    kept: list[Stage] = []
    for s in select_stages(None, stop_after or None):
        if all(n in {k.name for k in kept} for n in s.inputs):
            kept.append(s)
    return kept


def build_pipeline(
    target: Literal["cluster", "local"] = "cluster",
    image: str = "",
    stages: Sequence[Stage] | None = None,
    config_path: str = DEFAULT_CONFIG,
    track_run: bool = True,
):
    """Build the pipeline (a KFP graph component) over ``stages`` (default: all registered).

    Args:
      target: ``cluster`` for container components, ``local`` for lightweight ones.
      image: container image for ``cluster`` (``orchestration.image``).
      stages: stages to include; each stage's inputs must be included too.
      config_path: default of the pipeline's ``config`` parameter (a path inside the image for
        ``cluster``; a local path for ``local``).
      track_run: add a ``track`` step (MLflow, promotion gate) after every stage but those in
        ``lifecycle.READS_CHAMPION``, which run after it.
    """
    stages = list(STAGES if stages is None else stages)
    names = {s.name for s in stages}
    for s in stages:
        missing = [n for n in s.inputs if n not in names]
        if missing:
            raise ValueError(f"stage '{s.name}' needs {missing}, which are not in the pipeline")
    if target == "cluster":
        if not image:
            raise ValueError("a cluster pipeline needs an image (orchestration.image)")
        ops = {s.name: container_component(s, image) for s in stages}
        track_op = container_track_component(stages, image)
    else:
        ops = {s.name: LOCAL_COMPONENTS[s.name] for s in stages}
        track_op = track

    @dsl.pipeline(name=PIPELINE_NAME, description="PinSage: pairs, graph, features, neighbourhoods, training, inference, evaluation, index")
    def pinsage(config: str = config_path):
        tasks: dict[str, dsl.PipelineTask] = {}
        tracked = None
        for s in stages:
            if track_run and s.name in READS_CHAMPION and tracked is None:
                tracked = track_op(config=config, **{n: t.outputs["output"] for n, t in tasks.items()})
            task = ops[s.name](config=config, **{n: tasks[n].outputs["output"] for n in s.inputs})
            if tracked is not None:
                task.after(tracked)  # publishes the champion the gate just chose
            tasks[s.name] = task.set_display_name(s.name)
        if track_run and tracked is None and tasks:
            tracked = track_op(config=config, **{n: t.outputs["output"] for n, t in tasks.items()})
        if tracked is not None:
            tracked.set_display_name("track")

    return pinsage


def compile_pipeline(
    output: str | Path, image: str, config_path: str = DEFAULT_CONFIG, stop_after: str = "", track_run: bool = True
) -> Path:
    """Compile the cluster pipeline (container components) to a KFP v2 YAML package.

    Args:
      output: YAML file to write.
      image: container image of every component.
      config_path: default of the pipeline's ``config`` parameter (a path inside the image).
      stop_after: last stage to include (all registered stages when empty).
      track_run: end with the MLflow ``track`` step (``tracking.enabled``).
    """
    from kfp import compiler

    from components.registry import STAGE_NAMES

    stages = STAGES[: STAGE_NAMES.index(stop_after) + 1] if stop_after else STAGES
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline("cluster", image, stages, config_path, track_run), str(output))
    return output


def run_local(config_path: str | Path, pipeline_root: str | Path, stages: Sequence[Stage] | None = None) -> dict[str, Path]:
    """Run the lightweight pipeline with ``kfp.local`` (SubprocessRunner, current venv).

    Args:
      config_path: pipeline YAML config.
      pipeline_root: where kfp.local writes each run's task outputs.
      stages: stages to run (default: every stage implemented in this checkout, up to the
        config's ``orchestration.stop_after``).
        Each stage's inputs must be included.

    Returns:
      Stage name -> the directory that stage's component wrote (and ``track`` -> the folder
      holding ``tracking.json`` when ``tracking.enabled``).
    """
    from kfp import local

    from pinsage_model.config import load_config

    cfg = load_config(config_path)
    if stages is None:
        stages = pipeline_stages(cfg.orchestration.stop_after)
    if not stages:
        raise ValueError("no pipeline stage is implemented in this checkout")
    pipeline_root = Path(pipeline_root).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    build_pipeline("local", stages=stages, config_path=str(Path(config_path).resolve()), track_run=cfg.tracking.enabled)()
    new_runs = sorted(set(pipeline_root.iterdir()) - before)
    if len(new_runs) != 1:
        raise RuntimeError(f"expected one new kfp.local run under {pipeline_root}, found {new_runs}")
    # kfp.local layout: <pipeline_root>/<pipeline>-<timestamp>/<task name>/<output name>
    names = [s.name for s in stages] + (["track"] if cfg.tracking.enabled else [])
    return {name: new_runs[0] / name / "output" for name in names}


def submit(cfg: PipelineConfig, config_path: str, run_name: str) -> str:
    """Compile the cluster pipeline and start a run on ``orchestration.kfp_host``; returns the run id.

    Args:
      cfg: the loaded config (image, KFP host, stop_after).
      config_path: the config's path inside the pipeline image (the ``config`` parameter).
      run_name: KFP run name, e.g. keyed by the Airflow data interval.
    """
    import tempfile

    import kfp

    orch = cfg.orchestration
    if not orch.kfp_host:
        raise ValueError("orchestration.kfp_host is empty: set it to the KFP API endpoint to submit runs")
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(
            Path(tmp) / "pinsage_pipeline.yaml", orch.image, config_path, orch.stop_after, cfg.tracking.enabled
        )
        run = kfp.Client(host=orch.kfp_host).create_run_from_pipeline_package(
            str(package), arguments={"config": config_path}, run_name=run_name, experiment_name=PIPELINE_NAME
        )
    return run.run_id


def main(argv: list[str] | None = None) -> int:
    from components.base import cli_config

    parser = argparse.ArgumentParser(
        prog="python -m components.kfp_pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="pipeline YAML config (default: %(default)s)")
    parser.add_argument("--output", help="compile the cluster pipeline to this YAML file")
    parser.add_argument("--image", help="container image (default: orchestration.image of the config)")
    parser.add_argument("--run-local", metavar="PIPELINE_ROOT", help="run the implemented stages with kfp.local here")
    parser.add_argument("--submit", action="store_true", help="submit a run to orchestration.kfp_host")
    parser.add_argument("--kfp-host", help="KFP API endpoint for --submit (default: orchestration.kfp_host)")
    parser.add_argument("--run-name", default="pinsage-manual", help="run name for --submit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not (args.output or args.run_local or args.submit):
        parser.error("give --output, --run-local or --submit")
    cfg = cli_config(args.config)
    if cfg is None:
        return 2
    image = args.image or cfg.orchestration.image
    if args.output:
        path = compile_pipeline(args.output, image, args.config, cfg.orchestration.stop_after, cfg.tracking.enabled)
        print(f"compiled pipeline (image {image}) -> {path}")
    if args.run_local:
        for name, path in run_local(args.config, args.run_local).items():
            print(f"{name:<16}{path}")
    if args.submit:
        orch = dataclasses.replace(cfg.orchestration, image=image, kfp_host=args.kfp_host or cfg.orchestration.kfp_host)
        cfg = dataclasses.replace(cfg, orchestration=orch)
        print(f"submitted run {submit(cfg, args.config, args.run_name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
