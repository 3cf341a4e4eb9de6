"""A Docker token server on loopback that distribution 2.8's `auth.token` accepts.

Flow (Docker "Token Authentication Specification"): the registry answers 401 with
`WWW-Authenticate: Bearer realm=<this>,service=...,scope=...`; the client GETs
`realm?service=...&scope=repository:<name>:pull,push` with Basic credentials (or none, for
anonymous access) and receives `{"token", "access_token", "expires_in", "issued_at"}`.

The token is a JWS signed RS256 (or ES256) whose header carries `x5c`: the signing key's
self-signed certificate, which is also the registry's `rootcertbundle`. Distribution 2.8
(`registry/auth/token/token.go`, VerifySigningKey) tries x5c first, verifies the chain against
the bundle, then checks `iss`, `aud` (= service), `exp`/`nbf` and the `access` claim.

Policy: a known user with the right password gets every action it asked for; no credentials
get "pull" only when `anonymous_pull`, else an empty access list; a wrong password gets 401.
`users_pull_only` lists users limited to "pull".

Identity tokens (what docker's credential helpers hand out as `<token>`): `refresh_tokens`
maps a refresh token to its user; a form POST to the realm with `grant_type=refresh_token`
(OAuth2, distribution's `docs/spec/auth/oauth.md`) gets that user's token, an unknown
refresh token 401.

Expiry: `expires_in` is what the response advertises; `jwt_lifetime` (default: the same) sets
the `exp` claim. Distribution honours a token until exp + 60 s (its `Leeway`), so to see a
registry reject a token mid-test use e.g. `jwt_lifetime=-57`: accepted for about 3 s, then
401 until the client fetches a new one. Both are plain attributes and may change mid-test.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support.loopback import LoopbackServer
from tests.support.ports import LOOPBACK
from tests.support.tls import PrivateKey, issue_certificate, new_key

__all__ = ["REGISTRY_LEEWAY", "TokenIssuer", "parse_scope"]

DEFAULT_EXPIRES_IN = 300
# distribution's registry/auth/token Leeway: exp and nbf are checked with this slack.
REGISTRY_LEEWAY = 60
# Distribution checks nbf/exp with 60 s leeway; backdating nbf avoids clock-edge failures.
NOT_BEFORE_SKEW = 30
ES256_COORDINATE_BYTES = 32


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """`repository:team/app:pull,push` → ("repository", "team/app", ["pull", "push"]).

    The name may contain ':' (a registry host with a port), so type is split from the left
    and actions from the right.
    """
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


class TokenIssuer(LoopbackServer):
    """Threaded token server on 127.0.0.1 with counters of what it issued."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        anonymous_pull: bool = True,
        users_pull_only: frozenset[str] = frozenset(),
        expires_in: int = DEFAULT_EXPIRES_IN,
        jwt_lifetime: int | None = None,
        algorithm: str = "RS256",
        service: str = "syncworker-test-registry",
        issuer: str = "syncworker-test-issuer",
    ) -> None:
        if algorithm not in ("RS256", "ES256"):
            raise ValueError("algorithm must be RS256 or ES256")
        self.users = dict(users or {})
        self.refresh_tokens: dict[str, str] = {}
        self.anonymous_pull = anonymous_pull
        self.users_pull_only = users_pull_only
        self.expires_in = expires_in
        self.jwt_lifetime = expires_in if jwt_lifetime is None else jwt_lifetime
        self.algorithm = algorithm
        self.service = service
        self.issuer = issuer
        self._key: PrivateKey = new_key("rsa" if algorithm == "RS256" else "ec")
        cert = issue_certificate("syncworker test token signer", self._key, ca=True)
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        workdir.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = workdir / "token-signer.pem"
        self.rootcertbundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._lock = threading.Lock()
        self.tokens: list[str] = []  # every token issued, for a test to look for in output
        self.issued_to: Counter[str | None] = Counter()  # user (None: anonymous) -> tokens
        self.scopes_requested: list[str] = []
        self.rejected = 0
        self._serve(_handler_for(self))

    @property
    def tokens_issued(self) -> int:
        return len(self.tokens)

    @property
    def realm(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/token"

    def __repr__(self) -> str:
        return f"TokenIssuer({self.realm}, issued={self.tokens_issued})"

    # -- issuing -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> tuple[bool, str | None]:
        """(ok, user): no header is anonymous (ok); a bad Basic header or password is not."""
        if not authorization:
            return True, None
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        known = self.users.get(user)
        if known is None or not secrets.compare_digest(known, password):
            return False, None
        return True, user

    def grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        """The `access` claim for `user` asking for `scopes`."""
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            if user is None or user in self.users_pull_only:
                allowed = ["pull"] if (user is not None or self.anonymous_pull) else []
                actions = [a for a in actions if a in allowed]
            if actions:
                access.append({"type": kind, "name": name, "actions": actions})
        return access

    def issue(self, user: str | None, scopes: list[str]) -> dict[str, Any]:
        """The JSON body of a token response."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.jwt_lifetime,
            "nbf": now - NOT_BEFORE_SKEW,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": self.grant(user, scopes),
        }
        token = self._sign(claims)
        with self._lock:
            self.tokens.append(token)
            self.issued_to[user] += 1
            self.scopes_requested.extend(scopes)
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": issued_at,
        }

    def _sign(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": self.algorithm, "x5c": [self._x5c]}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        ).encode()
        return signing_input.decode() + "." + _b64url(self._signature(signing_input))

    def _signature(self, data: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # JWS ES256 is r || s, each 32 bytes big-endian (RFC 7518 section 3.4), not DER.
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(ES256_COORDINATE_BYTES, "big") + s.to_bytes(ES256_COORDINATE_BYTES, "big")

    def note_rejected(self) -> None:
        with self._lock:
            self.rejected += 1


def _handler_for(issuer: TokenIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            url = urlsplit(self.path)
            if url.path != "/token":
                self._reply(404, {"error": "not found"})
                return
            ok, user = issuer.authenticate(self.headers.get("Authorization"))
            if not ok:
                issuer.note_rejected()
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                return
            query = parse_qs(url.query)
            # scope may repeat, or hold several space-separated scopes (token spec).
            scopes = [s for value in query.get("scope", []) for s in value.split()]
            self._reply(200, issuer.issue(user, scopes))

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            user = issuer.refresh_tokens.get(form.get("refresh_token", [""])[0])
            if urlsplit(self.path).path != "/token" or form.get("grant_type") != ["refresh_token"]:
                self._reply(400, {"error": "unsupported_grant_type"})
                return
            if user is None:
                issuer.note_rejected()
                self._reply(401, {"error": "invalid_grant"})
                return
            scopes = [s for value in form.get("scope", []) for s in value.split()]
            self._reply(200, issuer.issue(user, scopes))

        def _reply(self, status: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output clean; never print credentials or tokens

    return Handler
