"""The registry client against scripted loopback servers: the faults a real registry
will not produce on demand (5xx, 429 + Retry-After, lying digests, huge manifests,
redirects, bearer tokens, broken connections)."""

from __future__ import annotations

import gzip
import ipaddress
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from syncworker.errors import (
    DigestMismatchError,
    MalformedResponseError,
    RegistryError,
    SizeLimitError,
    TransportError,
)
from syncworker.oci import MAX_MANIFEST_BYTES, Descriptor, Digest
from syncworker.oci.mediatypes import OCI_MANIFEST
from syncworker.registry import ClientOptions, ClientStats, Credentials, RegistryClient, addresses
from syncworker.registry.stack import Stack
from syncworker.retry import classify
from tests.support.loopback import KeptAliveHandler

FAST = ClientOptions(max_retries=3, retry_delay=0.001, timeout=5.0)
SECRET = "s3cr3t-value-never-shown"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    truncate: bool = False  # promise the full length, send half, close


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    peer: int = 0  # the client's port: one per connection


Route = Callable[[Seen], Answer]


class Scripted(ThreadingHTTPServer):
    """Answers by route: a function of the request, or a list consumed in order."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.host = host
        self.routes: dict[tuple[str, str], Route | list[Answer]] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_address[1]}"

    def on(self, method: str, path: str, *answers: Answer | Route) -> None:
        if len(answers) == 1 and callable(answers[0]):
            self.routes[(method, path)] = answers[0]
        else:
            self.routes[(method, path)] = [a for a in answers if isinstance(a, Answer)]

    def answer(self, seen: Seen) -> Answer:
        with self.lock:
            self.seen.append(seen)
            route = self.routes.get((seen.method, urlsplit(seen.path).path))
            if route is None:
                return Answer(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')
            if callable(route):
                return route(seen)
            return route.pop(0) if len(route) > 1 else route[0]

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if s.method == method and urlsplit(s.path).path == path)


class _Handler(KeptAliveHandler):
    server: Scripted

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        seen = Seen(self.command, self.path, dict(self.headers.items()), self.client_address[1])
        answer = self.server.answer(seen)
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        if answer.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if answer.truncate:
            self.wfile.write(answer.body[: len(answer.body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif answer.chunked:
            for start in range(0, len(answer.body), 65536):
                piece = answer.body[start : start + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(answer.body)

    do_GET = do_HEAD = do_PUT = do_POST = _serve


@pytest.fixture
def server() -> Iterator[Scripted]:
    yield from _serve()


@pytest.fixture
def other() -> Iterator[Scripted]:
    yield from _serve()


@pytest.fixture
def elsewhere() -> Iterator[Scripted]:
    """On 127.0.0.2: another address than the upstream's, still loopback."""
    yield from _serve("127.0.0.2")


def _serve(host: str = "127.0.0.1") -> Iterator[Scripted]:
    scripted = Scripted(host)
    thread = threading.Thread(target=scripted.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield scripted
    scripted.shutdown()
    scripted.server_close()
    thread.join()


def manifest_bytes(seed: str = "x") -> bytes:
    config = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": str(Digest.of(seed.encode())),
        "size": len(seed),
    }
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}
    ).encode()


def manifest_answer(raw: bytes, digest: Digest | None = None, **extra: str) -> Answer:
    headers = {"Content-Type": OCI_MANIFEST, **extra}
    headers["Docker-Content-Digest"] = str(digest or Digest.of(raw))
    return Answer(200, raw, headers)


def test_https_to_a_plain_http_server_says_what_is_likely_wrong(server: Scripted) -> None:
    url = server.url.replace("http://", "https://")
    client = RegistryClient([url], options=ClientOptions(max_retries=0))
    with client, pytest.raises(TransportError) as raised:
        client.ping()
    assert "the server does not speak TLS there: is it an http:// URL?" in str(raised.value)


# -- retries -----------------------------------------------------------------------------


def test_5xx_retried_until_success(server: Scripted) -> None:
    server.on("GET", "/v2/", Answer(503), Answer(502), Answer(200, b"{}"))
    with RegistryClient([server.url], options=FAST) as client:
        client.ping()
        assert client.stats.snapshot().retries == 2
    assert server.count("GET", "/v2/") == 3


def test_retry_after_is_honoured(server: Scripted) -> None:
    server.on(
        "GET",
        "/v2/",
        Answer(429, headers={"Retry-After": "7"}),
        Answer(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),  # in the past
        Answer(200),
    )
    slept: list[float] = []
    transport = Stack([server.url], None, FAST, ClientStats(), sleep=slept.append)
    transport.fetch("GET", "/v2/", scope=None, cap=100)
    # Retry-After wins when longer than our backoff; a date in the past does not shorten it.
    assert slept[0] == 7.0
    assert FAST.retry_delay <= slept[1] <= 2 * FAST.retry_delay


def test_retries_are_capped_then_the_status_is_raised(server: Scripted) -> None:
    server.on("GET", "/v2/", Answer(500, b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}'))
    with RegistryClient([server.url], options=FAST) as client:
        with pytest.raises(RegistryError) as caught:
            client.ping()
        assert client.stats.snapshot().retries == FAST.max_retries
    assert caught.value.status == 500 and caught.value.codes == ("UNKNOWN",)
    assert classify(caught.value)
    assert server.count("GET", "/v2/") == FAST.max_retries + 1


@pytest.mark.parametrize("status", [401, 403, 404, 400])
def test_client_errors_are_not_retried(server: Scripted, status: int) -> None:
    server.on("GET", "/v2/r/tags/list", Answer(status, b'{"errors":[{"code":"DENIED"}]}'))
    with RegistryClient([server.url], options=FAST) as client, pytest.raises(RegistryError):
        client.tags("r")
    assert server.count("GET", "/v2/r/tags/list") == 1


def test_failover_on_persistent_5xx(server: Scripted, other: Scripted) -> None:
    raw = manifest_bytes()
    server.on("GET", "/v2/r/manifests/v1", Answer(503))
    other.on("GET", "/v2/r/manifests/v1", manifest_answer(raw))
    with RegistryClient([server.url, other.url], options=FAST) as client:
        assert client.get_manifest("r", "v1")[0] == raw
        assert client.get_manifest("r", "v1")[0] == raw
    assert server.count("GET", "/v2/r/manifests/v1") == FAST.max_retries + 1
    assert other.count("GET", "/v2/r/manifests/v1") == 2


def test_no_failover_on_404(server: Scripted, other: Scripted) -> None:
    client = RegistryClient([server.url, other.url], options=FAST)
    with client, pytest.raises(RegistryError):
        client.get_manifest("r", "v1")
    assert other.seen == []


def test_connections_are_reused(server: Scripted) -> None:
    raw = manifest_bytes()
    issuer = TokenIssuer(server)
    server.on("HEAD", "/v2/r/manifests/v1", issuer.guard("repository:r:pull", manifest_answer(raw)))
    server.on("GET", "/v2/r/manifests/v1", issuer.guard("repository:r:pull", manifest_answer(raw)))
    server.on("GET", "/v2/r/blobs/sha256:" + "0" * 64, Answer(307, headers={"Location": "/b"}))
    server.on("GET", "/b", Answer(200, b"x"))
    with RegistryClient([server.url], options=FAST) as client:
        for _ in range(5):
            client.head_manifest("r", "v1")  # the first one answers a 401, then a token
            client.get_manifest("r", "v1")
        with (
            pytest.raises(SizeLimitError),
            client.blob("r", Descriptor("x", Digest.parse("sha256:" + "0" * 64), 2)),
        ):
            pass
    assert len(server.seen) == 14
    assert len({seen.peer for seen in server.seen}) == 1


# -- content the client refuses ----------------------------------------------------------


def test_manifest_over_the_cap_is_refused(server: Scripted) -> None:
    huge = b"{" + b" " * MAX_MANIFEST_BYTES + b"}"
    server.on("GET", "/v2/r/manifests/declared", Answer(200, huge, {"Content-Type": OCI_MANIFEST}))
    server.on(
        "GET",
        "/v2/r/manifests/chunked",
        Answer(200, huge, {"Content-Type": OCI_MANIFEST}, chunked=True),
    )
    with RegistryClient([server.url], options=FAST) as client:
        for tag in ("declared", "chunked"):
            with pytest.raises(SizeLimitError, match="exceeds"):
                client.get_manifest("r", tag)


def test_manifest_digest_mismatch_is_refused(server: Scripted) -> None:
    raw = manifest_bytes()
    liar = Digest.of(b"something else")
    server.on("GET", "/v2/r/manifests/v1", manifest_answer(raw, liar))
    server.on("GET", f"/v2/r/manifests/{liar}", manifest_answer(raw, liar))
    with RegistryClient([server.url], options=FAST) as client:
        with pytest.raises(DigestMismatchError):
            client.get_manifest("r", "v1")  # against Docker-Content-Digest
        with pytest.raises(DigestMismatchError):
            client.get_manifest("r", str(liar))  # against the digest asked for


def test_head_without_digest_header_falls_back_to_get(server: Scripted) -> None:
    raw = manifest_bytes()
    server.on("HEAD", "/v2/r/manifests/v1", Answer(200, raw, {"Content-Type": OCI_MANIFEST}))
    server.on("GET", "/v2/r/manifests/v1", Answer(200, raw, {"Content-Type": OCI_MANIFEST}))
    with RegistryClient([server.url], options=FAST) as client:
        descriptor = client.head_manifest("r", "v1")
    assert descriptor == Descriptor(OCI_MANIFEST, Digest.of(raw), len(raw))
    assert server.count("GET", "/v2/r/manifests/v1") == 1


def test_an_encoded_body_is_decoded_and_a_plain_one_read_as_is(server: Scripted) -> None:
    """Bodies are read raw unless the answer names a Content-Encoding."""
    raw = manifest_bytes()
    packed = manifest_answer(gzip.compress(raw), Digest.of(raw), **{"Content-Encoding": "gzip"})
    server.on("GET", "/v2/r/manifests/packed", packed)
    server.on("GET", "/v2/r/manifests/plain", manifest_answer(raw))
    with RegistryClient([server.url], options=FAST) as client:
        assert client.get_manifest("r", "packed")[0] == raw
        assert client.get_manifest("r", "plain")[0] == raw


def test_blob_digest_mismatch_raises_before_the_last_chunk(server: Scripted) -> None:
    good = b"a" * (2 * 1024 * 1024 + 5)
    bad = b"b" + good[1:]
    digest = Digest.of(good)
    server.on("GET", f"/v2/r/blobs/{digest}", Answer(200, bad))
    handed_out = 0
    with RegistryClient([server.url], options=FAST) as client:
        descriptor = Descriptor("application/octet-stream", digest, len(good))
        with pytest.raises(DigestMismatchError), client.blob("r", descriptor) as chunks:
            for chunk in chunks:
                handed_out += len(chunk)
    assert handed_out < len(good)


def test_broken_connection_mid_blob_is_a_transport_error(server: Scripted) -> None:
    data = b"z" * 300_000
    digest = Digest.of(data)
    server.on("GET", f"/v2/r/blobs/{digest}", Answer(200, data, truncate=True))
    with RegistryClient([server.url], options=FAST) as client:
        descriptor = Descriptor("application/octet-stream", digest, len(data))
        with pytest.raises(TransportError), client.blob("r", descriptor) as chunks:
            list(chunks)


def test_tags_follow_link_pages(server: Scripted) -> None:
    def tags(seen: Seen) -> Answer:
        last = parse_qs(urlsplit(seen.path).query).get("last")
        if last is None:
            link = '</v2/r/tags/list?n=2&last=b>; rel="next"'
            return Answer(200, b'{"name":"r","tags":["a","b"]}', {"Link": link})
        return Answer(200, b'{"name":"r","tags":["c"]}')

    server.on("GET", "/v2/r/tags/list", tags)
    with RegistryClient([server.url], options=FAST) as client:
        assert client.tags("r") == ["a", "b", "c"]


def test_catalog_link_gives_the_next_last(server: Scripted) -> None:
    link = '</v2/_catalog?last=b%2Fx&n=2>; rel="next"'
    server.on("GET", "/v2/_catalog", Answer(200, b'{"repositories":["a","b/x"]}', {"Link": link}))
    with RegistryClient([server.url], options=FAST) as client:
        assert client.catalog_page(None, 2) == (["a", "b/x"], "b/x")
    assert "n=2" in server.seen[0].path


def test_referrers_api_answer_is_used(server: Scripted) -> None:
    subject = Digest.of(b"subject")
    ref = {
        "mediaType": OCI_MANIFEST,
        "digest": str(Digest.of(b"sig")),
        "size": 3,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
    }
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [ref],
        }
    ).encode()
    server.on("GET", f"/v2/r/referrers/{subject}", Answer(200, index))
    with RegistryClient([server.url], options=FAST) as client:
        [found] = client.referrers("r", subject)
    assert found.artifact_type == ref["artifactType"]
    assert server.count("GET", f"/v2/r/manifests/sha256-{subject.hex}") == 0


# -- bearer tokens -----------------------------------------------------------------------


class TokenIssuer:
    """A bearer-auth registry in one scripted server: /token issues, /v2/... checks."""

    def __init__(self, server: Scripted, lifetime: int = 3600) -> None:
        self.server = server
        self.lifetime = lifetime
        self.issued: dict[str, str] = {}  # token -> scope
        self.requests: list[Seen] = []
        self.revoked: set[str] = set()
        server.on("GET", "/token", self.token)
        server.on("GET", "/v2/", self.guard(None, Answer(200, b"{}")))

    def challenge(self, scope: str | None) -> Answer:
        params = f'realm="{self.server.url}/token",service="scripted"'
        if scope:
            params += f',scope="{scope}"'
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        return Answer(401, body, {"WWW-Authenticate": "Bearer " + params})

    def token(self, seen: Seen) -> Answer:
        self.requests.append(seen)
        scopes = parse_qs(urlsplit(seen.path).query).get("scope", [""])
        value = f"{SECRET}-{len(self.issued)}"
        self.issued[value] = scopes[0]
        return Answer(200, json.dumps({"token": value, "expires_in": self.lifetime}).encode())

    def guard(self, scope: str | None, answer: Answer) -> Route:
        def route(seen: Seen) -> Answer:
            value = seen.headers.get("Authorization", "").removeprefix("Bearer ")
            if value not in self.issued or value in self.revoked:
                return self.challenge(scope)
            if scope and self.issued[value] != scope:
                return self.challenge(scope)
            return answer

        return route


def test_anonymous_bearer_token_cached_per_scope(server: Scripted) -> None:
    issuer = TokenIssuer(server)
    for repo in ("r", "s"):
        body = json.dumps({"name": repo, "tags": ["v1"]}).encode()
        server.on(
            "GET",
            f"/v2/{repo}/tags/list",
            issuer.guard(f"repository:{repo}:pull", Answer(200, body)),
        )
    with RegistryClient([server.url], options=FAST) as client:
        for _ in range(3):
            assert client.tags("r") == ["v1"]
        assert client.tags("s") == ["v1"]
    assert sorted(issuer.issued.values()) == ["repository:r:pull", "repository:s:pull"]
    assert all("Authorization" not in seen.headers for seen in issuer.requests)
    # One 401 to learn the challenge, then every request carries a token up front.
    assert server.count("GET", "/v2/r/tags/list") == 4
    assert server.count("GET", "/v2/s/tags/list") == 1


def _hostile_realm(server: Scripted, repo: str) -> None:
    """``repo`` alone names a realm of its own, which hands out a token no header carries."""
    challenge = f'Bearer realm="{server.url}/evil-token",service="evil"'
    refusal = Answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
    server.on("GET", f"/v2/{repo}/tags/list", refusal)
    server.on("GET", "/evil-token", Answer(200, json.dumps({"token": "caf\u00e9"}).encode()))


@pytest.mark.parametrize("evil_first", [True, False], ids=["evil-first", "good-first"])
def test_a_hostile_realm_fails_only_the_repository_that_names_it(
    server: Scripted, evil_first: bool
) -> None:
    """What a 401 teaches holds for its repository: another repository of the registry
    keeps its own realm (or none), before and after the hostile one was met."""
    issuer = TokenIssuer(server)
    body = json.dumps({"name": "good", "tags": ["v1"]}).encode()
    server.on("GET", "/v2/good/tags/list", issuer.guard("repository:good:pull", Answer(200, body)))
    server.on("GET", "/v2/open/tags/list", Answer(200, b'{"tags":["v2"]}'))
    _hostile_realm(server, "evil")
    with RegistryClient([server.url], options=FAST) as client:
        if not evil_first:
            assert client.tags("good") == ["v1"]
        with pytest.raises(MalformedResponseError, match="no usable token"):
            client.tags("evil")
        assert client.tags("good") == ["v1"]
        assert client.tags("open") == ["v2"]
        with pytest.raises(MalformedResponseError):
            client.tags("evil")
    # The hostile realm was asked for its own repository only, once per request.
    assert server.count("GET", "/evil-token") == 2
    assert "repository:good:pull" in issuer.issued.values()


def test_credentials_go_to_the_realm_only(server: Scripted) -> None:
    issuer = TokenIssuer(server)
    server.on(
        "GET", "/v2/r/tags/list", issuer.guard("repository:r:pull", Answer(200, b'{"tags":["a"]}'))
    )
    with RegistryClient([server.url], Credentials("alice", SECRET), FAST) as client:
        client.ping()
        assert client.tags("r") == ["a"]
    assert [s.headers["Authorization"].split()[0] for s in issuer.requests] == ["Basic"] * 2
    registry_auth = [
        s.headers.get("Authorization", "") for s in server.seen if not s.path.startswith("/token")
    ]
    assert not any(value.startswith("Basic") for value in registry_auth)


def test_expired_tokens_are_refreshed(server: Scripted) -> None:
    issuer = TokenIssuer(server, lifetime=60)
    server.on(
        "GET", "/v2/r/tags/list", issuer.guard("repository:r:pull", Answer(200, b'{"tags":["a"]}'))
    )
    now = [1000.0]
    transport = Stack([server.url], None, FAST, ClientStats(), clock=lambda: now[0])
    transport.fetch("GET", "/v2/r/tags/list", scope="repository:r:pull", cap=1000)
    transport.fetch("GET", "/v2/r/tags/list", scope="repository:r:pull", cap=1000)
    assert len(issuer.issued) == 1
    now[0] += 61
    transport.fetch("GET", "/v2/r/tags/list", scope="repository:r:pull", cap=1000)
    assert len(issuer.issued) == 2
    # Refreshed before use: no extra 401 round trip.
    assert server.count("GET", "/v2/r/tags/list") == 4


def test_a_refused_token_is_replaced_once(server: Scripted) -> None:
    issuer = TokenIssuer(server)
    server.on(
        "GET", "/v2/r/tags/list", issuer.guard("repository:r:pull", Answer(200, b'{"tags":["a"]}'))
    )
    with RegistryClient([server.url], options=FAST) as client:
        client.tags("r")
        issuer.revoked.update(issuer.issued)
        assert client.tags("r") == ["a"]
    assert len(issuer.issued) == 2


def test_tokens_and_passwords_never_appear_in_errors(server: Scripted) -> None:
    issuer = TokenIssuer(server)
    server.on("GET", "/v2/r/tags/list", issuer.guard("repository:r:pull", Answer(500)))
    client = RegistryClient([server.url], Credentials("alice", SECRET), FAST)
    with client, pytest.raises(RegistryError) as caught:
        client.tags("r")
    assert caught.value.status == 500
    for text in (str(caught.value), repr(caught.value), caught.value.url, repr(client)):
        assert SECRET not in text


def test_a_token_issuer_refusing_credentials(server: Scripted) -> None:
    TokenIssuer(server)
    server.on("GET", "/token", Answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}'))
    server.on(
        "GET",
        "/v2/r/tags/list",
        Answer(401, headers={"WWW-Authenticate": f'Bearer realm="{server.url}/token",service="s"'}),
    )
    client = RegistryClient([server.url], Credentials("alice", SECRET), FAST)
    with client, pytest.raises(RegistryError) as caught:
        client.tags("r")
    assert caught.value.status == 401 and "/token" in caught.value.url
    assert SECRET not in str(caught.value)


# -- redirects ---------------------------------------------------------------------------


def redirecting_blob(server: Scripted, other: Scripted, data: bytes, status: int = 200) -> Digest:
    digest = Digest.of(data)
    server.on("GET", "/v2/", Answer(401, headers={"WWW-Authenticate": 'Basic realm="r"'}))
    location = f"{other.url}/storage/blob?X-Amz-Signature={SECRET}&X-Amz-Expires=60"
    server.on("GET", f"/v2/r/blobs/{digest}", Answer(307, headers={"Location": location}))
    other.on("GET", "/storage/blob", Answer(status, data if status == 200 else b""))
    return digest


def test_redirects_followed_without_our_credentials(server: Scripted, other: Scripted) -> None:
    data = b"layer bytes" * 1000
    digest = redirecting_blob(server, other, data)
    with RegistryClient([server.url], Credentials("alice", SECRET), FAST) as client:
        client.ping()  # learns the Basic challenge
        descriptor = Descriptor("application/octet-stream", digest, len(data))
        with client.blob("r", descriptor) as chunks:
            assert b"".join(chunks) == data
    [blob_request] = [s for s in server.seen if "/blobs/" in s.path]
    assert blob_request.headers["Authorization"].startswith("Basic ")
    assert "Authorization" not in other.seen[0].headers


def test_errors_after_a_redirect_redact_the_signed_url(server: Scripted, other: Scripted) -> None:
    digest = redirecting_blob(server, other, b"abc", status=403)
    client = RegistryClient([server.url], options=FAST)
    descriptor = Descriptor("application/octet-stream", digest, 3)
    with client, pytest.raises(RegistryError) as caught, client.blob("r", descriptor):
        pass
    assert caught.value.status == 403 and "/storage/blob" in caught.value.url
    assert SECRET not in str(caught.value)


def test_redirect_loops_end(server: Scripted) -> None:
    server.on("GET", "/v2/", Answer(302, headers={"Location": "/v2/"}))
    client = RegistryClient([server.url], options=FAST)
    with client, pytest.raises(RegistryError, match="too many redirects"):
        client.ping()


def test_public_upstream_redirecting_inside_is_refused(
    server: Scripted, other: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The upstream at 127.0.0.1 is made to look public; "localhost" still resolves inside.
    real_resolve = addresses.resolve

    def resolve(host: str) -> list[addresses.IPAddress]:
        return (
            [ipaddress.ip_address("93.184.216.34")] if host == "127.0.0.1" else real_resolve(host)
        )

    monkeypatch.setattr(addresses, "resolve", resolve)
    digest = Digest.of(b"abc")
    target = f"http://localhost:{other.server_address[1]}/meta?token={SECRET}"
    server.on("GET", f"/v2/r/blobs/{digest}", Answer(302, headers={"Location": target}))
    client = RegistryClient([server.url], options=FAST)
    descriptor = Descriptor("application/octet-stream", digest, 3)
    with (
        client,
        pytest.raises(RegistryError, match="refused") as caught,
        client.blob("r", descriptor),
    ):
        pass
    assert other.seen == [] and SECRET not in str(caught.value)
    assert client.stats.snapshot().retries == 0


def test_a_token_post_redirected_to_another_host_is_refused_unsent(
    server: Scripted, other: Scripted
) -> None:
    """A 307/308 keeps the method and body (RFC 9110 section 15.4.8): followed to another
    host, an identity token's refresh-token grant would hand that host the token."""
    challenge = f'Bearer realm="{server.url}/token",service="s"'
    server.on("GET", "/v2/r/tags/list", Answer(401, headers={"WWW-Authenticate": challenge}))
    server.on("POST", "/token", Answer(307, headers={"Location": f"{other.url}/token"}))
    client = RegistryClient([server.url], Credentials("<token>", SECRET), FAST)
    with client, pytest.raises(RegistryError) as caught:
        client.tags("r")
    message = str(caught.value)
    assert f"POST {server.url}/token" in message
    assert f"redirect to another host, 127.0.0.1:{other.server_address[1]}, refused" in message
    assert other.seen == [] and SECRET not in message


# -- where credentials may go ------------------------------------------------------------


def test_a_failover_url_never_gets_the_first_urls_login(server: Scripted, other: Scripted) -> None:
    for scripted in (server, other):
        scripted.on("GET", "/v2/", Answer(401, headers={"WWW-Authenticate": 'Basic realm="r"'}))
    server.on("GET", "/v2/r/tags/list", Answer(503))
    other.on("GET", "/v2/r/tags/list", Answer(401, headers={"WWW-Authenticate": 'Basic realm="r"'}))
    logins = {server.url: Credentials("alice", SECRET)}
    with RegistryClient([server.url, other.url], logins, FAST) as client:
        client.ping()
        with pytest.raises(RegistryError) as caught:
            client.tags("r")
    assert caught.value.status == 401
    assert any(s.headers.get("Authorization", "").startswith("Basic") for s in server.seen)
    assert other.seen and not any("Authorization" in s.headers for s in other.seen)


def test_a_401_from_a_redirect_target_gets_no_credentials_and_no_realm(
    server: Scripted, other: Scripted
) -> None:
    issuer = TokenIssuer(server)
    digest = Digest.of(b"abc")
    location = f"{other.url}/storage/blob"
    guarded = issuer.guard("repository:r:pull", Answer(307, headers={"Location": location}))
    server.on("GET", f"/v2/r/blobs/{digest}", guarded)
    challenge = f'Bearer realm="{other.url}/token",service="cdn"'
    other.on("GET", "/storage/blob", Answer(401, headers={"WWW-Authenticate": challenge}))
    client = RegistryClient([server.url], Credentials("alice", SECRET), FAST)
    descriptor = Descriptor("application/octet-stream", digest, 3)
    with client, pytest.raises(RegistryError) as caught, client.blob("r", descriptor):
        pass
    assert caught.value.status == 401 and "/storage/blob" in caught.value.url
    assert [urlsplit(s.path).path for s in other.seen] == ["/storage/blob"]
    assert "Authorization" not in other.seen[0].headers
    assert len(issuer.requests) == 1  # the upstream's own token, for the upstream only


@pytest.mark.parametrize("address", ["169.254.169.254", "100.100.100.200", "[fd00:ec2::254]"])
def test_a_realm_at_a_metadata_address_is_refused_before_any_connection(
    server: Scripted, address: str
) -> None:
    challenge = f'Bearer realm="http://{address}/latest/token",service="s"'
    server.on("GET", "/v2/r/tags/list", Answer(401, headers={"WWW-Authenticate": challenge}))
    with RegistryClient([server.url], Credentials("alice", SECRET), FAST) as client:
        with pytest.raises(RegistryError, match="token realm refused") as caught:
            client.tags("r")
        # One request, the 401: the realm was judged before a connection was tried.
        assert client.stats.snapshot().requests == 1
    assert SECRET not in str(caught.value)


def test_a_realm_on_another_loopback_address_is_fine_and_pinned(
    server: Scripted, elsewhere: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """127.0.0.2 is as internal as the upstream's 127.0.0.1: allowed. The realm's name is
    resolved once, for the check, and the connection goes to that very address: here a
    name no DNS knows, resolved by the check alone."""
    real_resolve = addresses.resolve

    def resolve(host: str) -> list[addresses.IPAddress]:
        return [ipaddress.ip_address("127.0.0.2")] if host == "rebind.test" else real_resolve(host)

    monkeypatch.setattr(addresses, "resolve", resolve)
    port = elsewhere.server_address[1]
    elsewhere.on("GET", "/token", Answer(200, b'{"token": "t0k3n"}'))
    challenge = f'Bearer realm="http://rebind.test:{port}/token",service="s"'

    def tags(seen: Seen) -> Answer:
        if seen.headers.get("Authorization") == "Bearer t0k3n":
            return Answer(200, b'{"tags": ["a"]}')
        return Answer(401, headers={"WWW-Authenticate": challenge})

    server.on("GET", "/v2/r/tags/list", tags)
    with RegistryClient([server.url], Credentials("alice", SECRET), FAST) as client:
        assert client.tags("r") == ["a"]
    [token_request] = elsewhere.seen
    assert token_request.headers["Host"] == f"rebind.test:{port}"
    assert token_request.headers["Authorization"].startswith("Basic ")
