"""The model stage as a Kubeflow Training Operator TFJob: launch it and wait (the ``launcher`` pattern).

With ``orchestration.tfjob_workers`` = N > 0 the Kubeflow pipeline's model task runs this module
instead of the stage itself, with the stage's own flags::

    python -m components.orchestration.tfjob --config C --run-id R --logical-time T \\
        --graph DIR --features DIR --neighbourhoods DIR --output DIR

1. The inputs are staged in the shared run area, ``<orchestration.run_root>/<run id>/<input>``
   (copied unless that folder already holds the same fingerprint), where every worker reads them.
2. A TFJob is made from ``orchestration.tfjob_template`` (``infra/training/tfjob.yaml``): N
   workers, each ``python -m components.stages.model --config C --run-dir <run dir>
   --logical-time T`` on ``orchestration.image``, with ``train.num_devices`` GPUs when the
   template's workers have GPUs. Its name is fixed by the run id and the model stage's
   fingerprint (config and inputs), so a retried task waits on the job already running instead
   of starting a second one (a failed one is replaced), and changed work gets a new job.
3. The job is polled until the operator marks it Succeeded or Failed (the template's
   ``activeDeadlineSeconds`` bounds it).
4. ``<run dir>/model``, which only the chief worker writes, is copied to ``--output``.

The task pod needs the run area's volume (the pipeline mounts the template's claim at the same
path) and a service account allowed to manage TFJobs (``infra/training/rbac.yaml``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import logging
import re
import shutil
import sys
import time
from pathlib import Path

import yaml

log = logging.getLogger("pinsage")

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"
CONTAINER = "tensorflow"  # the Training Operator's container name (it gets TF_CONFIG)
STAGE = "model"
GPU = "nvidia.com/gpu"


def load_template(path: str | Path) -> dict:
    """The TFJob template (``orchestration.tfjob_template``), resolved as data paths are."""
    from pinsage_model.data.reading import resolve_path

    resolved = resolve_path(path, "orchestration.tfjob_template")
    body = yaml.safe_load(resolved.read_text())
    if not isinstance(body, dict) or body.get("kind") != "TFJob":
        raise ValueError(f"{resolved}: not a TFJob manifest")
    _worker_container(body, resolved)
    return body


def _worker_container(body: dict, where: object = "the TFJob template") -> dict:
    try:
        containers = body["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{where}: no spec.tfReplicaSpecs.Worker pod template") from exc
    for c in containers:
        if c.get("name") == CONTAINER:
            return c
    raise ValueError(f"{where}: the Worker pod has no container named {CONTAINER!r}, which the operator configures")


def run_volume(body: dict) -> tuple[str, str]:
    """``(claim name, mount path)`` of the persistent volume the template's workers mount."""
    pod = body["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    for mount in _worker_container(body).get("volumeMounts", []):
        if mount["name"] in claims:
            return claims[mount["name"]], mount["mountPath"]
    raise ValueError("the TFJob template's workers mount no persistent volume: they need the shared run area")


def job_name(run_id: str, fingerprint: str) -> str:
    """A DNS-1123 name fixed by the run and the work: ``pinsage-model-<run id>-<digest>``, the digest
    of the run id and the stage fingerprint; the id is shortened to keep the name within 52
    characters (pod names add ``-worker-<i>``)."""
    clean = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    digest = hashlib.sha256(f"{run_id}\0{fingerprint}".encode()).hexdigest()[:10]
    return f"pinsage-{STAGE}-{clean[:27]}".rstrip("-") + f"-{digest}"


def tfjob_manifest(
    template: dict,
    *,
    name: str,
    image: str,
    config: str,
    run_dir: str,
    logical_time: str,
    workers: int,
    gpus_per_worker: int,
) -> dict:
    """The TFJob to create: ``template`` with the name, image, stage arguments, replicas and GPUs set.

    Raises:
      ValueError: the run dir is not on the workers' shared volume.
    """
    _, mount = run_volume(template)
    if not Path(run_dir).is_relative_to(mount):
        raise ValueError(f"run dir {run_dir} is outside {mount}, the run area the TFJob workers mount")
    body = copy.deepcopy(template)
    body["metadata"]["name"] = name
    worker = body["spec"]["tfReplicaSpecs"]["Worker"]
    worker["replicas"] = workers
    container = _worker_container(body)
    container["image"] = image
    container["args"] = [
        f"components.stages.{STAGE}",
        f"--config={config}",
        f"--run-dir={run_dir}",
        f"--logical-time={logical_time}",
    ]
    limits = container.setdefault("resources", {}).setdefault("limits", {})
    if GPU in limits:
        limits[GPU] = gpus_per_worker
    return body


def job_state(job: dict) -> str | None:
    """``Succeeded`` or ``Failed`` once the operator has finished the job, else None."""
    for cond in reversed((job.get("status") or {}).get("conditions") or []):
        if cond.get("type") in ("Succeeded", "Failed") and cond.get("status") == "True":
            return cond["type"]
    return None


def stage_inputs(inputs: dict[str, Path], run_dir: Path) -> list[str]:
    """Copy each input folder to ``run_dir/<name>`` unless it is there already; returns the names copied."""
    from components.orchestration.execution import FINGERPRINT_FILE
    from pinsage_model.io import atomic_dir

    copied = []
    for name, src in sorted(inputs.items()):
        dst = run_dir / name
        fp_src, fp_dst = Path(src) / FINGERPRINT_FILE, dst / FINGERPRINT_FILE
        if Path(src).resolve() == dst.resolve() or (
            fp_src.exists() and fp_dst.exists() and fp_src.read_bytes() == fp_dst.read_bytes()
        ):
            continue
        with atomic_dir(dst) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        copied.append(name)
    return copied


def launch_and_wait(body: dict, poll_s: float = 30.0) -> dict:
    """Create the TFJob (or join the one of that name already running) and wait until it ends.

    Returns:
      The finished job. Raises StageError when the operator marks it Failed.
    """
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from components.orchestration.execution import StageError

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CustomObjectsApi()
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    ident = dict(group=GROUP, version=VERSION, namespace=ns, plural=PLURAL)
    try:
        existing = api.get_namespaced_custom_object(**ident, name=name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        existing = None
    if existing is not None and job_state(existing) == "Failed":
        log.info("tfjob %s/%s failed before; replacing it", ns, name)
        api.delete_namespaced_custom_object(**ident, name=name)
        while _exists(api, ident, name):
            time.sleep(poll_s)
        existing = None
    if existing is None:
        api.create_namespaced_custom_object(**ident, body=body)
        log.info("tfjob %s/%s created: %d workers", ns, name, body["spec"]["tfReplicaSpecs"]["Worker"]["replicas"])
    else:
        log.info("tfjob %s/%s exists (a retried task): waiting on it", ns, name)
    while True:
        job = api.get_namespaced_custom_object(**ident, name=name)
        state = job_state(job)
        if state == "Succeeded":
            return job
        if state == "Failed":
            message = next(
                (c.get("message", "") for c in reversed(job["status"]["conditions"]) if c["type"] == "Failed"), ""
            )
            raise StageError(
                f"tfjob {ns}/{name} failed: {message} (kubectl -n {ns} logs -l training.kubeflow.org/job-name={name})"
            )
        time.sleep(poll_s)


def _exists(api, ident: dict, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        api.get_namespaced_custom_object(**ident, name=name)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def build_parser() -> argparse.ArgumentParser:
    """The launcher's flags: the model stage's container flags
    (components.orchestration.kfp_pipeline) and ``--poll-s``."""
    from components.stages import get_stage

    parser = argparse.ArgumentParser(
        prog="python -m components.orchestration.tfjob",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="pipeline YAML config, a path inside the image")
    parser.add_argument("--run-id", required=True, help="the run's id: its folder in orchestration.run_root")
    parser.add_argument(
        "--logical-time", help="ISO 8601 instant the run stands for (default: SOURCE_DATE_EPOCH, else now)"
    )
    for name in get_stage(STAGE).inputs:
        parser.add_argument(f"--{name}", dest=f"in_{name}", required=True, help=f"output directory of stage '{name}'")
    parser.add_argument("--output", required=True, help="where the chief's model folder is copied")
    parser.add_argument(
        "--poll-s", type=float, default=30.0, help="seconds between status polls (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from components.logs import setup_logging
    from components.orchestration.execution import KNOWN_ERRORS, cli_config, error_line, fingerprint, start_time
    from components.stages import get_stage, parse_time

    stage = get_stage(STAGE)
    args = build_parser().parse_args(argv)
    setup_logging()
    cfg = cli_config(args.config)
    if cfg is None:
        return 2
    try:
        orch = cfg.orchestration
        if orch.tfjob_workers < 1:
            raise ValueError(f"{args.config}: orchestration.tfjob_workers is 0: nothing to launch")
        when = parse_time(args.logical_time) if args.logical_time else start_time()
        stamp = when.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        run_dir = Path(orch.run_root) / args.run_id
        inputs = {n: Path(getattr(args, f"in_{n}")) for n in stage.inputs}
        name = job_name(args.run_id, fingerprint(stage, cfg, inputs))
        body = tfjob_manifest(
            load_template(orch.tfjob_template),
            name=name,
            image=orch.image,
            config=args.config,
            run_dir=str(run_dir),
            logical_time=stamp,
            workers=orch.tfjob_workers,
            gpus_per_worker=cfg.train.num_devices,
        )
        copied = stage_inputs(inputs, run_dir)
        log.info("staged %s in %s", ", ".join(copied) or "nothing (already there)", run_dir)
        launch_and_wait(body, args.poll_s)
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(run_dir / STAGE, out, dirs_exist_ok=True)
    except KNOWN_ERRORS as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    print(f"model stage trained by tfjob {name} ({orch.tfjob_workers} workers) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
