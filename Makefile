# Two commands: `make demo` and `make test`. Both create/refresh the venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo

.PHONY: demo test lint test-fast bench bench-peers quality chaos kfp airflow airflow-stop services services-stop clean venv

venv: $(STAMP)

# The stamp depends on every file that decides the environment, so an edit reinstalls.
$(STAMP): pyproject.toml requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 and put it on the PATH"; exit 1; }
	@command -v java >/dev/null || { echo "error: java not found; Spark needs Java 17 (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }
	@test -x $(VENV)/bin/uv || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q uv==0.13.8; }
	$(VENV)/bin/uv pip install --compile-bytecode --python $(PY) -c requirements/constraints.txt -e '.[dev]'
	@# Spark's driver classes pre-parsed for every fresh JVM (pinsage_model/spark/cds.py); optional.
	@$(PY) -m pinsage_model.spark.cds || echo "warning: no Spark CDS archive; Spark sessions start about 3 s slower"
	@touch $(STAMP)

# The whole pipeline on the embedded synthetic data, then sample recommendations from the index.
demo: $(STAMP)
	$(VENV)/bin/pinsage run --config configs/demo.yaml --run-dir $(RUN_DIR)
	$(VENV)/bin/pinsage recommend --run-dir $(RUN_DIR) --item i0000042 -k 10
	$(VENV)/bin/pinsage recommend --run-dir $(RUN_DIR) --user u000007 -k 10

# Lint, format and type checks first (seconds), then the tests, on TEST_WORKERS pytest-xdist
# workers: much of the slow tier waits (Airflow's scheduler, JVM starts, subprocesses), so two
# workers on 2 cores overlap one test's waiting with another's work. --dist loadscope keeps each
# module on one worker, so a module's services (an Airflow, a Spark cluster, a pipeline run) start
# once (loadgroup's groups do not reach pytest 9's node ids in xdist 3.8). Modules go out in
# collection order, the slowest first (tests/conftest.py, SLOWEST_MODULES). TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: $(STAMP) lint browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-fast: $(STAMP) browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not slow"

# Headless Chromium, which opens the run report (tests/integration/stages/test_registration_report.py):
# Debian's package, installed with apt-get when missing and this runs as root.
CHROMIUM := /usr/bin/chromium
.PHONY: browser
browser:
	@test -x $(CHROMIUM) || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
	@test -x $(CHROMIUM) || { echo "error: $(CHROMIUM) not found; install Debian's chromium package (as root: apt-get install chromium)"; exit 1; }

# kill -9 at 20 seeded moments over every stage of the tiny pipeline, each followed by a rerun that
# must restore a clean run's folder, one model version, no RUNNING MLflow run, no temp folder and
# CURRENT on the champion; also two `pinsage run` on one run dir at once (tests/e2e/chaos.py).
chaos: $(STAMP)
	$(PY) tests/e2e/chaos.py --kills 20 --seed 0 --out bench/results/chaos.json

bench: $(STAMP)
	$(PY) -m bench.run_all

# DGL's PinSAGE example on our benchmark inputs, in its own venv (PyTorch CPU + DGL; optional,
# never part of `make test`): bench/peers/run.py, reports in runs/peers/.
PEERS_VENV := .venv-peers
bench-peers: $(STAMP) $(PEERS_VENV)/.installed
	$(PY) -m bench.peers.run

$(PEERS_VENV)/.installed: bench/peers/requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q -r bench/peers/requirements.txt
	@touch $@

# PinSage vs the baselines on the test split, 3 model seeds, for the shipped configs (README tables).
quality: $(STAMP)
	$(PY) -m bench.quality --config configs/demo.yaml --seeds 0,1,2
	$(PY) -m bench.quality --config configs/ml-latest-small.yaml --seeds 0,1,2

kfp: $(STAMP)
	$(PY) -m components.orchestration.kfp_pipeline --output build/pinsage_pipeline.yaml

# A local Airflow 3 (API server + scheduler + DAG processor, LocalExecutor, SQLite) with the DAG on
# AIRFLOW_CONFIG; prints the UI address and the admin login. `make airflow-stop` ends it.
AIRFLOW_HOME_DIR ?= runs/airflow-home
AIRFLOW_CONFIG ?= configs/tiny.yaml
AIRFLOW_PORT ?= 8080
airflow: $(STAMP)
	$(PY) -m components.orchestration.airflow_local start --home $(AIRFLOW_HOME_DIR) --config $(AIRFLOW_CONFIG) --port $(AIRFLOW_PORT)

airflow-stop:
	$(PY) -m components.orchestration.airflow_local stop --home $(AIRFLOW_HOME_DIR)

# The whole loop on one machine: an MLflow tracking server (basic auth, SQLite, local artifacts),
# the local Airflow with the DAG tracking to it (credentials in $(SERVICES_HOME)/services.env,
# mode 600) and a scoring server for models:/pinsage@champion that follows the alias; prints the
# addresses and logins. `make services-stop` ends exactly the process groups it started.
SERVICES_HOME ?= runs/services
SERVICES_CONFIG ?= configs/tiny.yaml
MLFLOW_PORT ?= 5000
SCORING_PORT ?= 5001
services: $(STAMP)
	$(PY) -m components.orchestration.services start --home $(SERVICES_HOME) --config $(SERVICES_CONFIG) \
		--mlflow-port $(MLFLOW_PORT) --airflow-port $(AIRFLOW_PORT) --scoring-port $(SCORING_PORT)

services-stop:
	$(PY) -m components.orchestration.services stop --home $(SERVICES_HOME)

clean:
	rm -rf $(VENV) runs build .pytest_cache
