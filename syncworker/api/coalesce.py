"""Identical image requests answered with the task already sent (key ``{p}:api:image:...``,
schema in ``coord/keys.py``).

A push notification names the manifest's digest. For each (registry, repository,
reference) the API keeps ``"{digest} {task id}"`` of the last ``sync_image`` it sent, for
COALESCE_TTL. A request naming the same digest is answered with that task and sends
nothing: a registry's redelivery (distribution resends on any non-2xx, or when our answer
was lost), the same event from two replicas, a re-push of identical content. A request
naming another digest (the tag moved, even back to an earlier digest) replaces the entry
and sends a new task, so a push is never folded into a sync that may have read the tag
before it.

Why here and not only in the workers' image single-flight: that one coalesces tasks that
run at the same time, but each redelivery would still cost a broker message, a worker slot
and an upstream HEAD; this check costs one Redis round trip in the API. Requests without a
digest (a REST request by tag) cannot be compared and are always sent; the single-flight
coalesces those that overlap.
"""

from __future__ import annotations

from syncworker.coord import Coordinator
from syncworker.coord.keys import Keys
from syncworker.coord.redisclient import describe_client, redis_errors, text
from syncworker.coord.scripts import register

__all__ = ["COALESCE_TTL", "Coalescer"]

# Long enough to cover a registry's redeliveries (distribution's backoff is seconds) and
# a burst of identical requests; short enough that a task that failed for good does not
# swallow later identical requests for long (the next walk repairs what it missed).
COALESCE_TTL = 600


class Coalescer:
    """Claims (registry, repo, reference, digest) for a task id, in the coordinator's Redis."""

    def __init__(self, coord: Coordinator, ttl: int = COALESCE_TTL) -> None:
        self._client = coord.client
        self._where = describe_client(coord.client)
        self._keys = Keys(coord.prefix)
        self._ttl = ttl
        self._claim = register(self._client, "api_claim")
        self._release = register(self._client, "delete_if_equal")

    def claim(self, registry: str, repo: str, reference: str, digest: str, task_id: str) -> str:
        """The task id that serves this request: an earlier one for the same digest, or
        ``task_id``, now recorded (the caller then sends it, or calls :meth:`release`)."""
        key = self._keys.api_image(registry, repo, reference)
        with redis_errors(self._where):
            earlier = text(self._claim(keys=[key], args=[digest, task_id, self._ttl]))
        return earlier or task_id

    def release(self, registry: str, repo: str, reference: str, digest: str, task_id: str) -> None:
        """Forget a claim whose task could not be sent, so that a redelivery sends it."""
        key = self._keys.api_image(registry, repo, reference)
        with redis_errors(self._where):
            self._release(keys=[key], args=[f"{digest} {task_id}"])
