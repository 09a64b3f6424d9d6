"""Container and cluster files: Dockerfiles lint clean, manifests parse and hang together."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = [REPO / "Dockerfile", *sorted(INFRA.rglob("Dockerfile"))]
MANIFESTS = sorted(p for p in INFRA.rglob("*.yaml") if p.name not in ("values.yaml", "cluster.yaml"))


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_docs() -> list[dict]:
    return [d for p in MANIFESTS for d in docs(p)]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_passes(dockerfile):
    proc = subprocess.run([str(HADOLINT), str(dockerfile)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_main_image_is_multi_stage_non_root_and_runs_components():
    text = (REPO / "Dockerfile").read_text()
    froms = [ln.split()[1] for ln in text.splitlines() if ln.startswith("FROM ")]
    assert [f.split("@")[0] for f in froms] == ["python:3.11-slim-bookworm", "python:3.11-slim-bookworm"]
    assert "openjdk-17-jre-headless" in text
    user = [ln for ln in text.splitlines() if ln.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] != "0"
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "python", "-m"]' in text
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert {".venv", "runs", ".git"} <= set(ignored)


@pytest.mark.parametrize(
    "path", MANIFESTS + [INFRA / "airflow" / "values.yaml"], ids=lambda p: str(p.relative_to(REPO))
)
def test_every_yaml_parses(path):
    parsed = docs(path)
    assert parsed, f"{path} is empty"
    if path.name != "values.yaml":
        for d in parsed:
            assert {"apiVersion", "kind", "metadata"} <= set(d), f"{path}: not a Kubernetes object: {sorted(d)}"
            assert (
                d["metadata"].get("namespace", "pinsage") in ("pinsage", "pinsage-mlflow") or d["kind"] == "Namespace"
            )


def test_cluster_config_is_a_valid_pipeline_config():
    from pinsage_model.config import load_config

    cfg = load_config(INFRA / "config" / "cluster.yaml")
    assert cfg.spark.master.startswith("k8s://")
    assert cfg.tracking.tracking_uri == "http://mlflow.pinsage-mlflow.svc:5000"


def test_mlflow_server_has_postgres_object_store_and_auth():
    dep = next(d for d in all_docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--app-name=basic-auth" in args
    assert any(a.startswith("--backend-store-uri=postgresql://") for a in args)
    assert "--artifacts-destination=s3://mlflow-artifacts" in args
    services = {d["metadata"]["name"] for d in all_docs() if d["kind"] == "Service"}
    assert {"mlflow", "mlflow-postgres", "minio"} <= services


def test_secrets_referenced_by_workloads_exist():
    # the secrets' shape is an example operators create from a vault, never an applied manifest
    example = INFRA / "mlflow" / "secrets.example.yaml.txt"
    secrets = {d["metadata"]["name"] for d in docs(example) if d["kind"] == "Secret"}
    referenced: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key in ("secretKeyRef", "secretRef"):
                if key in node:
                    referenced.add(node[key]["name"])
            if "secretName" in node and isinstance(node["secretName"], str) and node["secretName"] != "mlflow-tls":
                referenced.add(node["secretName"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(all_docs())
    walk(docs(INFRA / "airflow" / "values.yaml"))
    referenced.discard("airflow-webserver-secret")  # the chart's own
    assert referenced and referenced <= secrets


def test_airflow_values_run_this_dag_with_cluster_config():
    values = docs(INFRA / "airflow" / "values.yaml")[0]
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["PINSAGE_CONFIG"] == "/opt/airflow/configs/cluster.yaml"
    assert values["executor"] == "KubernetesExecutor"
    dockerfile = (INFRA / "airflow" / "Dockerfile").read_text()
    assert "dags/pinsage_dag.py /opt/airflow/dags/pinsage_dag.py" in dockerfile
    assert "infra/config/cluster.yaml /opt/airflow/configs/cluster.yaml" in dockerfile


def test_kfp_job_uses_the_pipeline_cli():
    from components.orchestration.kfp_pipeline import main

    job = next(d for d in docs(INFRA / "kfp" / "pipeline-job.yaml") if d["kind"] == "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "components.orchestration.kfp_pipeline"
    with pytest.raises(SystemExit) as exc:  # every flag the job passes is one the CLI knows
        main([*args[1:], "--help"])
    assert exc.value.code == 0


def test_spark_defaults_target_kubernetes():
    cm = docs(INFRA / "spark" / "spark-defaults.yaml")[0]
    conf = dict(line.split(None, 1) for line in cm["data"]["spark-defaults.conf"].splitlines() if line.strip())
    assert conf["spark.kubernetes.container.image"] == "ghcr.io/pinsage/pinsage:0.1.0"
    assert conf["spark.kubernetes.executorEnv.PYSPARK_PYTHON"] == "/opt/venv/bin/python"
    app = docs(INFRA / "spark" / "sparkapplication.yaml")[0]
    assert app["kind"] == "SparkApplication" and app["spec"]["arguments"][0] == "run"


def test_tfjob_runs_the_model_stage_on_the_shared_run_volume():
    from components.orchestration import tfjob
    from components.orchestration.execution import stage_main
    from pinsage_model.config import load_config

    job = docs(INFRA / "training" / "tfjob.yaml")[0]
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "TFJob"
    (container,) = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert container["name"] == "tensorflow"  # where the Training Operator puts TF_CONFIG
    assert container["image"] == load_config(INFRA / "config" / "cluster.yaml").orchestration.image
    assert container["args"][0] == "components.stages.model"
    with pytest.raises(SystemExit) as exc:  # every flag the workers pass is one the stage CLI knows
        stage_main("components.stages.model", [*container["args"][1:], "--help"])
    assert exc.value.code == 0
    claim, mount = tfjob.run_volume(job)
    pvcs = {d["metadata"]["name"] for d in all_docs() if d["kind"] == "PersistentVolumeClaim"}
    assert claim in pvcs and mount == "/data"
    assert load_config(INFRA / "config" / "cluster.yaml").orchestration.run_root.startswith(mount + "/")
    role = next(d for d in docs(INFRA / "training" / "rbac.yaml") if d["kind"] == "Role")
    (rule,) = role["rules"]
    assert rule["resources"] == ["tfjobs"] and {"create", "get", "delete"} <= set(rule["verbs"])
    # the image ships the template where the default orchestration.tfjob_template finds it (WORKDIR /app)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY --chown=pinsage:pinsage infra/training/tfjob.yaml infra/training/tfjob.yaml" in dockerfile
    assert "!infra/training/tfjob.yaml" in (REPO / ".dockerignore").read_text().splitlines()
    assert load_config(INFRA / "config" / "cluster.yaml").orchestration.tfjob_template == "infra/training/tfjob.yaml"
