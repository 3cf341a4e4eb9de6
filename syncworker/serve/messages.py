"""The one request and response type every route takes and returns; the server
(:mod:`syncworker.serve.server`) turns them into HTTP."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FileBody", "Request", "Response", "StreamBody", "json_response"]

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    #: The path, percent-decoded, without the query.
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class FileBody:
    """``length`` bytes of an open file from ``start``: sent by the kernel (``sendfile``).
    The server closes ``fd`` once sent, or at once for a HEAD."""

    fd: int
    start: int
    length: int

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True, slots=True)
class StreamBody:
    """``length`` bytes streamed from ``open()`` (an S3 object, read as it is sent)."""

    open: Callable[[], AbstractContextManager[Iterable[bytes]]]
    length: int


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | FileBody | StreamBody = b""
    #: Content-Length when ``body`` is left out (a HEAD answered from metadata alone).
    length: int | None = None

    @property
    def content_length(self) -> int:
        if self.length is not None:
            return self.length
        return len(self.body) if isinstance(self.body, bytes) else self.body.length


def json_response(
    value: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return Response(status, {"Content-Type": "application/json", **(headers or {})}, body)
