"""The auth state of one registry: the challenge each URL sent, and tokens per scope.

The logic of challenge/response, kept apart from the wire: the transport asks
:meth:`Authorizer.header` before a request and calls :meth:`Authorizer.learn` on a 401;
a token request goes out through the ``fetch`` callable it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from syncworker.errors import RegistryError
from syncworker.registry import auth
from syncworker.redact import redact_http_url
from syncworker.registry.redirects import origin

__all__ = ["Authorizer", "TokenFetch"]

#: ``fetch(realm, headers, params) -> body``: one GET, raising on any non-2xx answer.
TokenFetch = Callable[[str, Mapping[str, str], Sequence[tuple[str, str]]], bytes]
Origin = tuple[str, str, int]


class Authorizer:
    """Thread-safe: challenges are replaced whole, tokens live in a locked cache."""

    def __init__(
        self,
        urls: Iterable[str],
        credentials: auth.Credentials | None,
        fetch: TokenFetch,
        clock: Callable[[], float],
    ) -> None:
        self._origins = frozenset(origin(u) for u in urls)
        self._credentials = credentials
        self._fetch = fetch
        self._clock = clock
        self._challenges: dict[Origin, auth.Challenge] = {}
        self._tokens = auth.TokenCache()

    def header(self, url: str, scope: str | None) -> str | None:
        """The Authorization value for ``url``: only ever for the registry's own URLs."""
        key = origin(url)
        challenge = self._challenges.get(key)
        if challenge is None or key not in self._origins:
            return None
        if challenge.scheme == "basic":
            creds = self._credentials
            return auth.basic_authorization(creds) if creds is not None else None
        return "Bearer " + self._token(challenge, scope).value

    def learn(self, url: str, www_authenticate: str, sent: str | None, scope: str | None) -> bool:
        """Remember a 401's challenge; True if answering it may change the outcome."""
        offered = auth.parse_challenges(www_authenticate)
        usable = [c for c in offered if c.scheme == "bearer" and c.realm] or [
            c for c in offered if c.scheme == "basic" and self._credentials is not None
        ]
        if not usable or origin(url) not in self._origins:
            return False
        challenge = usable[0]
        self._challenges[origin(url)] = challenge
        if challenge.scheme == "bearer" and sent is not None:
            # The token we sent was refused (expired early, or too narrow): fetch anew.
            self._tokens.discard(_token_key(challenge, scope))
        return True

    def _token(self, challenge: auth.Challenge, scope: str | None) -> auth.Token:
        key = _token_key(challenge, scope)
        token = self._tokens.get(key, self._clock())
        if token is not None:
            return token
        with self._tokens.lock(key):
            token = self._tokens.get(key, self._clock())
            if token is None:
                token = self._fetch_token(challenge, scope)
                self._tokens.put(key, token)
            return token

    def _fetch_token(self, challenge: auth.Challenge, scope: str | None) -> auth.Token:
        # token.md "Requesting a Token": GET realm?service=..&scope=.., with Basic
        # credentials if we have them (sent to the realm only), none for an anonymous token.
        realm = challenge.realm
        if not realm.startswith(("https://", "http://")):
            raise RegistryError("GET", redact_http_url(realm), 401, detail="bad token realm")
        creds = self._credentials
        headers = {"Authorization": auth.basic_authorization(creds)} if creds else {}
        now = self._clock()
        body = self._fetch(realm, headers, auth.token_query(challenge, scope))
        return auth.parse_token_response(body, now, redact_http_url(realm))


def _token_key(challenge: auth.Challenge, scope: str | None) -> auth.TokenKey:
    return (challenge.realm, challenge.params.get("service", ""), scope or "")
