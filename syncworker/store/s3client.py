"""The boto3 client of an S3 store: made from one session per process, configured for
S3-compatible servers, its operations logged (:mod:`syncworker.store.s3log`)."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from syncworker.store.s3log import log_operations
from syncworker.store.s3settings import S3Settings

__all__ = ["connect"]

_SESSION: list[boto3.session.Session] = []
_SESSION_LOCK = threading.Lock()


def connect(settings: S3Settings, retries: int) -> Any:
    """A client of the store's endpoint, making ``retries`` attempts per call."""
    # One boto3 session per process: a session loads the service models (about half a
    # second); clients made from it share them. Credentials go to the client, not the
    # session, so stores with different keys still share it. Sessions are not thread-safe.
    with _SESSION_LOCK:
        if not _SESSION:
            _SESSION.append(boto3.session.Session())
        client = _SESSION[0].client(
            "s3",
            region_name=settings.region,
            endpoint_url=settings.endpoint,
            use_ssl=settings.secure,
            verify=not settings.skip_verify,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            aws_session_token=settings.session_token,
            config=_config(settings, retries),
        )
    log_operations(client)
    return client


def _config(settings: S3Settings, retries: int) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": retries},
        connect_timeout=5,  # seconds; an unreachable endpoint must fail fast
        read_timeout=60,
        max_pool_connections=32,  # concurrent blob copies per worker share one client
        s3={"addressing_style": "path" if settings.path_style else "auto"},
        user_agent_extra=settings.user_agent,
        # Content checksums only where S3 requires them: several S3-compatible servers
        # reject the CRC headers newer botocore adds by default; our digests verify content.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
