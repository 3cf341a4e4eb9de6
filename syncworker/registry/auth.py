"""Registry authentication as pure logic: challenges, credentials, tokens and their cache.

Nothing here does I/O. The auth layer (:mod:`.authorizer`) asks this module what header
to send, sends the token request itself, and hands the answer back to
:func:`parse_token_response`.

Specs: RFC 7235 (``WWW-Authenticate`` syntax), distribution's token auth
(``docs/spec/auth/token.md``: ``realm``/``service``/``scope``, ``token``/``access_token``,
``expires_in`` defaulting to 60 seconds) and its scope grammar (``docs/spec/auth/scope.md``).
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.errors import MalformedResponseError
from syncworker.oci.document import load_json

__all__ = [
    "CATALOG_SCOPE",
    "MIN_SWEEP_ENTRIES",
    "TOKEN_LOCK_STRIPES",
    "Challenge",
    "CredentialSource",
    "Credentials",
    "Login",
    "Token",
    "TokenCache",
    "basic_authorization",
    "parse_challenges",
    "parse_token_response",
    "repository_scope",
    "refused",
    "resolve",
    "token_query",
]

# token.md: "If this value is not returned, it should be assumed to be 60 seconds".
DEFAULT_TOKEN_LIFETIME = 60.0
# Refresh a little before the issuer's deadline so a token does not expire in flight.
TOKEN_EXPIRY_MARGIN = 5.0
# A token answer is a small JSON object; anything bigger is not a token issuer.
MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024
CATALOG_SCOPE = "registry:catalog:*"
# Tokens are refreshed at least this often, whatever expires_in says (a day).
MAX_TOKEN_LIFETIME = 86400.0
# Token fetches of distinct keys are serialised over this many locks: one per key would
# be a lock per repository ever pulled, kept for the life of the process.
TOKEN_LOCK_STRIPES = 64
# The cache drops its expired tokens whenever it has doubled since it last did (and holds
# at least this many): a walk of a large catalog keeps only the tokens still valid, not
# one per repository it ever pulled.
MIN_SWEEP_ENTRIES = 256
# Visible ASCII, no spaces: what may follow "Bearer " in a header.
_TOKEN_VALUE = re.compile(r"[\x21-\x7e]{1,65536}")


@dataclass(frozen=True)
class Credentials:
    """A username and password; the password never appears in a repr."""

    username: str
    password: str = field(repr=False)


class CredentialSource(Protocol):
    """Credentials that change over time: a cloud registry's short-lived login (zot's
    ``credentialHelper``), a docker credential helper's. Asked before every request that
    sends them, so it caches."""

    def current(self) -> Credentials | None:
        """The login to send now (renewed by the source before it expires); None: none."""
        ...

    def refused(self) -> None:
        """The registry answered 401 to the login: the next :meth:`current` asks anew."""
        ...


#: A fixed login, or a source of short-lived ones.
Login = Credentials | CredentialSource


def resolve(login: Login | None) -> Credentials | None:
    """The credentials to send now for ``login``."""
    if login is None or isinstance(login, Credentials):
        return login
    return login.current()


def refused(login: Login | None) -> None:
    """Tell ``login``'s source that the registry refused it (a fixed login stays)."""
    if login is not None and not isinstance(login, Credentials):
        login.refused()


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: a scheme and its parameters."""

    scheme: str  # lower-cased: "basic" or "bearer"
    params: Mapping[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_at: float

    def valid(self, now: float) -> bool:
        return now < self.expires_at - TOKEN_EXPIRY_MARGIN


def repository_scope(repo: str, actions: str = "pull") -> str:
    """scope.md: ``repository:<name>:<actions>``."""
    return f"repository:{repo}:{actions}"


# RFC 7235: auth-param = token BWS "=" BWS ( token / quoted-string ).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(?:,|$)')
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value, which may hold several comma-joined challenges."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        if header[pos] in ", \t":
            pos += 1
            continue
        scheme = _SCHEME.match(header, pos)
        if scheme is None:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while (param := _PARAM.match(header, pos)) is not None:
            quoted, bare = param.group(2), param.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
            params[param.group(1).lower()] = value
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def basic_authorization(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def token_query(challenge: Challenge, scope: str | None) -> list[tuple[str, str]]:
    """Query parameters of a token request for ``scope`` (token.md, "Requesting a Token").

    The challenge's own scope is asked for too: the registry named what it wants. Several
    scopes in one string (space-separated, as in an OAuth2 scope) become one parameter
    each, as token.md asks (a cross-repository mount needs two).
    """
    query: list[tuple[str, str]] = []
    if "service" in challenge.params:
        query.append(("service", challenge.params["service"]))
    scopes = [s for given in (scope, challenge.params.get("scope")) if given for s in given.split()]
    for item in dict.fromkeys(scopes):
        query.append(("scope", item))
    return query


def parse_token_response(body: bytes, now: float, url: str) -> Token:
    """Read ``token`` (or OAuth2's ``access_token``) and ``expires_in`` from a token answer.

    The token goes into a header: only visible ASCII is accepted (RFC 6750's b64token is
    narrower still), so a hostile issuer cannot inject header lines or make the HTTP
    library fail on bytes it cannot encode.
    """
    data = load_json(body, f"token response from {url}")
    if not isinstance(data, dict):
        raise MalformedResponseError(f"token response from {url} is not a JSON object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not _TOKEN_VALUE.fullmatch(value):
        raise MalformedResponseError(f"token response from {url} has no usable token")
    lifetime = data.get("expires_in") or DEFAULT_TOKEN_LIFETIME
    if type(lifetime) not in (int, float) or not 0 < lifetime <= MAX_TOKEN_LIFETIME:
        raise MalformedResponseError(f"token response from {url}: bad expires_in")
    return Token(value, now + lifetime)


TokenKey = tuple[str, str, str]  # (realm, service, scope)


class TokenCache:
    """Bearer tokens per (realm, service, scope), refreshed when they expire. Thread-safe.

    ``lock(key)`` serialises fetching one key so that many threads starting on the same
    repository ask the token issuer once, not once each. Expired tokens are dropped as the
    cache grows (:data:`MIN_SWEEP_ENTRIES`), so it holds the scopes of the last token
    lifetime, however many repositories a process walks.
    """

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, Token] = {}
        self._locks = tuple(threading.Lock() for _ in range(TOKEN_LOCK_STRIPES))
        self._guard = threading.Lock()
        self._sweep_at = MIN_SWEEP_ENTRIES

    def __len__(self) -> int:
        return len(self._tokens)

    def get(self, key: TokenKey, now: float) -> Token | None:
        token = self._tokens.get(key)
        return token if token is not None and token.valid(now) else None

    def put(self, key: TokenKey, token: Token, now: float) -> None:
        with self._guard:
            self._tokens[key] = token
            if len(self._tokens) >= self._sweep_at:
                self._tokens = {k: t for k, t in self._tokens.items() if t.valid(now)}
                self._sweep_at = max(MIN_SWEEP_ENTRIES, 2 * len(self._tokens))

    def discard(self, key: TokenKey) -> None:
        with self._guard:
            self._tokens.pop(key, None)

    def lock(self, key: TokenKey) -> threading.Lock:
        return self._locks[hash(key) % len(self._locks)]
