"""The registered model: an MLflow ``pyfunc`` that answers related items and homefeeds.

Registration logs this file as the model's code (MLflow "models from code": no pickle) with the
artifacts of one model version:

* ``index``: the index version the registration stage built (:mod:`pinsage_model.serving.index`:
  ``index.faiss``, ``ids.parquet``, ``embeddings.npy`` L2-normalised, the optional
  ``query_shift.npy`` and ``user_head.npz`` or ``user_nodes.npz``, ``manifest.json``), the one the
  index stage publishes;
* the training outputs (``weights.npz``, ``model_config.json``) for whoever wants the weights.

So ``mlflow.pyfunc.load_model("models:/pinsage@champion")`` and ``mlflow models serve -m
models:/pinsage@champion --env-manager local`` serve exactly the champion's embeddings and index.

Input: a list of :class:`Query` rows, ``{"item_ids": [str, ...]}`` (over HTTP the request's
``inputs``; a DataFrame with one ``item_ids`` column is converted row by row); ``predict``'s type
hints are the signature, and MLflow refuses a row of another shape before ``predict`` runs. The
answers come from the query API of :mod:`pinsage_model.serving.query`:

* one known id: :meth:`~pinsage_model.serving.query.LoadedVersion.related_items` of that item
  (query ``items[q] + query_shift``, the item excluded);
* several known ids: :meth:`~pinsage_model.serving.query.LoadedVersion.homefeed_from_recent`, a
  homefeed from a user's recent items, oldest first (a model trained with users as query nodes
  convolves the user over them, plus the query shift; else the model's user head over them plus
  its shift, or ``normalise(mean(items[recent])) + query_shift`` for a model without one), the
  recent items excluded; scores add the homefeed popularity prior when the version has one
  (:mod:`pinsage_model.model.prior`).

Param ``k`` (int, default 10, 1..1000): how many items a row returns. A request with ``k`` out of
range, a row with more than ``max_ids_per_row`` ids or more than ``max_rows`` rows (the model's
``model_config``, from ``index.max_ids_per_row`` / ``index.max_rows_per_request``) is refused
whole with an ``MlflowException`` (``INVALID_PARAMETER_VALUE``: HTTP 400 from the scoring
server) that says which limit. Output, one :class:`Answer` per input row:
``item_ids`` (list of str) and ``scores`` (list of float, inner products, best first), ``unknown_ids``
(list of str: the query ids not in the index, skipped) and ``error`` (str, empty when the row was
answered). A row none of whose ids is known gets an empty answer and its ``error``; the other rows
are answered as usual.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel
from pydantic import BaseModel

INPUT_COLUMN = "item_ids"
OUTPUT_COLUMNS = ("item_ids", "scores", "unknown_ids", "error")
DEFAULT_K = 10
# Without a model_config (a model logged before the limits): the config's defaults.
DEFAULT_LIMITS = {"max_ids_per_row": 500, "max_rows": 1000}


class Query(BaseModel):
    """One request row: a single item id (related items) or a user's recent ids, oldest first (homefeed)."""

    item_ids: list[str]


class Answer(BaseModel):
    """One answer row, best first; ``error`` is empty when the row was answered."""

    item_ids: list[str]
    scores: list[float]
    unknown_ids: list[str]
    error: str


class PinSageRecommender(PythonModel):
    """Related items and homefeeds from the faiss index bundled with the model version."""

    def load_context(self, context) -> None:
        """Load the bundled index version (checksums verified) and the request limits."""
        from pinsage_model.serving.query import load_version

        self.version = load_version(context.artifacts["index"], verify=True)
        self.limits = {**DEFAULT_LIMITS, **(getattr(context, "model_config", None) or {})}

    def predict(self, context, model_input: list[Query], params: dict[str, Any] | None = None) -> list[Answer]:
        """One answer row per input row (see the module docstring); never raises for unknown ids,
        refuses a request beyond the limits.

        The type hints are the model's contract: MLflow infers the signature from them when the
        model is logged and validates every request against ``Query`` before this runs (a row
        without a list of strings in ``item_ids`` is refused whole), turning a DataFrame's rows
        into ``Query`` objects.
        """
        from pinsage_model.serving.query import checked_k

        k = _refused_unless(lambda: checked_k((params or {}).get("k", DEFAULT_K)))
        queries = [q.item_ids for q in model_input]
        _refused_unless(lambda: self._check_sizes(queries))
        return [self._answer(q, k) for q in queries]

    def _check_sizes(self, queries: list[list[str]]) -> None:
        if len(queries) > self.limits["max_rows"]:
            raise ValueError(f"{len(queries)} rows in one request; at most {self.limits['max_rows']} (max_rows)")
        for i, q in enumerate(queries):
            n = len(q)
            if n > self.limits["max_ids_per_row"]:
                raise ValueError(
                    f"row {i} has {n} item ids; at most {self.limits['max_ids_per_row']} (max_ids_per_row)"
                )

    def _answer(self, ids: list[str], k: int) -> Answer:
        v = self.version
        known = v.known(ids)
        unknown = [i for i in ids if i not in v.row_of]
        if not known:
            if not ids:
                return Answer(
                    item_ids=[],
                    scores=[],
                    unknown_ids=[],
                    error=f"give a non-empty list of item ids in column '{INPUT_COLUMN}'",
                )
            return Answer(
                item_ids=[],
                scores=[],
                unknown_ids=unknown,
                error=f"unknown item id(s) {', '.join(unknown[:5])}: not in index version {v.name}",
            )
        nb = v.related_items(known, k)[0] if len(known) == 1 else v.homefeed_from_recent(known, k)
        return Answer(item_ids=list(nb.item_ids), scores=[float(s) for s in nb.scores], unknown_ids=unknown, error="")


def _refused_unless(check):
    """``check()``, its ValueError turned into the MLflow error a scoring server answers with 400."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    try:
        return check()
    except ValueError as exc:
        raise MlflowException(f"request refused: {exc}", error_code=INVALID_PARAMETER_VALUE) from None


def input_example(item_id: str, recent_item_ids: list[str]) -> list[dict]:
    """The input example logged with the model: one related-items row, one homefeed row (what a
    request's ``inputs`` holds)."""
    return [{INPUT_COLUMN: [item_id]}, {INPUT_COLUMN: list(recent_item_ids)}]


# MLflow executes this file to load the model ("models from code"); importing it elsewhere only
# sets the same module-level model object MLflow would.
mlflow.models.set_model(PinSageRecommender())
