"""A `requests` session that answers a registry's 401 challenge, Basic or Bearer.

Test helpers only (pushing the corpus, checking what a registry holds); the product's own
client lives in `syncworker/registry/`. The flow follows the Docker token spec: on 401 with
`WWW-Authenticate: Bearer realm=...,service=...,scope=...`, GET the realm with service and
scope (Basic credentials when given, anonymous otherwise), then retry with the token.
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any

import requests
from requests.auth import AuthBase, HTTPBasicAuth

__all__ = ["ChallengeAuth", "Credentials", "parse_challenge", "registry_session"]

Credentials = tuple[str, str]
_PARAM = re.compile(r'(\w+)="([^"]*)"')
TOKEN_TIMEOUT = 30.0


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="r",service="s"` → ("bearer", {"realm": "r", "service": "s"})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


class ChallengeAuth(AuthBase):
    """Sends nothing until challenged, then Basic or a Bearer token for the challenged scope."""

    def __init__(self, credentials: Credentials | None, verify: bool | str = True) -> None:
        self._credentials = credentials
        self._verify = verify
        self._lock = threading.Lock()
        self._header: str | None = None  # last Authorization that worked or was obtained

    def __repr__(self) -> str:
        return "ChallengeAuth(credentials=<hidden>)"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        with self._lock:
            if self._header:
                request.headers["Authorization"] = self._header
        request.register_hook("response", self._on_response)  # type: ignore[no-untyped-call]
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        challenge = response.headers.get("WWW-Authenticate")
        if response.status_code != 401 or not challenge or getattr(response, "_retried", False):
            return response
        header = self._answer(challenge)
        if header is None:
            return response
        with self._lock:
            self._header = header
        retry = response.request.copy()
        retry.headers["Authorization"] = header
        response.content  # noqa: B018 - drain so the connection can be reused
        response.raw.release_conn()
        new = response.connection.send(retry, **kwargs)
        new.history.append(response)
        new._retried = True  # type: ignore[attr-defined]
        return new

    def _answer(self, challenge: str) -> str | None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self._credentials is None:
                return None
            user, password = self._credentials
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if scheme == "bearer" and "realm" in params:
            return "Bearer " + self._fetch_token(params)
        return None

    def _fetch_token(self, params: dict[str, str]) -> str:
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        auth = HTTPBasicAuth(*self._credentials) if self._credentials else None
        with requests.Session() as http:
            http.trust_env = False  # see registry_session()
            response = http.get(
                params["realm"], params=query, auth=auth, timeout=TOKEN_TIMEOUT, verify=self._verify
            )
        response.raise_for_status()
        body = response.json()
        return str(body.get("token") or body["access_token"])


def registry_session(
    credentials: Credentials | None = None, *, verify: bool | str = True
) -> requests.Session:
    """A session for one registry: challenge-driven auth, `verify` a CA bundle path or bool."""
    session = requests.Session()
    session.auth = ChallengeAuth(credentials, verify=verify)
    session.verify = verify
    # Without this, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment silently replace
    # session.verify (requests merges environment settings over session ones), and the
    # test CA of a TLS registry is ignored. Loopback needs no proxy or .netrc either.
    session.trust_env = False
    return session
