"""The one exception tree of syncworker.

::

    SyncworkerError
    ├── ConfigError              a bad configuration; ``path`` names the field
    ├── RegistryError            the upstream answered with an error status
    │   └── NotFoundError        404 / MANIFEST_UNKNOWN / BLOB_UNKNOWN / NAME_UNKNOWN
    ├── TransportError           no answer: connection refused, reset, timeout, TLS failure
    │   └── DeadlineExceededError  the job's absolute deadline (syncTimeout) passed
    ├── ContentError             the upstream sent something we refuse to store
    │   ├── MalformedResponseError  an answer the spec does not allow: bad JSON, wrong
    │   │                           types, bad header values
    │   ├── DigestMismatchError  bytes do not hash to the digest they were asked for by
    │   ├── SizeLimitError       a manifest over the cap, a blob longer/shorter than declared
    │   ├── InvalidNameError     a repository or tag name the distribution spec forbids
    │   ├── UnsupportedDigestError  an algorithm we do not know
    │   └── ReferenceCycleError  a manifest that (transitively) refers to itself
    ├── StoreError               the destination store failed (disk, bucket)
    ├── ClaimError               the destination repository mirrors another source
    ├── CoordError               Redis is unreachable or answered with an error
    ├── LockBusy                 a lock stayed held by another holder past the caller's wait
    ├── PullDeferred             the upstream's pull budget is spent: deferred, not failed
    └── RequestError             an HTTP API request we refuse (malformed, unknown registry)

Third-party exceptions are translated into these in exactly one place per dependency:
``registry/http.py`` for urllib3, ``coord/`` for redis-py, ``store/s3.py`` for boto3.
Whether an error is worth trying again is decided from what it carries, in one place:
``syncworker/retry.py`` (``classify``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

__all__ = [
    "ClaimError",
    "ConfigError",
    "ContentError",
    "CoordError",
    "DeadlineExceededError",
    "DigestMismatchError",
    "InvalidNameError",
    "LockBusy",
    "MalformedResponseError",
    "NotFoundError",
    "PullDeferred",
    "ReferenceCycleError",
    "RegistryError",
    "RequestError",
    "SizeLimitError",
    "StoreError",
    "SyncworkerError",
    "TransportError",
    "UnsupportedDigestError",
]


class SyncworkerError(Exception):
    """Base of every error syncworker raises on purpose."""


class ConfigError(SyncworkerError):
    """A configuration value is missing, unknown or malformed.

    ``errors`` lists every ``(path, message)`` found at once; ``path``/``message`` are
    the first of them.
    """

    def __init__(self, path: str, message: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        self.errors = list(errors) or [(path, message)]
        super().__init__("\n".join(f"{p}: {m}" if p else m for p, m in self.errors))
        self.path = path
        self.message = message


class RegistryError(SyncworkerError):
    """The registry answered with an error status.

    ``url`` is already redacted (no tokens, no passwords); ``codes`` are the distribution
    spec's error codes from the response body, if any.
    """

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        codes: tuple[str, ...] = (),
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.codes = codes
        self.detail = detail
        self.retry_after = retry_after
        text = f"{method} {url}: HTTP {status}"
        if codes:
            text += f" {','.join(codes)}"
        if detail:
            text += f": {detail}"
        super().__init__(text)


class NotFoundError(RegistryError):
    """The repository, manifest or blob does not exist upstream."""


class TransportError(SyncworkerError):
    """The request got no HTTP answer (connection, TLS, timeout)."""


class DeadlineExceededError(TransportError):
    """The absolute deadline of the job passed (a slow or stalling upstream); not retried."""


class ContentError(SyncworkerError):
    """The upstream sent content that is refused; nothing of it is stored."""


class MalformedResponseError(ContentError):
    """An answer that is not what the spec says: JSON that does not parse (or nests too
    deep), values of the wrong type, header values that are not what they claim."""


class DigestMismatchError(ContentError):
    """Bytes did not hash to the expected digest."""


class SizeLimitError(ContentError):
    """Content is larger (or shorter) than allowed or declared."""


class InvalidNameError(ContentError):
    """A repository name, tag or reference that the distribution spec does not allow."""


class UnsupportedDigestError(ContentError):
    """A digest algorithm that is not sha256 or sha512."""


class ReferenceCycleError(ContentError):
    """A manifest refers, directly or through others, back to itself."""


class StoreError(SyncworkerError):
    """The destination store could not read or write.

    What its service answered, when it answered: ``status`` (an HTTP status) and
    ``codes`` (its error codes), or ``unanswered`` when it did not answer at all; none of
    them for a local failure (a full disk)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        unanswered: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes
        self.unanswered = unanswered


class ClaimError(SyncworkerError):
    """A destination repository already mirrors another (registry, upstream repository):
    ``holder`` (as ``registry/repository``); ``refused`` is the source turned away."""

    def __init__(self, dest_repo: str, holder: str, refused: str) -> None:
        message = (
            f"destination {dest_repo!r} mirrors {holder}, not {refused}: a destination"
            " repository holds one source (refused, nothing written)"
        )
        (held_registry, _, held_repo), (registry, _, repo) = (
            holder.partition("/"),
            refused.partition("/"),
        )
        if held_repo == repo and held_registry != registry:
            # A registry's default name is its first URL's host: a new URL renames it.
            message += f"; if {held_registry} is this registry renamed, name it {held_registry!r}"
        super().__init__(message)
        self.dest_repo, self.holder, self.refused = dest_repo, holder, refused


class CoordError(SyncworkerError):
    """The coordination backend (Redis) is unreachable or failed."""


class LockBusy(SyncworkerError):
    """The lock was held by someone else for longer than the caller was willing to wait."""

    def __init__(self, key: str, waited: float | None) -> None:
        super().__init__(f"lock {key} is held by another worker (waited {waited or 0:g}s)")
        self.key = key


class LockLost(SyncworkerError):
    """A lock expired under its holder (Redis restarted, or the holder was cut off from it
    or paused for longer than the lock's TTL): another worker may hold it now, so the
    holder stops removing anything."""

    def __init__(self, key: str) -> None:
        super().__init__(f"lock {key} expired while held; stopped, another worker may hold it")
        self.key = key


class PullDeferred(SyncworkerError):
    """A manifest GET not sent: the upstream's pull budget is spent (or down to its
    reserve) until ``refill_at`` (Unix time). What needs it is deferred, not failed."""

    def __init__(self, what: str, refill_at: float) -> None:
        when = time.strftime("%H:%M:%S UTC", time.gmtime(refill_at))
        super().__init__(f"{what}: deferred, the pull budget refills at {when}")
        self.refill_at = refill_at


class RequestError(SyncworkerError):
    """A request to ``syncworker api`` that is refused as it stands (answered 400)."""
