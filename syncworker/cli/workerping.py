"""Whether any worker answers Celery's control ping: ``status --watch`` lists the workers
that do, and a command about to wait on the workers (``check`` fanned out, ``trigger
--wait``) says so once when none does, instead of waiting in silence."""

from __future__ import annotations

import logging
import sys
from typing import Any

from syncworker.redact import redact_text

__all__ = ["PING_TIMEOUT", "answering", "warn_if_none_answers"]

log = logging.getLogger(__name__)

# How long workers have to answer: a busy worker answers between its tasks' chunks.
PING_TIMEOUT = 2.0


def answering(app: Any, timeout: float = PING_TIMEOUT, limit: int | None = None) -> set[str]:
    """The node names of the workers that answered one ping within ``timeout`` (the first
    ``limit`` of them, if given: then it returns as soon as they have)."""
    replies = app.control.inspect(timeout=timeout, limit=limit).ping() or {}
    return set(replies)


def warn_if_none_answers(app: Any, config_path: str, instead: str = "") -> None:
    """One line on stderr when no worker answers; the caller waits on anyway, since a
    worker may start later. ``instead``: what the user can run without workers. Only a
    hint: a broker that fails the ping (Redis restarting) leaves it out, and the wait that
    follows meets the broker's state itself."""
    try:
        if answering(app, limit=1):
            return
    except Exception as exc:  # noqa: BLE001 - any failure to ask only drops the hint
        log.debug("could not ask the workers whether any answers: %s", redact_text(str(exc)))
        return
    alternative = f", or {instead}" if instead else ""
    print(
        f"syncworker: no syncworker worker answers on {broker_text(app)}: the run waits for"
        f" one (start `syncworker worker -c {config_path}`{alternative})",
        file=sys.stderr,
        flush=True,
    )


def broker_text(app: Any) -> str:
    """The broker URL (each of a failover list) without its passwords."""
    urls = app.conf.broker_url
    listed = urls if isinstance(urls, list | tuple) else str(urls).split(";")
    return ", ".join(redact_text(str(url).strip()) for url in listed)
