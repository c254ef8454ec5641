"""``nightrecs serve``: the published lists over HTTP, one ranged GET per lookup.

A thin FastAPI app over :class:`nightrecs.tasks.recs.Reader`; it holds the current run's
indexes, never the lists. OpenAPI schema at ``/openapi.json``, docs at ``/docs``.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from nightrecs.tasks.artifacts import NoPublishedRun
from nightrecs.tasks.recs import Reader
from nightrecs.tasks.storage import Root

log = logging.getLogger(__name__)


class Item(BaseModel):
    item_id: str
    score: float
    reason: str


class UserList(BaseModel):
    user_id: str
    run_id: str
    items: list[Item]
    fallback: bool  # true: the user is not in the run; the items are its cold-start list


class Health(BaseModel):
    run_id: str


def app(reader: Reader) -> FastAPI:
    api = FastAPI(title="nightrecs", summary="Tonight's recommendation lists, one user at a time.")

    @api.get("/v1/users/{user_id}", response_model=UserList,
             responses={503: {"description": "nothing published yet"}})
    def user_list(user_id: str):
        try:
            return reader.get(user_id)
        except NoPublishedRun as e:
            return JSONResponse({"detail": str(e)}, status_code=503)

    @api.get("/healthz", response_model=Health, responses={503: {"description": "no run loaded yet"}})
    def healthz():
        try:
            return {"run_id": reader.run()["run_id"]}
        except NoPublishedRun as e:
            return JSONResponse({"detail": str(e)}, status_code=503)

    return api


def create_app() -> FastAPI:
    """The app for a uvicorn worker process: root and refresh from the environment."""
    from nightrecs.tasks.storage import open_root

    return app(Reader(open_root(os.environ["NIGHTRECS_SERVE_ROOT"]),
                      float(os.environ.get("NIGHTRECS_SERVE_REFRESH", "30"))))


def serve(root: Root, host: str = "127.0.0.1", port: int = 8080, refresh_seconds: float = 30.0,
          workers: int = 1) -> None:
    """Run the service; ``workers`` > 1 forks that many processes (one Reader each), since
    one Python process tops out at a few hundred lookups/s."""
    import uvicorn

    log.info("serving %s on http://%s:%d with %d worker(s) (LATEST checked every %.0f s)", root.full("recs"),
             host, port, workers, refresh_seconds)
    os.environ.update(NIGHTRECS_SERVE_ROOT=root.uri, NIGHTRECS_SERVE_REFRESH=str(refresh_seconds))
    uvicorn.run("nightrecs.tasks.serve:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info")
