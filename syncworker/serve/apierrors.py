"""The distribution spec's error answers, in one place (spec.md "Error Codes"): each is a
status and a code, sent as ``{"errors": [{"code", "message", "detail"}]}``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "blob_unknown",
    "digest_invalid",
    "manifest_unknown",
    "name_invalid",
    "name_unknown",
    "pagination_invalid",
    "range_invalid",
    "unauthorized",
    "unavailable",
    "unsupported",
]


class ApiError(Exception):
    """An answer of the spec's error form; raised by a route, sent by the server."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return json.dumps({"errors": [error]}).encode()


def name_unknown(name: str) -> ApiError:
    return ApiError(404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name})


def name_invalid(name: str, why: str) -> ApiError:
    return ApiError(400, "NAME_INVALID", f"invalid repository name: {why}", {"name": name[:300]})


def manifest_unknown(name: str, reference: str) -> ApiError:
    detail = {"name": name, "reference": reference}
    return ApiError(404, "MANIFEST_UNKNOWN", "manifest unknown", detail)


def blob_unknown(digest: str) -> ApiError:
    return ApiError(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})


def digest_invalid(text: str) -> ApiError:
    return ApiError(400, "DIGEST_INVALID", "invalid digest", {"digest": text[:300]})


def pagination_invalid(value: str) -> ApiError:
    return ApiError(400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested", value)


def range_invalid(size: int) -> ApiError:
    # RFC 9110 section 15.5.17: 416 names the current length in Content-Range.
    message = f"requested range not satisfiable (size {size})"
    return ApiError(416, "BLOB_UNKNOWN", message, headers={"Content-Range": f"bytes */{size}"})


def unsupported(method: str) -> ApiError:
    message = f"{method} is not supported: this registry is a read-only mirror"
    return ApiError(405, "UNSUPPORTED", message)


def unauthorized(realm: str) -> ApiError:
    challenge = {"WWW-Authenticate": f'Basic realm="{realm}"'}
    return ApiError(401, "UNAUTHORIZED", "authentication required", headers=challenge)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "UNAVAILABLE", message)
