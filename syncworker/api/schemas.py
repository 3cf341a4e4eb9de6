"""Request and answer bodies of the API (pydantic: they are its OpenAPI schema too)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from syncworker.api.dispatch import Outcome

__all__ = ["AcceptedImage", "Ready", "SkippedItem", "SyncAccepted", "SyncRequest", "WebhookAnswer"]


class SyncRequest(BaseModel):
    """``registry`` alone: a walk; with ``repo``: that repository; with ``reference`` too
    (a tag or an ``alg:hex`` digest): that image."""

    model_config = ConfigDict(extra="forbid")

    registry: str = Field(max_length=255)
    repo: str | None = Field(None, max_length=255)
    reference: str | None = Field(None, max_length=255)


class SyncAccepted(BaseModel):
    """A walk's ``run_id`` (``started: false`` when one was already in progress), or the
    ``task_id`` of a repository or image sync (``coalesced``: sent earlier)."""

    run_id: str | None = None
    started: bool | None = None
    task_id: str | None = None
    coalesced: bool | None = None


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
