"""Where upstream credentials come from: zot's credentialHelper (``ecr``), else zot's
credentialsFile, then docker's config.json (:mod:`.docker`).

zot's file maps ``host[:port]`` (the URL's host, as written) to a username and password::

    {"registry.example.com:5000": {"username": "u", "password": "p"}}

zot's ``credentialHelper: ecr`` logs in to Amazon ECR with the AWS SDK's own credentials
(environment, shared config, instance role): :class:`EcrLogin` asks
``ecr:GetAuthorizationToken`` for a 12-hour password and asks again an hour before it
expires, as zot does. The account and region come from the URL
(``<account>.dkr.ecr.<region>.amazonaws.com``); any other host (a proxy, a VPC endpoint
name) uses the SDK's default account and region. boto3 is imported on the first login,
so a configuration without the helper never loads it.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from syncworker.errors import ConfigError, TransportError
from syncworker.retry import temporary_answer

if TYPE_CHECKING:
    from syncworker.registry.auth import Credentials

__all__ = [
    "DOCKER_HUB",
    "ECR_HELPER",
    "EcrLogin",
    "FileLogins",
    "host_key",
    "login",
    "parse_auth_entry",
    "parse_credentials_file",
]

#: A credentials file read: ``host[:port]`` -> (username, password).
FileLogins = dict[str, tuple[str, str]]

# Docker Hub answers under several names; docker keeps its login under the first.
_DOCKER_HUB_HOSTS = ("index.docker.io", "registry-1.docker.io", "docker.io")
#: Docker Hub's :func:`host_key`, whichever of its names a URL uses.
DOCKER_HUB = _DOCKER_HUB_HOSTS[0]


def host_key(text: str) -> str:
    """``host[:port]`` of a URL or of a bare host, lower-cased, Docker Hub's names folded."""
    netloc = urlsplit(text if "://" in text else f"//{text}").netloc.lower()
    return DOCKER_HUB if netloc in _DOCKER_HUB_HOSTS else netloc


def login(username: str, password: str) -> Credentials:
    """The client's value for a username and password."""
    from syncworker.registry.auth import Credentials

    return Credentials(username, password)


def parse_credentials_file(data: Any) -> FileLogins:
    """zot's credentials file, already decoded from JSON; ``ValueError`` naming the entry."""
    if not isinstance(data, Mapping):
        raise ValueError("a credentials file is a JSON object keyed by host:port")
    found: FileLogins = {}
    for host, entry in data.items():
        # zot decodes with Go's encoding/json, which matches field names case-insensitively.
        fields = {str(k).lower(): v for k, v in entry.items()} if isinstance(entry, Mapping) else {}
        username, password = fields.get("username"), fields.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ValueError(f"entry {host!r} needs string 'username' and 'password'")
        found[host_key(str(host))] = (username, password)
    return found


def parse_auth_entry(entry: Mapping[str, Any]) -> Credentials | None:
    """A login of docker's ``auths``: a base64 ``auth`` of ``user:password``, or a
    ``username`` and ``password``; None when it holds neither."""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            username, sep, password = base64.b64decode(auth).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return login(username, password) if sep else None
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str):
        return login(user, secret)
    return None


#: zot's ``credentialHelper`` value for Amazon ECR.
ECR_HELPER = "ecr"
# zot's window: a token with less than an hour left is renewed (ECR's last 12 hours).
ECR_RENEW_BEFORE = 3600.0
# However short-lived (or already expired) a token is said to be, AWS is asked at most this
# often per URL: a clock skew must not turn every request into an AWS call.
ECR_MIN_REUSE = 60.0
_ECR_HOST = re.compile(r"(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")


class EcrLogin:
    """The ECR login of one registry URL (a ``CredentialSource``); thread-safe."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._host = urlsplit(url).hostname or url
        found = _ECR_HOST.fullmatch(self._host)
        self._account: str | None = found[1] if found else None
        self._region: str | None = found[2] if found else None
        self._clock = clock
        self._lock = threading.Lock()
        self._login: Credentials | None = None
        self._renew_at = 0.0
        self._fetched_at = 0.0

    def __repr__(self) -> str:
        return f"EcrLogin({self._host!r})"

    def current(self) -> Credentials:
        with self._lock:
            now = self._clock()
            if self._login is None or now >= self._renew_at:
                self._login, expires = self._fetch()
                self._fetched_at = now
                self._renew_at = max(expires - ECR_RENEW_BEFORE, now + ECR_MIN_REUSE)
            return self._login

    def refused(self) -> None:
        """The registry refused the login: renewed on the next request, though no sooner
        than :data:`ECR_MIN_REUSE` after the last AWS call."""
        with self._lock:
            self._renew_at = min(self._renew_at, self._fetched_at + ECR_MIN_REUSE)

    def _fetch(self) -> tuple[Credentials, float]:
        """One GetAuthorizationToken: the login and when it expires (a Unix time)."""
        import boto3  # only a registry with the helper pays for it
        import botocore.exceptions

        try:
            client = boto3.client("ecr", region_name=self._region)
            ids = {"registryIds": [self._account]} if self._account else {}
            data = client.get_authorization_token(**ids)["authorizationData"][0]
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            later = temporary_answer(status if isinstance(status, int) else None, (code,))
            raise self._failed(code, str(exc), later) from None
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
            # No answer from AWS: temporary, as every unanswered request is.
            raise self._failed(type(exc).__name__, str(exc), temporary=True) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._failed(type(exc).__name__, str(exc), temporary=False) from None
        username, sep, password = (
            base64.b64decode(data["authorizationToken"]).decode().partition(":")
        )
        if not sep:
            raise self._failed("InvalidToken", "not a user:password pair", temporary=False)
        return login(username, password), data["expiresAt"].timestamp()

    def _failed(self, code: str, message: str, temporary: bool) -> TransportError | ConfigError:
        what = f"ECR login for {self._host} (credentialHelper: ecr) failed: {code}: {message}"
        if temporary:
            return TransportError(what)
        return ConfigError("extensions.sync.registries[].credentialHelper", what)
