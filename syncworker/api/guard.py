"""The API's front gate, a plain ASGI middleware: the bearer token, then the body size.

It runs before routing and before any body is parsed, so a request without the right
token is answered 401 having read nothing and touched neither Redis nor the broker, and a
body over the limit is answered 413 without being buffered past it. The token is compared
in constant time (``hmac.compare_digest``) and never logged; a rejection logs the method,
path and client address only.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MAX_BODY_BYTES", "OPEN_PATHS", "Guard"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Liveness only says the process is up: probes call it without credentials.
OPEN_PATHS = frozenset({"/healthz"})
# A distribution envelope holds one event (about 1 KiB), a Harbor payload one artifact's
# tags; 1 MiB is far above any of them and bounds what one request can make us buffer.
MAX_BODY_BYTES = 1024 * 1024
_CHALLENGE = (b"www-authenticate", b'Bearer realm="syncworker"')


class Guard:
    """Wraps ``app``: 401 unless ``Authorization: Bearer <token>`` (except OPEN_PATHS),
    413 for a body over ``max_body`` bytes; the body is then handed on as it was read."""

    def __init__(self, app: ASGIApp, token: str, max_body: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._token = token.encode()
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self._app(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            # The path as a literal: a stranger's percent-encoded line break forges no line.
            log.warning("refused %s %r from %s: missing or wrong bearer token",
                        scope["method"], scope["path"][:200], _client(scope))  # fmt: skip
            await _answer(send, 401, "a valid Authorization: Bearer token is required",
                          [_CHALLENGE])  # fmt: skip
            return
        body = await self._read_body(scope, receive)
        if body is None:
            await _answer(send, 413, f"the body is over {self._max_body} bytes")
            return
        await self._app(scope, _replay(body, receive), send)

    def _authorized(self, scope: Scope) -> bool:
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, credentials = values[0].partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to be over the limit."""
        for key, value in scope["headers"]:
            if key == b"content-length" and (not value.isdigit() or int(value) > self._max_body):
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b""  # the client went away; the app sees the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then waits on the client as before."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *(headers or [])],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"
