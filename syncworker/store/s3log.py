"""At DEBUG (``-vv``), one line per S3 operation of a store's client: the operation, the
bucket, the key (or the listed prefix), the HTTP status after botocore's own retries and
the milliseconds it took.

botocore's own DEBUG lines print every signed header and presigned URL, so its loggers
stay at INFO (``syncworker.redact.quiet_library_loggers``); these lines come from its event
hooks instead and carry names only: never a header, a signature or a credential.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["LOGGER", "log_operations"]

#: Every line about our S3 operations, shown at ``-vv``.
LOGGER = "syncworker.s3"
_log = logging.getLogger(LOGGER)
# Where an operation's names and start time wait in botocore's per-call context.
_CONTEXT_KEY = "syncworker_s3_log"


def log_operations(client: Any) -> None:
    """Hook ``client``'s events so each of its operations is one DEBUG line."""
    events = client.meta.events
    events.register("before-parameter-build.s3", _started)
    events.register("after-call.s3", _answered)
    events.register("after-call-error.s3", _failed)


def _started(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    if _log.isEnabledFor(logging.DEBUG):
        name = params.get("Key", params.get("Prefix", ""))
        context[_CONTEXT_KEY] = (model.name, params.get("Bucket", ""), name, time.monotonic())


def _answered(http_response: Any, context: dict[str, Any], **_: Any) -> None:
    _line(context, str(http_response.status_code))


def _failed(exception: BaseException, context: dict[str, Any], **_: Any) -> None:
    # The exception's text may quote the endpoint's URL; its type names the failure.
    _line(context, type(exception).__name__)


def _line(context: dict[str, Any], outcome: str) -> None:
    started = context.get(_CONTEXT_KEY)
    if started is None:
        return
    operation, bucket, name, at = started
    ms = round((time.monotonic() - at) * 1000)
    _log.debug("S3 %s bucket=%s key=%s: %s, %d ms", operation, bucket, name, outcome, ms)
