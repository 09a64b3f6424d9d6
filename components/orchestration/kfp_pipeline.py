"""Kubeflow Pipelines v2 runner: the stages of :data:`components.stages.STAGES` as one pipeline.

Each stage is one KFP component whose output is a directory artifact
(``dsl.Output[dsl.Artifact]``); downstream components receive the upstream directories as
``dsl.Input[dsl.Artifact]`` and only paths travel between tasks. Both flavours are generated from
the stage list, so this module holds no stage-specific code:

* **cluster**: container components running the image from ``orchestration.image`` with
  ``python -m components.stages.<stage> --config C --run-id R --logical-time T --<input> DIR ...
  --output DIR``;
* **local**: lightweight Python components (for ``kfp.local``'s ``SubprocessRunner``) that call
  :func:`components.orchestration.execution.execute` with the same arguments in the current virtualenv.

With ``orchestration.tfjob_workers`` > 0 the cluster pipeline's model task runs
``python -m components.orchestration.tfjob`` with the same arguments instead: a launcher that trains the model
stage as a multi-worker Training Operator TFJob on the shared run area (the template's volume is
mounted into the task) and copies the chief's output into the task's artifact.

Usage::

    python -m components.orchestration.kfp_pipeline --output build/pinsage_pipeline.yaml     # compile (make kfp)
    python -m components.orchestration.kfp_pipeline --run-local runs/kfp --config configs/demo.yaml
    python -m components.orchestration.kfp_pipeline --submit --config configs/demo.yaml      # to orchestration.kfp_host
"""

# No ``from __future__ import annotations``: KFP reads component annotations as real types.
import argparse
import datetime as dt
import inspect
import linecache
import logging
import sys
from pathlib import Path
from typing import Callable, Literal, Sequence

from kfp import dsl

from components.logs import setup_logging
from components.orchestration.tfjob import STAGE as TFJOB_STAGE
from components.stages import STAGES, Stage, get_stage, pipeline_stages
from pinsage_model.config import PipelineConfig

log = logging.getLogger("pinsage")

PIPELINE_NAME = "pinsage"
DEFAULT_CONFIG = "configs/demo.yaml"
# Lightweight components run in the current venv under kfp.local; this image only labels them.
LOCAL_BASE_IMAGE = "python:3.11-slim"
# Parameters every component takes besides its input artifacts: the stage context's run id and
# logical time travel as pipeline parameters, so a rerun of a KFP run gets the same ones.
RUN_PARAMETERS = ("config", "run_id", "logical_time")

# KFP ships a lightweight component's *source* to the executor, so each one is generated as
# source text from the stage list (and registered with linecache, where inspect.getsource looks).
# Inside the executor ``kfp.dsl`` is a runtime stub, so the body must not import this module.
_LIGHTWEIGHT_TEMPLATE = '''def {name}(
    config: str,
    run_id: str,
    logical_time: str,
{inputs}    output: dsl.Output[dsl.Artifact],
):
    """{doc}"""
    from pathlib import Path

    from components.orchestration.execution import execute_paths
    from components.stages import StageContext

    # kfp.local layout: <pipeline_root>/<run>/<task>/output; the run folder is the run area.
    ctx = StageContext.create(Path(output.path).parents[1], run_id, logical_time)
    execute_paths("{name}", config, output.path, ctx{paths})
'''


def lightweight_component(stage: Stage) -> Callable:
    """A lightweight Python component (for ``kfp.local``) calling
    :func:`components.orchestration.execution.execute_paths`."""
    source = _LIGHTWEIGHT_TEMPLATE.format(
        name=stage.name,
        inputs="".join(f"    {n}: dsl.Input[dsl.Artifact],\n" for n in stage.inputs),
        doc=stage.description[:1].upper() + stage.description[1:] + ".",
        paths="".join(f", {n}={n}.path" for n in stage.inputs),
    )
    filename = f"<pinsage-kfp-component-{stage.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {"dsl": dsl}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - source built from the stage list above
    return dsl.component(base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)(namespace[stage.name])


LOCAL_COMPONENTS: dict[str, Callable] = {s.name: lightweight_component(s) for s in STAGES}


def container_component(stage: Stage, image: str, module: str = "") -> Callable:
    """A container component running ``python -m <module>`` (default: ``stage.module``) in ``image``.

    Built from the stage list so the CLI flags can never drift from ``components.orchestration.execution.stage_main``:
    ``--config C --run-id R --logical-time T --<input> <input artifact path> ... --output <output artifact path>``
    (the flags :mod:`components.orchestration.tfjob` takes too).
    """

    def spec(*args):  # (config, run_id, logical_time, *inputs, output) placeholders, in signature order
        config, run_id, logical_time, *ins, output = args
        cli = ["--config", config, "--run-id", run_id, "--logical-time", logical_time]
        for name, art in zip(stage.inputs, ins):
            cli += [f"--{name}", art.path]
        return dsl.ContainerSpec(
            image=image, command=["python", "-m", module or stage.module], args=[*cli, "--output", output.path]
        )

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str) for n in RUN_PARAMETERS]
    params += [
        inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Input[dsl.Artifact])
        for n in stage.inputs
    ]
    params.append(
        inspect.Parameter("output", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Output[dsl.Artifact])
    )
    setattr(spec, "__signature__", inspect.Signature(params))  # read by inspect.signature; not a declared attribute
    spec.__name__ = spec.__qualname__ = stage.name.replace("-", "_")
    spec.__doc__ = stage.description
    return dsl.container_component(spec)


def build_pipeline(
    target: Literal["cluster", "local"] = "cluster",
    image: str = "",
    stages: Sequence[Stage] | None = None,
    config_path: str = DEFAULT_CONFIG,
    tfjob_template: str = "",
):
    """Build the pipeline (a KFP graph component) over ``stages`` (default: all of them).

    Args:
      target: ``cluster`` for container components, ``local`` for lightweight ones.
      image: container image for ``cluster`` (``orchestration.image``).
      stages: stages to include; each stage's inputs must be included too.
      config_path: default of the pipeline's ``config`` parameter (a path inside the image for
        ``cluster``; a local path for ``local``).
      tfjob_template: ``cluster`` only: when set (``orchestration.tfjob_template`` of a config with
        ``tfjob_workers`` > 0), the model task launches the TFJob
        (:mod:`components.orchestration.tfjob`) and mounts this template's run volume.

    The pipeline's parameters are ``config``, ``run_id`` and ``logical_time`` (ISO 8601); every
    task gets them and the output artifacts of its stage's inputs.
    """
    stages = list(STAGES if stages is None else stages)
    names = {s.name for s in stages}
    for s in stages:
        missing = [n for n in s.inputs if n not in names]
        if missing:
            raise ValueError(f"stage '{s.name}' needs {missing}, which are not in the pipeline")
    if target == "cluster":
        ops, launcher = _cluster_components(stages, image, tfjob_template)
    else:
        ops, launcher = {s.name: LOCAL_COMPONENTS[s.name] for s in stages}, {}

    @dsl.pipeline(name=PIPELINE_NAME, description="PinSage: " + ", ".join(s.name for s in stages))
    def pinsage(config: str = config_path, run_id: str = "manual", logical_time: str = "1970-01-01T00:00:00Z"):
        tasks: dict[str, dsl.PipelineTask] = {}
        for s in stages:
            task = ops[s.name](
                config=config,
                run_id=run_id,
                logical_time=logical_time,
                **{n: tasks[n].outputs["output"] for n in s.inputs},
            )
            if s.name == TFJOB_STAGE and launcher:
                task.platform_config = launcher
            tasks[s.name] = task.set_display_name(s.name)

    return pinsage


def _cluster_components(stages: list[Stage], image: str, tfjob_template: str) -> tuple[dict, dict]:
    """(container component per stage name, the model task's platform config): with a TFJob
    template, the model task launches the TFJob and mounts the template's run volume."""
    if not image:
        raise ValueError("a cluster pipeline needs an image (orchestration.image)")
    ops = {s.name: container_component(s, image) for s in stages}
    if not (tfjob_template and TFJOB_STAGE in ops):
        return ops, {}
    from components.orchestration.tfjob import load_template, run_volume

    claim, mount = run_volume(load_template(tfjob_template))
    ops[TFJOB_STAGE] = container_component(get_stage(TFJOB_STAGE), image, "components.orchestration.tfjob")
    # The platform spec kfp-kubernetes' mount_pvc writes (the kubernetes executor config).
    launcher = {
        "kubernetes": {
            "pvcMount": [
                {
                    "mountPath": mount,
                    "constant": claim,
                    "pvcNameParameter": {"runtimeValue": {"constant": claim}},
                },
            ]
        }
    }
    return ops, launcher


def compile_pipeline(
    output: str | Path, image: str, config_path: str = DEFAULT_CONFIG, stop_after: str = "", tfjob_template: str = ""
) -> Path:
    """Compile the cluster pipeline (container components) to a KFP v2 YAML package.

    Args:
      output: YAML file to write (a second YAML document holds the platform spec when the
        model task launches a TFJob).
      image: container image of every component.
      config_path: default of the pipeline's ``config`` parameter (a path inside the image).
      stop_after: last stage to include (all stages when empty).
      tfjob_template: see :func:`build_pipeline` (:func:`tfjob_template_of` a config).
    """
    from kfp import compiler

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline("cluster", image, pipeline_stages(stop_after), config_path, tfjob_template)
    compiler.Compiler().compile(pipeline, str(output))
    return output


def tfjob_template_of(cfg: PipelineConfig) -> str:
    """The TFJob template the cluster pipeline's model task launches, or "" to train in the task."""
    return cfg.orchestration.tfjob_template if cfg.orchestration.tfjob_workers else ""


def run_local(
    config_path: str | Path,
    pipeline_root: str | Path,
    stages: Sequence[Stage] | None = None,
    run_id: str = "kfp-local",
    logical_time: dt.datetime | None = None,
) -> dict[str, Path]:
    """Run the lightweight pipeline with ``kfp.local`` (SubprocessRunner, current venv).

    Args:
      config_path: pipeline YAML config.
      pipeline_root: where kfp.local writes each run's task outputs.
      stages: stages to run (default: up to the config's ``orchestration.stop_after``); each
        stage's inputs must be included.
      run_id: the stages' run id.
      logical_time: the stages' logical time (default: ``SOURCE_DATE_EPOCH``, else now).

    Returns:
      Stage name -> the directory that stage's component wrote.
    """
    from kfp import local

    from components.orchestration.execution import start_time
    from pinsage_model.config import load_config

    if stages is None:
        stages = pipeline_stages(load_config(config_path).orchestration.stop_after)
    pipeline_root = Path(pipeline_root).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    when = (logical_time or start_time()).isoformat()
    build_pipeline("local", stages=stages, config_path=str(Path(config_path).resolve()))(
        run_id=run_id, logical_time=when
    )
    new_runs = sorted(set(pipeline_root.iterdir()) - before)
    if len(new_runs) != 1:
        raise RuntimeError(f"expected one new kfp.local run under {pipeline_root}, found {new_runs}")
    # kfp.local layout: <pipeline_root>/<pipeline>-<timestamp>/<task name>/<output name>
    return {s.name: new_runs[0] / s.name / "output" for s in stages}


def submit(cfg: PipelineConfig, config_path: str, run_name: str, logical_time: dt.datetime) -> str:
    """Compile the cluster pipeline and start a run on ``orchestration.kfp_host``; returns the run id.

    Args:
      cfg: the loaded config (image, KFP host, stop_after).
      config_path: the config's path inside the pipeline image (the ``config`` parameter).
      run_name: KFP run name, e.g. keyed by the Airflow data interval; the stages' run id.
      logical_time: the instant the run stands for (the stages' logical time).
    """
    import tempfile

    import kfp

    orch = cfg.orchestration
    if not orch.kfp_host:
        raise ValueError("orchestration.kfp_host is empty: set it to the KFP API endpoint to submit runs")
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(
            Path(tmp) / "pinsage_pipeline.yaml", orch.image, config_path, orch.stop_after, tfjob_template_of(cfg)
        )
        run = kfp.Client(host=orch.kfp_host).create_run_from_pipeline_package(
            str(package),
            arguments={"config": config_path, "run_id": run_name, "logical_time": logical_time.isoformat()},
            run_name=run_name,
            experiment_name=PIPELINE_NAME,
        )
    return run.run_id


def main(argv: list[str] | None = None) -> int:
    from components.orchestration.execution import cli_config, start_time

    parser = argparse.ArgumentParser(
        prog="python -m components.orchestration.kfp_pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="pipeline YAML config (default: %(default)s)")
    parser.add_argument("--output", help="compile the cluster pipeline to this YAML file")
    parser.add_argument("--image", help="container image (default: orchestration.image of the config)")
    parser.add_argument("--run-local", metavar="PIPELINE_ROOT", help="run the stages with kfp.local here")
    parser.add_argument("--submit", action="store_true", help="submit a run to orchestration.kfp_host")
    parser.add_argument("--kfp-host", help="KFP API endpoint for --submit (default: orchestration.kfp_host)")
    parser.add_argument("--run-name", default="pinsage-manual", help="run name for --submit")
    parser.add_argument("--verbose", action="store_true", help="every library's log lines on the console, at DEBUG")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not (args.output or args.run_local or args.submit):
        parser.error("give --output, --run-local or --submit")
    cfg = cli_config(args.config)
    if cfg is None:
        return 2
    image = args.image or cfg.orchestration.image
    if args.output:
        path = compile_pipeline(args.output, image, args.config, cfg.orchestration.stop_after, tfjob_template_of(cfg))
        print(f"compiled pipeline (image {image}) -> {path}")
    if args.run_local:
        for name, path in run_local(args.config, args.run_local).items():
            print(f"{name:<16}{path}")
    if args.submit:
        orch = cfg.orchestration.replace(image=image, kfp_host=args.kfp_host or cfg.orchestration.kfp_host)
        cfg = cfg.replace(orchestration=orch)
        print(f"submitted run {submit(cfg, args.config, args.run_name, start_time())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
