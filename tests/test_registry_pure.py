"""Pure parts of the registry client: challenges, tokens, backoff, redaction, redirects."""

from __future__ import annotations

import ipaddress
import json
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from syncworker.errors import (
    ContentError,
    DeadlineExceededError,
    DigestMismatchError,
    MalformedResponseError,
    NotFoundError,
    RegistryError,
    StoreError,
    TransportError,
)
from syncworker.redact import redact_http_url as redact_url
from syncworker.registry import Credentials
from syncworker.registry.addresses import is_internal_address, origin, target_allowed
from syncworker.registry.answers import declared_length, spec_errors
from syncworker.registry.auth import (
    TOKEN_LOCK_STRIPES,
    Challenge,
    Token,
    TokenCache,
    basic_authorization,
    parse_challenges,
    parse_token_response,
    token_query,
)
from syncworker.registry.paths import link_next, link_path, link_query, reference
from syncworker.retry import (
    REQUESTS,
    backoff_delay,
    classify,
    parse_retry_after,
    worth_refetching,
)

ip = ipaddress.ip_address


def test_bearer_challenge_with_quoted_commas() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    [challenge] = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.params["service"] == "registry.example.com"
    assert challenge.params["scope"] == "repository:samalba/my-app:pull,push"


def test_several_challenges_and_escapes() -> None:
    header = (
        'Basic realm="a \\"quoted\\" realm", Bearer realm="https://t/x",error=insufficient_scope'
    )
    basic, bearer = parse_challenges(header)
    assert (basic.scheme, basic.realm) == ("basic", 'a "quoted" realm')
    assert bearer.params == {"realm": "https://t/x", "error": "insufficient_scope"}


def test_empty_and_bare_challenges() -> None:
    assert parse_challenges("") == []
    assert parse_challenges("Basic") == [Challenge("basic", {})]


def test_token_query_asks_for_both_scopes_once() -> None:
    challenge = Challenge("bearer", {"realm": "r", "service": "s", "scope": "repository:a:pull"})
    assert token_query(challenge, "repository:a:pull") == [
        ("service", "s"),
        ("scope", "repository:a:pull"),
    ]
    assert token_query(challenge, "repository:b:pull")[1:] == [
        ("scope", "repository:b:pull"),
        ("scope", "repository:a:pull"),
    ]
    assert token_query(Challenge("bearer", {"realm": "r"}), None) == []


def test_token_response_lifetime_defaults_to_60_seconds() -> None:
    token = parse_token_response(b'{"token": "abc"}', now=1000.0, url="u")
    assert (token.value, token.expires_at) == ("abc", 1060.0)
    oauth = parse_token_response(b'{"access_token": "x", "expires_in": 300}', 0.0, "u")
    assert (oauth.value, oauth.expires_at) == ("x", 300.0)
    hostile = (
        b"not json",
        b"[]",
        b'{"token": ""}',
        b'{"expires_in": 5}',
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json.loads
        '{"token": "caf\u00e9"}'.encode(),  # not encodable in a header
        b'{"token": "a\r\nX-Injected: 1"}',
        b'{"token": {"nested": 1}}',
        b'{"token": "ok", "expires_in": true}',
        b'{"token": "ok", "expires_in": "300"}',
        b'{"token": "ok", "expires_in": 1e999}',
        b'{"token": "ok", "expires_in": -5}',
    )
    for bad in hostile:
        with pytest.raises(MalformedResponseError):
            parse_token_response(bad, 0.0, "u")


def test_token_cache_expiry_per_scope() -> None:
    cache = TokenCache()
    key = ("realm", "svc", "repository:a:pull")
    cache.put(key, Token("t", expires_at=100.0), now=0.0)
    assert cache.get(key, now=50.0) == Token("t", 100.0)
    assert cache.get(("realm", "svc", "repository:b:pull"), now=50.0) is None
    assert cache.get(key, now=99.0) is None  # refreshed a little before the deadline
    assert cache.lock(key) is cache.lock(key)


def test_token_cache_holds_the_tokens_still_valid_not_one_per_scope_ever_used() -> None:
    cache = TokenCache()
    first = [("realm", "svc", f"repository:a{n}:pull") for n in range(5000)]
    later = [("realm", "svc", f"repository:b{n}:pull") for n in range(5000)]
    for key in first:
        cache.put(key, Token("t", expires_at=100.0), now=0.0)
    for key in later:  # every token of the first walk has expired by now
        cache.put(key, Token("t", expires_at=400.0), now=300.0)
    assert len(cache) == len(later)
    assert len({id(cache.lock(key)) for key in first + later}) <= TOKEN_LOCK_STRIPES


def test_secrets_stay_out_of_reprs() -> None:
    creds = Credentials("alice", "s3cret-pw")
    assert "s3cret-pw" not in repr(creds)
    assert "tok-value" not in repr(Token("tok-value", 1.0))
    assert basic_authorization(creds) == "Basic YWxpY2U6czNjcmV0LXB3"


def test_backoff_doubles_up_to_the_cap_and_jitter_takes_up_to_half() -> None:
    assert [backoff_delay(n, base=0.5, cap=10.0) for n in range(7)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        10.0,
        10.0,
    ]
    rng = random.Random(7)
    for attempt in range(12):
        bound = min(10.0, 0.5 * 2**attempt)
        delays = [
            backoff_delay(attempt, base=0.5, cap=10.0, jitter=rng.random()) for _ in range(200)
        ]
        assert all(bound / 2 <= d <= bound for d in delays)
        assert max(delays) - min(delays) > bound / 4  # jitter spreads the retries apart
    assert backoff_delay(10_000, base=1.0, cap=5.0) == 5.0  # no overflow on a long outage
    with pytest.raises(ValueError):
        backoff_delay(-1, base=1.0)


def test_retry_after_wins_when_longer_never_over_the_cap() -> None:
    assert backoff_delay(0, base=0.5, cap=60.0, retry_after=7.0) == 7.0
    assert backoff_delay(0, base=0.5, cap=60.0, retry_after=3600.0) == 60.0
    # Asking for less than our backoff (or a date in the past) does not shorten it.
    assert backoff_delay(3, base=0.5, cap=60.0, retry_after=-4.0) == 4.0
    assert backoff_delay(3, base=0.5, cap=60.0, retry_after=1.0, jitter=0.5) == 3.0


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert parse_retry_after(past, now) == 0.0
    assert parse_retry_after(None, now) is None
    for garbled in ("soon", "²", "١٢", "Wed, 21 Oct 99999 07:28:00 GMT"):
        assert parse_retry_after(garbled, now) is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_temporary_statuses_are_retried(status: int) -> None:
    assert classify(RegistryError("GET", "u", status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
def test_client_errors_are_not_retried(status: int) -> None:
    assert not classify(RegistryError("GET", "u", status))
    assert not classify(NotFoundError("GET", "u", 404))


def test_connection_errors_and_toomanyrequests_codes_are_retried() -> None:
    assert classify(TransportError("refused"))
    assert classify(RegistryError("GET", "u", 403, ("TOOMANYREQUESTS",)))
    assert not classify(DeadlineExceededError("syncTimeout reached"))
    assert not classify(ValueError("not ours"))


def test_altered_bytes_are_worth_another_fetch_other_content_errors_not() -> None:
    assert worth_refetching(DigestMismatchError("flipped byte"))
    assert worth_refetching(TransportError("reset"))
    assert not classify(DigestMismatchError("flipped byte"))
    assert not worth_refetching(MalformedResponseError("bad JSON"))
    assert not worth_refetching(RegistryError("GET", "u", 404))


def test_a_store_error_stays_temporary_once_its_retries_ran_out() -> None:
    """A store's error is judged by its cause (a registry destination's upload cut):
    raised from the retry loop it must still say "later", for the task's own retries."""

    def upload() -> None:
        try:
            raise TransportError("connection reset by the destination")
        except TransportError as exc:
            raise StoreError(f"destination d:5000: {exc}") from exc

    with pytest.raises(StoreError) as caught:
        REQUESTS.but(retries=2, base=0.0).run(upload, sleep=lambda _: None)
    assert isinstance(caught.value.__cause__, TransportError)
    assert classify(caught.value)


def test_altered_bytes_every_time_say_how_often_and_why() -> None:
    def fetch() -> None:
        raise DigestMismatchError("flipped byte")

    with pytest.raises(DigestMismatchError, match="the same after 3 fetches") as caught:
        REQUESTS.but(retries=2, base=0.0).run(fetch, sleep=lambda _: None)
    assert isinstance(caught.value.__cause__, DigestMismatchError)


def test_redaction_drops_userinfo_and_unknown_query_values() -> None:
    url = (
        "https://bob:hunter2@s3.example.com:8443/bucket/blob?X-Amz-Signature=abc123"
        "&X-Amz-Credential=AKIA&n=10&last=repo/x&token=zzz"
    )
    redacted = redact_url(url)
    for secret in ("hunter2", "bob", "abc123", "AKIA", "zzz"):
        assert secret not in redacted
    assert redacted.startswith("https://s3.example.com:8443/bucket/blob?")
    assert "n=10" in redacted and "last=repo/x" in redacted
    assert "#" not in redact_url("http://h/p#frag")


def test_origin_includes_default_ports() -> None:
    assert origin("https://Example.com/v2/") == ("https", "example.com", 443)
    assert origin("http://example.com:80/") == origin("http://example.com/x")
    assert origin("http://example.com:5000/") != origin("http://example.com/")


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00::1",
        "0.0.0.0",
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "100.100.100.200",
    ],
)
def test_internal_addresses(address: str) -> None:
    assert is_internal_address(ip(address))


def test_public_addresses_are_not_internal() -> None:
    assert not is_internal_address(ip("93.184.216.34"))
    assert not is_internal_address(ip("2606:2800:220:1:248:1893:25c8:1946"))


def test_public_upstream_may_not_redirect_inside() -> None:
    public = [ip("93.184.216.34")]
    assert target_allowed("https://cdn.example/blob", public, [ip("151.101.1.1")])
    assert not target_allowed("http://169.254.169.254/latest", public, [ip("169.254.169.254")])
    assert not target_allowed("http://10.0.0.5/", public, [ip("10.0.0.5")])
    # One internal address among several is enough to refuse (DNS may answer either).
    assert not target_allowed("http://x/", public, [ip("151.101.1.1"), ip("127.0.0.1")])
    assert not target_allowed("http://unresolvable/", public, [])
    assert not target_allowed("file:///etc/passwd", public, [ip("151.101.1.1")])


def test_internal_upstream_may_name_private_addresses_never_metadata() -> None:
    lan = [ip("192.168.1.10")]
    assert target_allowed("http://10.0.0.5/blob", lan, [ip("10.0.0.5")])
    assert target_allowed("https://cdn.example/blob", lan, [ip("151.101.1.1")])
    assert not target_allowed("ftp://10.0.0.5/blob", lan, [ip("10.0.0.5")])
    loopback = [ip("127.0.0.1")]
    assert target_allowed("http://127.0.0.2:5000/token", loopback, [ip("127.0.0.2")])
    # Cloud metadata (link-local, RFC 6598 shared space, AWS's IPv6 one): never.
    for metadata in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254", "::ffff:100.64.0.1"):
        assert not target_allowed("http://m/latest", loopback, [ip(metadata)]), metadata
    assert not target_allowed("http://h:port/x", loopback, [ip("127.0.0.1")])


def test_link_header_parsing() -> None:
    header = '</v2/_catalog?last=b&n=2>; rel="next"'
    assert link_next(header) == "/v2/_catalog?last=b&n=2"
    assert link_query("/v2/_catalog?last=b&n=2", "last") == "b"
    assert link_next('<http://h/v2/x?a=1>; rel="prev", </v2/y?last=z>; rel=next') == "/v2/y?last=z"
    assert link_next(None) is None
    assert link_next('</v2/x>; rel="self"') is None
    assert link_path("https://other.host/v2/r/tags/list?last=t") == "/v2/r/tags/list?last=t"


def test_link_outside_the_api_is_refused() -> None:
    with pytest.raises(ContentError, match="outside /v2/"):
        link_path("http://h/admin?x=1")


def test_references_are_validated_before_they_reach_a_url() -> None:
    assert reference("v1.0") == "v1.0"
    assert reference("sha256:" + "a" * 64) == "sha256:" + "a" * 64
    for bad in ("../x", "a/b", "sha256:zz", "md5:" + "a" * 32, ""):
        with pytest.raises(ContentError):
            reference(bad)


def test_error_bodies_are_read_defensively() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"
    body = json.dumps(
        {"errors": [{"code": "DENIED", "message": f"token {jwt} refused\x1b[31m\nforged line"}]}
    ).encode()
    codes, detail = spec_errors(body)
    assert codes == ("DENIED",)
    assert jwt not in detail and "\n" not in detail and "\x1b" not in detail
    for garbage in (b"[" * 100_000, b'{"errors": "x"}', b'{"errors": [{"code": {}}]}', b"\xff"):
        assert spec_errors(garbage)[0] == ()
    assert spec_errors(json.dumps({"errors": [{"code": "X" * 10_000}] * 50}).encode()) == (
        ("X" * 40,) * 8,
        "",
    )


@pytest.mark.parametrize("value", ["²", "١٢", "12 34", "-1", "0x10", "1e3"])
def test_content_length_must_be_ascii_digits(value: str) -> None:
    with pytest.raises(MalformedResponseError, match="Content-Length"):
        declared_length({"Content-Length": value}, "GET x")
    assert declared_length({"Content-Length": " 42 "}, "GET x") == 42
    assert declared_length({}, "GET x") is None
