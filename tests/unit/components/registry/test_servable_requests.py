"""The registered model and ``pinsage recommend`` refuse bad requests with a clear error: ``k``
outside 1..1000, too many ids in a row, too many rows (issue 26, point 7)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from components.registry.servable import PinSageRecommender
from pinsage_model.serving.index import publish

IDS = [f"i{k}" for k in range(20)]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    emb = np.random.default_rng(0).normal(size=(len(IDS), 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return publish(emb, IDS, root, "m1", {}, created_at="2026-01-01T00:00:00Z")


@pytest.fixture(scope="module")
def model(published):
    m = PinSageRecommender()
    m.load_context(
        SimpleNamespace(artifacts={"index": str(published)}, model_config={"max_ids_per_row": 3, "max_rows": 2})
    )
    return m


def rows(*queries) -> pd.DataFrame:
    return pd.DataFrame({"item_ids": [list(q) for q in queries]})


def test_a_request_within_the_limits_is_answered(model):
    out = model.predict(None, rows(["i0"], ["i1", "i2", "i3"]), params={"k": 5})
    assert [len(r.item_ids) for r in out] == [5, 5] and [r.error for r in out] == ["", ""]


@pytest.mark.parametrize("bad", [{"item_ids": "i0"}, {"item_ids": [1, 2]}, {"items": ["i0"]}])
def test_a_row_of_the_wrong_type_is_refused_by_the_type_hints(model, bad):
    """MLflow validates the request against predict's ``list[Query]`` hint before predict runs."""
    with pytest.raises(MlflowException, match="item_ids"):
        model.predict(None, [bad])


@pytest.mark.parametrize("k", [0, -1, 1001, 2.5, "5"])
def test_k_outside_1_to_1000_is_refused(model, k):
    with pytest.raises(MlflowException, match=rf"request refused: k must be an integer from 1 to 1000, got {k!r}"):
        model.predict(None, rows(["i0"]), params={"k": k})


def test_too_many_ids_in_a_row_is_refused(model):
    with pytest.raises(MlflowException, match=r"row 1 has 4 item ids; at most 3 \(max_ids_per_row\)"):
        model.predict(None, rows(["i0"], ["i1", "i2", "i3", "i4"]), params={"k": 5})


def test_too_many_rows_is_refused(model):
    with pytest.raises(MlflowException, match=r"3 rows in one request; at most 2 \(max_rows\)"):
        model.predict(None, rows(["i0"], ["i1"], ["i2"]))


def test_the_scoring_server_answers_a_refusal_with_400():
    from components.registry.servable import _refused_unless

    def bad():
        raise ValueError("k must be an integer from 1 to 1000, got 0")

    with pytest.raises(MlflowException) as e:
        _refused_unless(bad)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE" and e.value.get_http_status_code() == 400


@pytest.mark.parametrize("args", [["-k", "-1"], ["-k", "0"], ["-k", "1001"], ["--recent", "0"], ["--recent", "501"]])
def test_recommend_refuses_bad_k_and_recent_with_one_line(published, tmp_path, capsys, args):
    from components.cli import main

    assert (
        main(
            [
                "recommend",
                "--run-dir",
                str(tmp_path),
                "--index-root",
                str(published.parent.parent),
                "--item",
                "i0",
                *args,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert ("-k must be an integer from 1 to 1000" in err[0]) or ("--recent must be from 1 to 500" in err[0])


def test_logging_takes_the_signature_from_the_type_hints_and_warns_nothing(published, tmp_path, monkeypatch, caplog):
    """The signature MLflow infers from ``predict``'s hints (no hand-written schema, no "add type
    hints" warning, no invalid serving example), and the loaded model answers with it."""
    import logging
    import warnings

    import mlflow

    from components.registry import mlflow_store

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    # set_tracking_uri also exports MLFLOW_TRACKING_URI: monkeypatch restores it after the test,
    # or every later test of this process (a pytest-xdist worker's next module) would track here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("typed", artifact_location=str(tmp_path / "artifacts"))
    with warnings.catch_warnings(record=True) as caught, mlflow.start_run(experiment_id=exp):
        warnings.simplefilter("always")
        info = mlflow_store.log_servable(
            {"index": published}, "i0", ["i1", "i2"], {"max_ids_per_row": 3, "max_rows": 2}
        )
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in said if "type hint" in m.lower() or "input example" in m.lower()], said
    sig = info.signature
    strings = {"type": "array", "items": {"type": "string"}, "required": True}
    assert sig.inputs.to_dict() == [{"type": "object", "properties": {"item_ids": strings}, "required": True}]
    doubles = {"type": "array", "items": {"type": "double"}, "required": True}
    answer = {
        "error": {"type": "string", "required": True},
        "item_ids": strings,
        "scores": doubles,
        "unknown_ids": strings,
    }
    assert sig.outputs.to_dict() == [{"type": "object", "properties": answer, "required": True}]
    assert sig.params.to_dict() == [{"name": "k", "type": "long", "default": 10, "shape": None}]
    out = mlflow.pyfunc.load_model(info.model_uri).predict([{"item_ids": ["i0"]}], params={"k": 2})
    assert len(out) == 1 and len(out[0].item_ids) == 2 and out[0].error == ""
