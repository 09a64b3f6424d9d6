"""A scoring server for ``models:/<name>@champion`` that follows the alias without a restart.

``python -m components.registry.scoring --model pinsage --port 5001`` (``make services`` starts it)
loads the champion's pyfunc from the tracking server (``MLFLOW_TRACKING_URI``, credentials from
``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``), then asks the registry every ``--poll-s`` seconds
which version the alias points at; when it moved (a weekly run promoted a challenger,
``pinsage rollback`` or ``pinsage promote`` moved it), the new version is loaded beside the old one
and swapped in at once: requests in flight finish on the version they started with, the next
ones get the new one, none waits for a load.

Why not ``mlflow models serve -m models:/pinsage@champion``: it resolves the alias once, at start,
and serves that version until restarted, so every promotion would need a restart (requests
refused meanwhile) and something that knows when to restart. Here the request side is MLflow's
own: ``/invocations`` runs :func:`mlflow.pyfunc.scoring_server.invocations`, so requests, answers
and errors (HTTP 400 for a refused request) are exactly those of ``mlflow models serve``. Each
answer carries the version that gave it in the ``X-Model-Version`` header; ``GET /version`` says
``{"model", "alias", "version", "loaded_at"}``. ``/ping`` and ``/health`` answer 200 once a version
is loaded (503 before: no champion yet, the server keeps polling). A failed load keeps the version
being served and is retried at the next poll.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations (``Request``,
# imported inside create_app) as objects; as strings it could not resolve them.
import argparse
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pinsage.scoring")
ALIAS = "champion"


@dataclass(frozen=True)
class Served:
    """One loaded model version: what a request is answered with."""

    version: int
    model: Any  # mlflow.pyfunc.PyFuncModel
    input_schema: Any
    loaded_at: float


class Champion:
    """The version the alias points at, reloaded by :meth:`refresh` when the alias moves."""

    def __init__(self, name: str, alias: str = ALIAS):
        from mlflow import MlflowClient

        self.name, self.alias = name, alias
        self.client = MlflowClient()
        self.served: Served | None = None  # replaced whole: a reader sees one version or the next
        self._lock = threading.Lock()  # one load at a time

    def refresh(self) -> bool:
        """Load the alias's version if it is not the one served; True when the served one changed."""
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            version = int(self.client.get_model_version_by_alias(self.name, self.alias).version)
        except MlflowException as exc:  # no model or no alias yet: keep serving what we have
            log.debug("no %s@%s yet: %s", self.name, self.alias, exc)
            return False
        with self._lock:
            if self.served is not None and self.served.version == version:
                return False
            t0 = time.perf_counter()
            model = mlflow.pyfunc.load_model(f"models:/{self.name}/{version}")
            self.served = Served(version, model, model.metadata.get_input_schema(), time.time())
        log.warning(
            "serving %s version %d (%s); loaded in %.1f s", self.name, version, self.alias, time.perf_counter() - t0
        )
        return True

    def follow(self, poll_s: float, stop: threading.Event) -> None:
        """Poll the alias every ``poll_s`` seconds until ``stop`` is set; a failed poll or load is
        logged and retried at the next one."""
        while not stop.wait(poll_s):
            try:
                self.refresh()
            except Exception:  # the server must outlive a registry hiccup or a bad version
                log.exception("reloading %s@%s failed; still serving version %s", self.name, self.alias, self.version)

    @property
    def version(self) -> int | None:
        served = self.served
        return None if served is None else served.version


def create_app(champion: Champion):
    """The FastAPI app: MLflow's ``/invocations`` on the served version, ``/ping``, ``/health``, ``/version``."""
    import asyncio

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import invocations

    app = FastAPI()

    async def ping():
        return Response(content="\n", status_code=200 if champion.served else 503, media_type="application/json")

    app.get("/ping")(ping)
    app.get("/health")(ping)

    @app.get("/version")
    async def version():
        served = champion.served
        return JSONResponse(
            {
                "model": champion.name,
                "alias": champion.alias,
                "version": None if served is None else served.version,
                "loaded_at": None if served is None else served.loaded_at,
            }
        )

    @app.post("/invocations")
    async def invoke(request: Request):
        served = champion.served  # this request's version, whatever the poller swaps in meanwhile
        if served is None:
            return JSONResponse({"error_code": "NOT_READY", "message": f"no {champion.name}@{champion.alias} yet"}, 503)
        data = await request.body()
        content_type = request.headers.get("content-type", "application/json")
        try:
            result = await asyncio.to_thread(invocations, data, content_type, served.model, served.input_schema)
        except MlflowException as exc:
            return Response(exc.serialize_as_json(), exc.get_http_status_code(), media_type="application/json")
        headers = {"X-Model-Version": str(served.version)}
        return Response(result.response, result.status, headers=headers, media_type=result.mimetype)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.registry.scoring",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="pinsage", help="registered model name (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5001, help="port (default: %(default)s)")
    parser.add_argument(
        "--poll-s", type=float, default=5.0, help="seconds between looks at the alias (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    champion = Champion(args.model)
    try:
        champion.refresh()
    except Exception:  # a champion that cannot load now may load at the next poll
        log.exception("loading %s@%s failed; retrying every %.0f s", args.model, ALIAS, args.poll_s)
    stop = threading.Event()
    poller = threading.Thread(target=champion.follow, args=(args.poll_s, stop), name="alias-poller", daemon=True)
    poller.start()
    try:
        uvicorn.run(create_app(champion), host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
