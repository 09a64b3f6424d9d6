"""The registered model is a servable MLflow pyfunc: loaded by alias in a fresh process, and served
over HTTP by ``mlflow models serve``, it answers related items and homefeeds from the bundled
faiss index with the query shift applied, and answers unknown ids with a per-row error.

The registry is a SQLite store in tmp filled by the registration stage from a hand-built run
(random unit embeddings, a chosen query shift), so every expected answer is computed here by
brute force with numpy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from run_fixtures import make_run
from service_fixtures import VENV_BIN, free_port, service, venv_env

from components.orchestration.execution import execute
from components.stages import StageContext, get_stage
from pinsage_model.config import config_from_dict

NAME = "servable-model"
K = 5
SHIFT = np.array([0.3, -0.2, 0.1, 0.0, 0.25, -0.1, 0.05, 0.2], np.float32)
FRESH_PROCESS = """
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = json.loads(sys.argv[2])
out = model.predict(pd.DataFrame(rows), params={"k": int(sys.argv[3])})
print("RESULT" + json.dumps([a.model_dump() for a in out]))
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A SQLite registry whose champion is version 1 of a 40-item run; yields (env, embeddings)."""
    area = tmp_path_factory.mktemp("servable")
    run = make_run(area / "run1", seed=5, hr10=0.3, mrr=0.1, num_items=40, dim=len(SHIFT), query_shift=SHIFT)
    uri = f"sqlite:///{area / 'mlflow.db'}"
    cfg = config_from_dict({"name": "t", "tracking": {"registered_model": NAME, "tracking_uri": uri}})
    stage = get_stage("registration")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        execute(
            stage,
            cfg,
            {n: run / n for n in stage.inputs},
            run / "registration",
            StageContext.create(area, "run1", "2026-01-12T00:00:00Z"),
        )
    decision = json.loads((run / "registration" / "decision.json").read_text())
    assert decision["champion_after"] == 1 and decision["model_uri"] == f"models:/{NAME}/1"
    env = venv_env(MLFLOW_TRACKING_URI=uri)
    yield env, np.load(run / "embeddings" / "items.npy"), area


def expected(emb: np.ndarray, query: np.ndarray, exclude: list[int], k: int = K) -> tuple[list[str], np.ndarray]:
    scores = emb @ query
    scores[exclude] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    return [f"i{r}" for r in top], scores[top]


def check_answers(rows: list[dict], emb: np.ndarray) -> None:
    """The answers to :data:`QUERIES`, in order."""
    related, feed, unknown, empty = rows
    ids, scores = expected(emb, emb[3] + SHIFT, [3])
    assert (related["item_ids"], related["unknown_ids"], related["error"]) == (ids, [], "")
    np.testing.assert_allclose(related["scores"], scores, rtol=1e-5, atol=1e-5)
    user = emb[[7, 1]].mean(axis=0)
    ids, scores = expected(emb, user / np.linalg.norm(user) + SHIFT, [7, 1])
    assert (feed["item_ids"], feed["unknown_ids"], feed["error"]) == (ids, ["zzz"], "")  # unknown id skipped, named
    np.testing.assert_allclose(feed["scores"], scores, rtol=1e-5, atol=1e-5)
    assert (unknown["item_ids"], unknown["scores"], unknown["unknown_ids"]) == ([], [], ["nope", "x"])
    assert unknown["error"].startswith("unknown item id(s) nope, x: not in index version sha-")
    assert empty["item_ids"] == [] and "non-empty list of item ids" in empty["error"]


QUERIES = [
    {"item_ids": ["i3"]},
    {"item_ids": ["i7", "zzz", "i1"]},
    {"item_ids": ["nope", "x"]},
    {"item_ids": []},
]


def test_query_shift_changes_the_answer(registry):
    """Guards the expectations above: without the shift the related items differ."""
    _, emb, _ = registry
    assert expected(emb, emb[3] + SHIFT, [3])[0] != expected(emb, emb[3], [3])[0]


@pytest.mark.slow
def test_champion_loads_by_alias_in_a_fresh_process(registry):
    env, emb, area = registry
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, f"models:/{NAME}@champion", json.dumps(QUERIES), str(K)],
        env=env,
        cwd=area,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))[len("RESULT") :])
    check_answers(rows, emb)
    print(f"fresh-process load and predict: {time.perf_counter() - t0:.1f} s")


@pytest.mark.slow
def test_scoring_server_answers_over_http(registry):
    env, emb, area = registry
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    cmd = [
        str(VENV_BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{NAME}@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    with service(cmd, env, area / "serve.log", f"{base}/ping", timeout_s=150, cwd=area):
        resp = requests.post(f"{base}/invocations", json={"inputs": QUERIES, "params": {"k": K}}, timeout=60)
        assert resp.status_code == 200, resp.text
        check_answers(resp.json()["predictions"], emb)
        # a malformed request is refused, and the server keeps answering
        bad = requests.post(
            f"{base}/invocations", data="not json", headers={"Content-Type": "application/json"}, timeout=30
        )
        assert 400 <= bad.status_code < 500
        resp = requests.post(f"{base}/invocations", json={"inputs": [{"item_ids": ["nope"]}]}, timeout=30)
        assert resp.status_code == 200 and "unknown item id" in resp.json()["predictions"][0]["error"]
        assert requests.get(f"{base}/ping", timeout=5).status_code == 200
        print(f"scoring server start and queries: {time.perf_counter() - t0:.1f} s")
