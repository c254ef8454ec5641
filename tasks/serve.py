"""``nightrecs serve``: the published lists over HTTP, one ranged GET per lookup.

A thin FastAPI app over :class:`nightrecs.tasks.recs.Reader`; it holds the current run's
indexes, never the lists. OpenAPI schema at ``/openapi.json``, docs at ``/docs``.
"""

from __future__ import annotations

import logging

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


def serve(root: Root, host: str = "127.0.0.1", port: int = 8080, refresh_seconds: float = 30.0) -> None:
    import uvicorn

    log.info("serving %s on http://%s:%d (LATEST checked every %.0f s)", root.full("recs"), host, port,
             refresh_seconds)
    uvicorn.run(app(Reader(root, refresh_seconds)), host=host, port=port, log_level="info")
