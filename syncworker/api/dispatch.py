"""What the API's requests do: send the public tasks by name, through the helpers the CLI
uses (``start_walk`` of ``syncworker.runs.catalogwalk``, ``send`` of ``syncworker.worker``),
after routing and validation.

Blocking (redis-py, kombu): the web layer calls it from its thread pool.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from celery import Celery

from syncworker.api.coalesce import Coalescer
from syncworker.api.notifications import Item, Push, Skipped
from syncworker.api.routing import entries_for_hosts, refusal, registry_entry, validate_image
from syncworker.config import Config, RegistryConfig
from syncworker.coord import Coordinator
from syncworker.coord.requests import RequestStatus
from syncworker.errors import ContentError, CoordError, RequestError
from syncworker.oci import validate_repository
from syncworker.runs.catalogwalk import Claim, start_walk
from syncworker.worker.send import CeleryWalkQueue, publishing, send
from syncworker.worker.tasknames import TASK_SYNC_IMAGE, TASK_SYNC_REPO

__all__ = ["PUBLISH_RETRY_POLICY", "Accepted", "Dispatcher", "Outcome"]

log = logging.getLogger(__name__)

# Publishing is retried for under a second, then the request is answered 503 and its
# sender retries: a registry gives up on an answer after its endpoint timeout (1 s by
# default in distribution) and sends again anyway.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2,
                        "interval_max": 0.3}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Accepted:
    """A ``sync_image`` that serves a request: sent now, or sent earlier (coalesced)."""

    registry: str
    repo: str
    reference: str
    task_id: str
    coalesced: bool


@dataclass
class Outcome:
    """What a notification asked for: tasks that serve it, and what it asked in vain."""

    accepted: list[Accepted] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class Dispatcher:
    """Sends walks, repository and image syncs for one configuration."""

    def __init__(self, config: Config, app: Celery, coord: Coordinator) -> None:
        self.config = config
        self.app = app
        self.coord = coord
        self._coalescer = Coalescer(coord)

    # -- REST --------------------------------------------------------------------------------

    def walk(self, registry: str) -> Claim:
        """Start a walk of ``registry``, or name the one in progress."""
        registry_entry(self.config, registry)
        queue = CeleryWalkQueue(self.app, self.config.syncworker.repos_per_task)
        claim = start_walk(self.coord, queue, registry)
        log.info("walk of %s: run %s (%s)", registry, claim.run_id, _new(claim.started))
        return claim

    def repo(self, registry: str, repo: str) -> str:
        """Send ``sync_repo(registry, repo)``; its task id (a request :meth:`status` reads)."""
        entry = registry_entry(self.config, registry)
        repo = entry.upstream_repository(validate_repository(repo))
        _refuse_untaken(entry, repo)
        task_id = str(uuid.uuid4())
        with self.coord.sending_request(task_id, "repo", registry, repo, None):
            send(self.app, TASK_SYNC_REPO, [registry, repo], task_id=task_id,
                 retry_policy=PUBLISH_RETRY_POLICY)  # fmt: skip
        log.info("sync_repo(%s, %s) sent as task %s", registry, repo, task_id)
        return task_id

    def status(self, task_id: str) -> RequestStatus | None:
        """How the request ``task_id`` stands, or None (unknown, or expired)."""
        return self.coord.request_status(task_id)

    def image(self, registry: str, repo: str, reference: str) -> Accepted:
        """``sync_image`` for an explicit request: its repository must be mirrored by the
        entry; its tag is taken as asked, as ``syncworker trigger --image`` does."""
        entry = registry_entry(self.config, registry)
        ref = validate_image(repo, reference)
        repo = entry.upstream_repository(repo)
        _refuse_untaken(entry, repo)
        digest = str(ref.digest) if ref.digest is not None else None
        return self._send_image(registry, repo, reference, digest)

    # -- notifications -----------------------------------------------------------------------

    def pushes(self, items: Iterable[Item], registry: str | None = None) -> Outcome:
        """``sync_image`` for each push that a registry entry mirrors (the entry named
        ``registry``, else those whose URL is on the push's host)."""
        named = [registry_entry(self.config, registry)] if registry else None
        outcome = Outcome()
        for item in items:
            if isinstance(item, Push):
                self._push(item, named, outcome)
            else:
                outcome.skipped.append(item)
        for skipped in outcome.skipped:
            log.info("notification skipped: %r: %s", skipped.what, skipped.reason)
        return outcome

    def _push(self, push: Push, named: list[RegistryConfig] | None, outcome: Outcome) -> None:
        try:
            validate_image(push.repo, push.reference, push.digest)
        except ContentError as exc:
            outcome.skipped.append(Skipped(_label(push), str(exc)))
            return
        entries = named or entries_for_hosts(self.config, push.hosts)
        if not entries:
            # The hosts it came from, and the fix, so a misnamed upstream is told apart.
            hosts = ", ".join(dict.fromkeys(push.hosts))
            why = f"no registry entry for its host ({hosts}); ?registry=NAME names one"
            outcome.skipped.append(Skipped(_label(push), why))
        for entry in entries:
            reason = refusal(entry, push.repo, push.tag)
            if reason is not None:
                outcome.skipped.append(Skipped(f"{entry.name}/{_label(push)}", reason))
                continue
            repo = entry.upstream_repository(push.repo)
            accepted = self._send_image(entry.name, repo, push.reference, push.digest)
            outcome.accepted.append(accepted)

    # -- sending -----------------------------------------------------------------------------

    def _send_image(self, registry: str, repo: str, reference: str, digest: str | None) -> Accepted:
        """Send ``sync_image`` unless one was sent for the same content (coalesce.py)."""
        task_id = str(uuid.uuid4())
        if digest is not None:
            claimed = self._coalescer.claim(registry, repo, reference, digest, task_id)
            if claimed != task_id:
                log.info("sync_image(%s, %s, %s): coalesced with task %s",
                         registry, repo, reference, claimed)  # fmt: skip
                return Accepted(registry, repo, reference, claimed, coalesced=True)
        try:
            with self.coord.sending_request(task_id, "image", registry, repo, reference):
                send(self.app, TASK_SYNC_IMAGE, [registry, repo, reference], task_id=task_id,
                     retry_policy=PUBLISH_RETRY_POLICY)  # fmt: skip
        except CoordError:
            if digest is not None:
                self._coalescer.release(registry, repo, reference, digest, task_id)
            raise
        log.info("sync_image(%s, %s, %s) sent as task %s", registry, repo, reference, task_id)
        return Accepted(registry, repo, reference, task_id, coalesced=False)

    # -- readiness ---------------------------------------------------------------------------

    def check_redis(self) -> None:
        """:class:`CoordError` unless Redis answers."""
        self.coord.ping()

    def check_broker(self) -> None:
        """:class:`CoordError` unless the broker accepts a connection."""
        with publishing("a connection check"), self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)


def _refuse_untaken(entry: RegistryConfig, repo: str) -> None:
    """An explicit request names a repository its entry mirrors (any tag of it)."""
    reason = refusal(entry, repo, None)
    if reason is not None:
        raise RequestError(f"registry {entry.name!r} does not mirror {repo!r}: {reason}")


def _label(push: Push) -> str:
    """``repo:tag`` or ``repo@digest`` for a log line or an answer, capped (the names are
    not validated yet)."""
    label = f"{push.repo}:{push.tag}" if push.tag else f"{push.repo}@{push.digest}"
    return label[:300]


def _new(started: bool) -> str:
    return "started" if started else "already in progress"
