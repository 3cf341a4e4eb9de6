"""The FastAPI application of ``syncworker api``: routes, answers, error mapping, OpenAPI.

Every route but ``/healthz`` sits behind :class:`~syncworker.api.guard.Guard`. Routes
answer 202 once the task is in the broker and never copy anything themselves; how a
repository or image sync ended is read from Redis (``coord/requests.py``), by any replica,
optionally waiting for it a bounded time. Errors:
a request refused as it stands (malformed JSON, an unknown registry, an invalid name) is
400 with the reason; Redis or the broker unreachable is 503, which a registry retries.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from syncworker.api.dispatch import Dispatcher, Outcome
from syncworker.api.guard import MAX_BODY_BYTES, Guard
from syncworker.api.notifications import (
    DISTRIBUTION_EVENTS_TYPE,
    Item,
    distribution_pushes,
    harbor_pushes,
)
from syncworker.api.schemas import (
    MAX_WAIT,
    Ready,
    SyncAccepted,
    SyncRequest,
    SyncStatus,
    WebhookAnswer,
)
from syncworker.coord import RECENT_RUNS
from syncworker.errors import ContentError, CoordError, RequestError, SyncworkerError

__all__ = ["build_api"]

RunDocument = dict[str, Any]
TaskId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
WaitParam = Annotated[
    float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for the sync to end")
]
# How often a waiting request reads its sync's state in Redis.
WAIT_POLL = 0.2
RegistryParam = Annotated[
    str | None,
    Query(description="the registry entry to use; default: every entry whose URL is on "
          "the event's host", max_length=255),
]  # fmt: skip
_OBJECT = {"schema": {"type": "object"}}
_JSON_BODY: dict[str, Any] = {"required": True, "content": {"application/json": _OBJECT}}


def build_api(dispatcher: Dispatcher, token: str) -> FastAPI:
    """The application for ``dispatcher``, guarded by ``token``; closes its connections at
    shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        dispatcher.app.close()
        dispatcher.coord.close()

    api = FastAPI(
        title="syncworker",
        summary="Registry webhooks and sync requests for the syncworker mirror",
        version="1",
        docs_url=None,  # the UI pages load scripts from a CDN; the schema is enough
        redoc_url=None,
        lifespan=lifespan,
    )
    api.add_middleware(Guard, token=token)
    _errors(api)
    _probes(api, dispatcher)
    _rest(api, dispatcher)
    _webhooks(api, dispatcher)
    api.openapi = _openapi(api)  # type: ignore[method-assign]
    return api


def _errors(api: FastAPI) -> None:
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if "json" not in request.headers.get("content-type", "json"):
            reason = "the body must be JSON, sent with Content-Type: application/json"
        else:
            reason = _validation_reason(exc)
        return JSONResponse({"detail": reason}, status_code=400)

    api.add_exception_handler(RequestError, refused)
    api.add_exception_handler(ContentError, refused)
    api.add_exception_handler(CoordError, unavailable)
    api.add_exception_handler(RequestValidationError, invalid)


def _validation_reason(exc: RequestValidationError) -> str:
    """pydantic's errors as ``where: what`` (never the input: it may be anything)."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def _probes(api: FastAPI, dispatcher: Dispatcher) -> None:
    @api.get("/healthz", tags=["probes"], openapi_extra={"security": []})
    def healthz() -> dict[str, str]:
        """The process is up (no credentials needed)."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["probes"], response_model=Ready,
             responses={503: {"model": Ready}})  # fmt: skip
    def readyz() -> JSONResponse:
        """Redis and the broker answer."""
        checks = {"redis": dispatcher.check_redis, "broker": dispatcher.check_broker}
        ready = Ready(**{name: _outcome(check) for name, check in checks.items()})
        ok = ready.redis == "ok" and ready.broker == "ok"
        return JSONResponse(ready.model_dump(), status_code=200 if ok else 503)


def _outcome(check: Callable[[], None]) -> str:
    try:
        check()
    except SyncworkerError as exc:
        return str(exc)
    return "ok"


def _rest(api: FastAPI, dispatcher: Dispatcher) -> None:
    @api.post("/v1/sync", status_code=202, response_model=SyncAccepted,
              response_model_exclude_none=True, tags=["sync"])  # fmt: skip
    async def sync(request: SyncRequest) -> SyncAccepted:
        """Start a walk of ``registry``, a sync of ``repo``, or of one image (``repo`` and
        ``reference``, a tag or a digest). A walk already in progress is not started
        again: its run id is answered with ``started: false``. A repository or image sync
        answers a ``task_id`` for ``GET /v1/sync/{task_id}``; with ``wait`` (seconds, at
        most 55), the answer comes when it ended or the wait is over, with its ``status``."""
        accepted: SyncAccepted = await run_in_threadpool(_send, dispatcher, request)
        if request.wait is not None and accepted.task_id is not None:
            accepted.status = await _wait(dispatcher, accepted.task_id, request.wait)
        return accepted

    @api.get("/v1/sync/{task_id}", response_model=SyncStatus, tags=["sync"],
             responses={404: {"description": "no such request (unknown or expired)"},
                        400: {"description": "a malformed id, or wait out of bounds"}})  # fmt: skip
    async def sync_status(task_id: TaskId, wait: WaitParam = 0) -> SyncStatus:
        """How a repository or image sync sent by ``POST /v1/sync`` or a webhook stands:
        ``queued``, ``running``, ``done`` or ``failed`` (its ``result`` names each failure
        with its cause), or ``deferred``: an upstream's pull budget held it back, it runs
        again when the budget refills (``result.refill_at``, Unix time). ``wait``: seconds
        to wait for it to end first (at most 55)."""
        status = await _wait(dispatcher, task_id, wait)
        if status is None:
            raise HTTPException(404, f"no request {task_id!r} (unknown or expired)")
        return status

    @api.get("/v1/runs", tags=["runs"])
    def runs(limit: Annotated[int, Query(ge=1, le=1000)] = RECENT_RUNS) -> list[RunDocument]:
        """Recent runs, newest first, as ``syncworker status --json`` shows them."""
        return [status.to_dict() for status in dispatcher.coord.runs(limit)]

    @api.get("/v1/runs/{run_id}", tags=["runs"], responses={404: {"description": "no such run"}})
    def run(run_id: str) -> RunDocument:
        """One run, as ``syncworker status RUN --json`` shows it."""
        status = dispatcher.coord.run_status(run_id)
        if status is None:
            raise HTTPException(404, f"no run {run_id[:100]!r} (unknown or expired)")
        return status.to_dict()


def _send(dispatcher: Dispatcher, request: SyncRequest) -> SyncAccepted:
    if request.repo is None:
        if request.reference is not None:
            raise RequestError("a reference needs its repo")
        if request.wait is not None:
            raise RequestError("wait is for a repo or an image; a walk's run is at /v1/runs/{id}")
        claim = dispatcher.walk(request.registry)
        return SyncAccepted(run_id=claim.run_id, started=claim.started)
    if request.reference is None:
        return SyncAccepted(task_id=dispatcher.repo(request.registry, request.repo))
    accepted = dispatcher.image(request.registry, request.repo, request.reference)
    return SyncAccepted(task_id=accepted.task_id, coalesced=accepted.coalesced)


async def _wait(dispatcher: Dispatcher, task_id: str, seconds: float) -> SyncStatus | None:
    """The request's status once it ended or ``seconds`` passed; None if there is none.
    Redis is read every WAIT_POLL seconds, so any replica answers for any request."""
    deadline = time.monotonic() + seconds
    while True:
        status = await run_in_threadpool(dispatcher.status, task_id)
        left = deadline - time.monotonic()
        if status is None or status.ended or left <= 0:
            return None if status is None else SyncStatus.model_validate(status)
        await asyncio.sleep(min(WAIT_POLL, left))


def _webhooks(api: FastAPI, dispatcher: Dispatcher) -> None:
    distribution_body = {
        "required": True,
        "content": {DISTRIBUTION_EVENTS_TYPE: _OBJECT, "application/json": _OBJECT},
    }

    @api.post("/v1/webhooks/distribution", status_code=202, response_model=WebhookAnswer,
              tags=["webhooks"], openapi_extra={"requestBody": distribution_body})  # fmt: skip
    async def distribution(request: Request, registry: RegistryParam = None) -> WebhookAnswer:
        """CNCF distribution's notifications: each manifest push that a registry entry
        mirrors becomes ``sync_image``; pulls, blobs and repeats send nothing."""
        items = distribution_pushes(await _json(request))
        return await _dispatch(dispatcher, items, registry)

    @api.post("/v1/webhooks/harbor", status_code=202, response_model=WebhookAnswer,
              tags=["webhooks"], openapi_extra={"requestBody": _JSON_BODY})  # fmt: skip
    async def harbor(request: Request, registry: RegistryParam = None) -> WebhookAnswer:
        """Harbor's ``PUSH_ARTIFACT`` webhook (default or CloudEvents payload format)."""
        items = harbor_pushes(await _json(request))
        return await _dispatch(dispatcher, items, registry)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        reason = str(exc) if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise RequestError(f"malformed JSON: {reason}") from None


async def _dispatch(
    dispatcher: Dispatcher, items: list[Item], registry: str | None
) -> WebhookAnswer:
    outcome: Outcome = await run_in_threadpool(dispatcher.pushes, items, registry)
    return WebhookAnswer.of(outcome)


def _openapi(api: FastAPI) -> Callable[[], dict[str, Any]]:
    """The schema, with the bearer token declared for every operation (``/healthz`` opts
    out): the Guard enforces it, this only documents it."""

    def schema() -> dict[str, Any]:
        if api.openapi_schema is None:
            doc = get_openapi(title=api.title, version=api.version, summary=api.summary,
                              routes=api.routes)  # fmt: skip
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            doc["security"] = [{"bearer": []}]
            _document_refusals(doc)
            api.openapi_schema = doc
        return api.openapi_schema

    return schema


# The answers every guarded operation may give besides its own (POST ones have a body).
_REFUSALS = {
    "401": "missing or wrong bearer token; nothing was sent",
    "503": "Redis or the broker is unreachable: try again",
}
_BODY_REFUSALS = {
    "400": "malformed JSON, unknown registry or invalid name (the reason is in detail)",
    "413": f"the body is over {MAX_BODY_BYTES} bytes",
}


def _document_refusals(doc: dict[str, Any]) -> None:
    for operations in doc["paths"].values():
        for method, operation in operations.items():
            if operation.get("security") == []:
                continue
            refusals = {**_REFUSALS, **(_BODY_REFUSALS if method == "post" else {})}
            for status, description in refusals.items():
                operation["responses"].setdefault(status, {"description": description})
