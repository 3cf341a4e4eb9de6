"""The auth layer: challenge/response around each request, over the auth state of one
registry (the challenges its URLs sent, and tokens per scope).

:class:`Auth` asks :meth:`Authorizer.header` before a request and calls
:meth:`Authorizer.learn` on a 401 from one of the registry's own URLs, then sends once
more; a token request goes out through the layers below (redirects, the pool), its realm
judged as a redirect target is. :class:`Authorizer` is the logic alone, without I/O.

Credentials belong to one URL: a registry entry with failover URLs sends each URL only
its own login (never the first URL's to the second), and sends it to a token realm only
when that URL's challenge named the realm. A realm reached over plain http for an https
upstream is refused: the login would cross the network in the clear.

A login whose username is ``<token>`` holds an identity token (docker's credential
helpers hand those out): it is exchanged at the realm by OAuth2's refresh-token grant, a
form POST, as docker does (token.md's companion, ``docs/spec/auth/oauth.md``). A login the
registry or its realm refuses (401) is reported to its source, which asks anew next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlencode

from syncworker.errors import RegistryError, SyncworkerError
from syncworker.redact import redact_http_url
from syncworker.registry import auth
from syncworker.registry.addresses import Origin, Origins, origin
from syncworker.registry.http import Handler, Request, Response
from syncworker.registry.requestlog import log
from syncworker.registry.statuses import error_of

__all__ = ["Auth", "Authorizer", "CredentialsArg", "TokenFetch", "logins_by_origin"]

#: ``fetch(realm, headers, params, form, request) -> body``: one GET (a POST of ``form``
#: when given) on behalf of ``request`` (to one of the registry's URLs, under its
#: deadline), raising on any non-2xx answer.
TokenFetch = Callable[
    [str, Mapping[str, str], Sequence[tuple[str, str]], bytes | None, Request], bytes
]
#: docker-credential-helpers' username for an identity token.
IDENTITY_TOKEN_USER = "<token>"
#: Sends of one request: without credentials, with them, with a renewed login.
MAX_AUTH_ROUNDS = 3
#: The OAuth2 client id docker's refresh-token grant requires; ours names us.
OAUTH_CLIENT_ID = "syncworker"
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
        origins: Origins,
        credentials: Mapping[Origin, auth.Login],
        fetch: TokenFetch,
        clock: Callable[[], float],
    ) -> None:
        self._origins = origins
        self._credentials = dict(credentials)
        self._fetch = fetch
        self._clock = clock
        self._challenges: dict[tuple[Origin, str | None], auth.Challenge] = {}
        self._presumed: dict[Origin, auth.Challenge] = {}
        self._tokens = auth.TokenCache()

    def header(self, request: Request) -> str | None:
        """The Authorization value for ``request``: only ever to the registry's own URLs."""
        key = self._origins.of(request.url)
        if key is None:
            return None
        own = self._challenges.get((key, request.scope))
        if own is not None:
            value = self._answer(key, request, own)
            self._presumed[key] = own
            return value
        presumed = self._presumed.get(key)
        if presumed is None:
            return None
        try:
            return self._answer(key, request, presumed)
        except SyncworkerError:
            # Not this scope's own challenge: ask without, and learn its own from the 401.
            return None

    def has_login(self, url: str) -> bool:
        """Whether a login is configured for ``url``'s registry."""
        key = self._origins.of(url)
        return key is not None and self._credentials.get(key) is not None

    def learn(self, url: str, www_authenticate: str, sent: str | None, scope: str | None) -> bool:
        """Remember, for ``scope``, the challenge of a 401 that ``url`` (one of ours)
        answered itself; True if answering it may change the outcome."""
        key = self._origins.of(url)
        if key is None:
            return False
        offered = auth.parse_challenges(www_authenticate)
        usable = [c for c in offered if c.scheme == "bearer" and c.realm] or [
            c for c in offered if c.scheme == "basic" and key in self._credentials
        ]
        if not usable:
            return False
        challenge = usable[0]
        self._challenges[key, scope] = challenge
        if challenge.scheme == "basic" and sent is not None:
            auth.refused(self._credentials.get(key))
        if challenge.scheme == "bearer" and sent is not None:
            # The token we sent was refused (expired early, or too narrow): fetch anew.
            self._tokens.discard(_token_key(key, challenge, scope))
        return True

    def _answer(self, key: Origin, request: Request, challenge: auth.Challenge) -> str | None:
        if challenge.scheme == "basic":
            creds = auth.resolve(self._credentials.get(key))
            return auth.basic_authorization(creds) if creds is not None else None
        return "Bearer " + self._token(key, request, challenge).value

    def _token(self, key: Origin, request: Request, challenge: auth.Challenge) -> auth.Token:
        token_key = _token_key(key, challenge, request.scope)
        token = self._tokens.get(token_key, self._clock())
        if token is not None:
            return token
        with self._tokens.lock(token_key):
            token = self._tokens.get(token_key, self._clock())
            if token is None:
                token = self._fetch_token(key, request, challenge)
                self._tokens.put(token_key, token, self._clock())
            return token

    def _fetch_token(self, key: Origin, request: Request, challenge: auth.Challenge) -> auth.Token:
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
        login = self._credentials.get(key)
        creds = auth.resolve(login)
        query = auth.token_query(challenge, request.scope)
        headers, form = _token_request(creds, query)
        now = self._clock()
        try:
            body = self._fetch(realm, headers, () if form else query, form, request)
        except RegistryError as exc:
            if exc.status == 401:
                auth.refused(login)
            raise
        return auth.parse_token_response(body, now, redact_http_url(realm))


class Auth:
    """The auth layer over ``inner`` (the redirect layer). ``admit(url, upstream)``:
    whether a token realm may be connected to on behalf of the upstream URL ``upstream``."""

    def __init__(
        self,
        inner: Handler,
        origins: Origins,
        logins: Mapping[Origin, auth.Login],
        admit: Callable[[str, str], bool],
        clock: Callable[[], float],
    ) -> None:
        self._inner = inner
        self._admit = admit
        self._authorizer = Authorizer(origins, logins, self._token, clock)

    def send(self, request: Request) -> Response:
        sent = self._authorizer.header(request)
        # Sent as known, then once per new header a 401 earns: credentials for a fresh
        # challenge, then a login its source renewed after the refusal (a rotated one).
        for _ in range(MAX_AUTH_ROUNDS):
            response = self._inner.send(_with_auth(request, sent))
            # A 401 from a redirect target (blob storage, a CDN) is its own business: our
            # credentials, and a realm it names, are never offered to it.
            if response.status != 401 or origin(response.url) != origin(request.url):
                return response
            # Read the 401 first: its connection is then free for the token request.
            with response:
                refused = error_of(response)
            refused_at = response.what
            challenge = response.headers.get("WWW-Authenticate", "")
            # A streamed body is spent: it cannot be sent again with the new credentials.
            if not self._authorizer.learn(request.url, challenge, sent, request.scope):
                raise self._explained(refused, request)
            if request.streamed:
                raise refused
            renewed = self._authorizer.header(request)
            answered = renewed is not None and renewed != sent
            _log_challenge(refused_at, challenge, answered)
            if not answered:
                raise self._explained(refused, request)
            sent = renewed
        raise self._explained(refused, request)

    def _explained(self, refused: RegistryError, request: Request) -> RegistryError:
        """The final 401, saying whether a login was configured for the registry: a wrong
        password and a missing login otherwise read the same."""
        why = (
            "the login configured for this registry was refused"
            if self._authorizer.has_login(request.url)
            else "no login is configured for this registry"
        )
        detail = f"{refused.detail} ({why})" if refused.detail else why
        return type(refused)(
            refused.method, refused.url, refused.status, refused.codes, detail, refused.retry_after
        )

    def _token(
        self,
        realm: str,
        headers: Mapping[str, str],
        params: Sequence[tuple[str, str]],
        form: bytes | None,
        request: Request,
    ) -> bytes:
        if not self._admit(realm, request.url):
            raise RegistryError(
                "GET",
                redact_http_url(realm),
                401,
                detail="token realm refused (internal or link-local address)",
            )
        asking = Request(
            "GET" if form is None else "POST",
            realm,
            headers,
            params,
            form,
            deadline=request.deadline,
            upstream=request.url,
        )
        with self._inner.send(asking) as response:
            if not 200 <= response.status < 300:
                raise error_of(response)
            return response.read(auth.MAX_TOKEN_RESPONSE_BYTES)


def _log_challenge(what: str, challenge: str, answered: bool) -> None:
    """The 401's challenge (its scheme and realm, never our answer to it) at DEBUG."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    first = (auth.parse_challenges(challenge) or [auth.Challenge("none", {})])[0]
    realm = f", realm {redact_http_url(first.realm)}" if first.realm else ""
    then = "sending again with credentials" if answered else "no new credentials to send"
    log.debug("%s: 401, challenged (%s%s); %s", what, first.scheme, realm, then)


def _token_request(
    creds: auth.Credentials | None, query: Sequence[tuple[str, str]]
) -> tuple[dict[str, str], bytes | None]:
    """Headers and form of a token request: Basic credentials on a GET, an identity token
    as an OAuth2 refresh-token grant (scopes space-separated, as OAuth2 has them)."""
    if creds is None:
        return {}, None
    if creds.username != IDENTITY_TOKEN_USER:
        return {"Authorization": auth.basic_authorization(creds)}, None
    fields = dict(query, scope=" ".join(v for k, v in query if k == "scope"))
    form = {
        "grant_type": "refresh_token",
        "refresh_token": creds.password,
        "client_id": OAUTH_CLIENT_ID,
        **{k: v for k, v in fields.items() if v},
    }
    return {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(form).encode()


def _with_auth(request: Request, authorization: str | None) -> Request:
    if authorization is None:
        return request
    return request.but(headers={**request.headers, "Authorization": authorization})


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
