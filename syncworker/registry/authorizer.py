"""The auth state of one registry: the challenge each URL sent, and tokens per scope.

The logic of challenge/response, kept apart from the wire: the transport asks
:meth:`Authorizer.header` before a request and calls :meth:`Authorizer.learn` on a 401
from one of the registry's own URLs; a token request goes out through the ``fetch``
callable it was given.

Credentials belong to one URL: a registry entry with failover URLs sends each URL only
its own login (never the first URL's to the second), and sends it to a token realm only
when that URL's challenge named the realm. A realm reached over plain http for an https
upstream is refused: the login would cross the network in the clear.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from syncworker.errors import RegistryError, SyncworkerError
from syncworker.redact import redact_http_url
from syncworker.registry import auth
from syncworker.registry.redirects import origin

__all__ = ["Authorizer", "CredentialsArg", "Origin", "TokenFetch", "logins_by_origin"]

#: ``fetch(realm, headers, params, upstream) -> body``: one GET on behalf of the registry
#: URL ``upstream``, raising on any non-2xx answer.
TokenFetch = Callable[[str, Mapping[str, str], Sequence[tuple[str, str]], str], bytes]
Origin = tuple[str, str, int]
#: One login for every URL, or a login per URL (failover URLs get only their own).
CredentialsArg = auth.Credentials | Mapping[str, auth.Login] | None


class Authorizer:
    """Thread-safe: challenges are replaced whole, tokens live in a locked cache.

    A challenge is learnt for the scope (the repository) whose request was refused, and
    holds for that scope. Requests for other scopes presume the challenge that last
    earned a token on the same URL (a registry names one realm for all its repositories,
    so they skip a 401 round trip); when the presumed one fails them, they ask without
    credentials and learn their own. So one repository's hostile token issuer fails that
    repository alone.
    """

    def __init__(
        self,
        urls: Iterable[str],
        credentials: Mapping[Origin, auth.Login],
        fetch: TokenFetch,
        clock: Callable[[], float],
    ) -> None:
        self._origins = frozenset(origin(u) for u in urls)
        self._credentials = dict(credentials)
        self._fetch = fetch
        self._clock = clock
        self._challenges: dict[tuple[Origin, str | None], auth.Challenge] = {}
        self._presumed: dict[Origin, auth.Challenge] = {}
        self._tokens = auth.TokenCache()

    def header(self, url: str, scope: str | None) -> str | None:
        """The Authorization value for ``url``: only ever for the registry's own URLs."""
        key = origin(url)
        if key not in self._origins:
            return None
        own = self._challenges.get((key, scope))
        if own is not None:
            value = self._answer(key, url, own, scope)
            self._presumed[key] = own
            return value
        presumed = self._presumed.get(key)
        if presumed is None:
            return None
        try:
            return self._answer(key, url, presumed, scope)
        except SyncworkerError:
            # Not this scope's own challenge: ask without, and learn its own from the 401.
            return None

    def learn(self, url: str, www_authenticate: str, sent: str | None, scope: str | None) -> bool:
        """Remember, for ``scope``, the challenge of a 401 that ``url`` (one of ours)
        answered itself; True if answering it may change the outcome."""
        key = origin(url)
        if key not in self._origins:
            return False
        offered = auth.parse_challenges(www_authenticate)
        usable = [c for c in offered if c.scheme == "bearer" and c.realm] or [
            c for c in offered if c.scheme == "basic" and key in self._credentials
        ]
        if not usable:
            return False
        challenge = usable[0]
        self._challenges[key, scope] = challenge
        if challenge.scheme == "bearer" and sent is not None:
            # The token we sent was refused (expired early, or too narrow): fetch anew.
            self._tokens.discard(_token_key(key, challenge, scope))
        return True

    def _answer(
        self, key: Origin, url: str, challenge: auth.Challenge, scope: str | None
    ) -> str | None:
        if challenge.scheme == "basic":
            creds = auth.resolve(self._credentials.get(key))
            return auth.basic_authorization(creds) if creds is not None else None
        return "Bearer " + self._token(key, url, challenge, scope).value

    def _token(
        self, key: Origin, url: str, challenge: auth.Challenge, scope: str | None
    ) -> auth.Token:
        token_key = _token_key(key, challenge, scope)
        token = self._tokens.get(token_key, self._clock())
        if token is not None:
            return token
        with self._tokens.lock(token_key):
            token = self._tokens.get(token_key, self._clock())
            if token is None:
                token = self._fetch_token(key, url, challenge, scope)
                self._tokens.put(token_key, token)
            return token

    def _fetch_token(
        self, key: Origin, url: str, challenge: auth.Challenge, scope: str | None
    ) -> auth.Token:
        # token.md "Requesting a Token": GET realm?service=..&scope=.., with Basic
        # credentials if this URL has them (sent to the realm only), none for anonymous.
        realm = challenge.realm
        scheme = origin(realm)[0]
        if scheme not in ("https", "http"):
            raise RegistryError("GET", redact_http_url(realm), 401, detail="bad token realm")
        if key[0] == "https" and scheme != "https":
            raise RegistryError(
                "GET",
                redact_http_url(realm),
                401,
                detail="token realm over plain http for an https registry refused",
            )
        creds = auth.resolve(self._credentials.get(key))
        headers = {"Authorization": auth.basic_authorization(creds)} if creds else {}
        now = self._clock()
        body = self._fetch(realm, headers, auth.token_query(challenge, scope), url)
        return auth.parse_token_response(body, now, redact_http_url(realm))


def logins_by_origin(bases: Sequence[str], credentials: CredentialsArg) -> dict[Origin, auth.Login]:
    """The login of each registry URL's origin: one for all, or each URL's own."""
    if credentials is None:
        return {}
    if isinstance(credentials, auth.Credentials):
        return {origin(base): credentials for base in bases}
    by_url = {url.rstrip("/"): creds for url, creds in credentials.items()}
    return {origin(b): by_url[b] for b in bases if b in by_url}


def _token_key(key: Origin, challenge: auth.Challenge, scope: str | None) -> auth.TokenKey:
    # Per registry URL too: two URLs of one entry may log in as different users.
    return (
        f"{key[0]}://{key[1]}:{key[2]} {challenge.realm}",
        challenge.params.get("service", ""),
        scope or "",
    )
