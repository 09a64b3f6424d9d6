# syntax=docker/dockerfile:1
# PinSage pipeline image: every stage runs as `python -m components.stages.<stage>` (KFP container
# components, Airflow KubernetesPodOperator, spark-submit driver). Build: docker build -t pinsage .

# ---- builder: resolve the pinned environment into /opt/venv ----
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir uv==0.13.8

WORKDIR /src
# Dependencies first, so source edits do not reinstall the 4 GB stack.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
RUN /opt/venv/bin/uv pip install --python /opt/venv/bin/python \
        -c requirements/constraints.txt -r pyproject.toml
COPY pinsage_model/ pinsage_model/
COPY components/ components/
COPY dags/ dags/
RUN /opt/venv/bin/uv pip install --python /opt/venv/bin/python --no-deps . \
    && /opt/venv/bin/uv pip uninstall --python /opt/venv/bin/python uv

# ---- runtime: slim Python + Java 17 for Spark, non-root ----
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless=17.0.* tini=0.19.* \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 pinsage \
    && useradd --uid 10001 --gid pinsage --create-home --shell /usr/sbin/nologin pinsage

COPY --from=builder /opt/venv /opt/venv
# Spark's driver classes pre-parsed for every stage's fresh JVM (pinsage_model/spark/cds.py).
RUN /opt/venv/bin/python -m pinsage_model.spark.cds
WORKDIR /app
COPY --chown=pinsage:pinsage configs/ configs/
COPY --chown=pinsage:pinsage infra/config/cluster.yaml configs/cluster.yaml
# the TFJob the Kubeflow model task launches (orchestration.tfjob_template, components/orchestration/tfjob.py)
COPY --chown=pinsage:pinsage infra/training/tfjob.yaml infra/training/tfjob.yaml
COPY --chown=pinsage:pinsage dags/ dags/

# Spark's Python workers must use the venv's interpreter (see notes/stack.md).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/home/pinsage

USER 10001:10001
# `docker run IMAGE components.stages.pairs --config configs/demo.yaml --run-dir /data/run`
ENTRYPOINT ["/usr/bin/tini", "--", "python", "-m"]
CMD ["components.cli", "--help"]
