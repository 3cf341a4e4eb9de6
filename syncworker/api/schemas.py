"""Request and answer bodies of the API (pydantic: they are its OpenAPI schema too)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncworker.api.dispatch import Outcome

__all__ = [
    "MAX_WAIT",
    "AcceptedImage",
    "Ready",
    "SkippedItem",
    "SyncAccepted",
    "SyncRequest",
    "SyncStatus",
    "WebhookAnswer",
]

# The longest a request may hold its connection waiting for a sync to end: under the 60 s
# idle timeout of common proxies and load balancers; a caller that needs longer asks again.
MAX_WAIT = 55.0


class SyncRequest(BaseModel):
    """``registry`` alone: a walk; with ``repo``: that repository; with ``reference`` too
    (a tag or an ``alg:hex`` digest): that image."""

    model_config = ConfigDict(extra="forbid")

    registry: str = Field(max_length=255)
    repo: str | None = Field(None, max_length=255)
    reference: str | None = Field(None, max_length=255)
    wait: float | None = Field(
        None, ge=0, le=MAX_WAIT,
        description="seconds to wait for a repository or image sync to end before answering",
    )  # fmt: skip


class SyncStatus(BaseModel):
    """How a repository or image sync sent by the API stands: ``queued`` (in the broker),
    ``running``, ``done`` or ``failed``. ``result`` once it ended: the task's counts and,
    when failed, ``failures`` naming each repository or tag with its cause."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: Literal["image", "repo"]
    registry: str
    repo: str
    reference: str | None
    state: Literal["queued", "running", "deferred", "done", "failed"]
    created: float
    started: float | None
    finished: float | None
    result: dict[str, Any] | None


class SyncAccepted(BaseModel):
    """A walk's ``run_id`` (``started: false`` when one was already in progress), or the
    ``task_id`` of a repository or image sync (``coalesced``: sent earlier), which
    ``GET /v1/sync/{task_id}`` reads; with ``wait``, ``status`` is how it stood then."""

    run_id: str | None = None
    started: bool | None = None
    task_id: str | None = None
    coalesced: bool | None = None
    status: SyncStatus | None = None


class AcceptedImage(BaseModel):
    """A ``sync_image`` task that serves a push (``coalesced``: sent for an earlier one)."""

    model_config = ConfigDict(from_attributes=True)

    registry: str
    repo: str
    reference: str
    task_id: str
    coalesced: bool


class SkippedItem(BaseModel):
    """An event or artifact that asks for nothing, and why."""

    model_config = ConfigDict(from_attributes=True)

    what: str
    reason: str


class WebhookAnswer(BaseModel):
    """The ``sync_image`` tasks that serve the notification, and what it asked in vain."""

    accepted: list[AcceptedImage]
    skipped: list[SkippedItem]

    @classmethod
    def of(cls, outcome: Outcome) -> WebhookAnswer:
        return cls(
            accepted=[AcceptedImage.model_validate(a) for a in outcome.accepted],
            skipped=[SkippedItem.model_validate(s) for s in outcome.skipped],
        )


class Ready(BaseModel):
    """``ok``, or why not, for each service the API needs."""

    redis: str
    broker: str
