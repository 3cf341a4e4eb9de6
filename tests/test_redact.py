"""A URL's password never reaches a message, whatever characters it holds.

Passwords are drawn from every character that is special in a URL (``@ : / % ? #`` and the
sub-delimiters), written raw or percent-encoded, in every kind of URL the mirror prints:
Redis URLs in "unreachable" messages, registry and S3 URLs in errors."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncworker.coord import Coordinator
from syncworker.errors import ConfigError, CoordError
from syncworker.redact import redact_http_url, redact_redis_url, redact_text
from tests.support.ports import free_port

SPECIAL = "@:/%?#[]!$&'()*+,;=._~-"
passwords = st.text(alphabet=st.sampled_from("aZ09" + SPECIAL), min_size=1, max_size=24)
users = st.text(alphabet=st.sampled_from("abz09._-@"), max_size=8)
hosts = st.sampled_from(["redis", "10.0.0.7", "cache.example.com", "[::1]", "[fd00::7]"])
ports = st.sampled_from(["", ":6379", ":1"])
paths = st.sampled_from(["", "/", "/0", "/15", "/v2/library/alpine/blobs?n=1"])
schemes = st.sampled_from(["redis", "rediss", "https", "http", "s3"])
encodings = st.sampled_from(["raw", "percent"])


def written(password: str, encoding: str) -> str:
    return password if encoding == "raw" else quote(password, safe="")


@given(schemes, users, passwords, encodings, hosts, ports, paths)
def test_the_password_of_any_url_is_replaced_and_the_rest_kept(
    scheme: str, user: str, password: str, encoding: str, host: str, port: str, path: str
) -> None:
    url = f"{scheme}://{user}:{written(password, encoding)}@{host}{port}{path}"
    assert redact_redis_url(url) == f"{scheme}://{user}:***@{host}{port}{path}"
    message = f"Redis at {url} is unreachable: Error 111 connecting to {host}{port}."
    assert redact_text(message) == message.replace(url, redact_redis_url(url))


@given(users, passwords, encodings, hosts, ports)
def test_an_http_url_loses_its_whole_userinfo(
    user: str, password: str, encoding: str, host: str, port: str
) -> None:
    url = f"https://{user}:{written(password, encoding)}@{host}{port}/v2/a/b/blobs/x"
    assert redact_http_url(url) == f"https://{host}{port}/v2/a/b/blobs/x"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cr@tP4ss@host/0", "redis://:***@host/0"),
        ("redis://:pa/ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://worker:a:b:c@host/0", "redis://worker:***@host/0"),
        ("rediss://u:%40%3A%2F%25@[::1]:6380/2", "rediss://u:***@[::1]:6380/2"),
        ("unix://:p@ss@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("https://registry:5000/v2/a/manifests/x@sha256:ab", None),  # no userinfo: as is
        ("https://bob@registry/v2/", None),  # a user without a password: as is
    ],
)
def test_table(url: str, shown: str | None) -> None:
    assert redact_redis_url(url) == (shown or url)
    assert redact_text(f"'{url}' failed") == f"'{shown or url}' failed"


@pytest.mark.parametrize("password", ["Qx7/Wv9", "Qx7#Wv9", "Qx7/Jk2@Wv9"])
def test_a_url_redis_cannot_parse_is_refused_without_any_piece_of_its_password(
    password: str,
) -> None:
    """urllib's own message quotes what it took for the port, a piece of the password here."""
    with pytest.raises(ConfigError) as caught:
        Coordinator.from_url(f"redis://:{password}@127.0.0.1:6379/0")
    error = caught.value
    assert "redis://:***@127.0.0.1:6379/0" in str(error)
    assert error.__cause__ is None and error.__suppress_context__
    for piece in re.split("[@:/]", password):
        assert piece not in str(error)


@pytest.mark.parametrize("password", ["s3cr@tP4ss", "Qa:Jb@Wc%40Xd", "Zp%2FYw@Vrd"])
def test_redis_unreachable_names_the_url_without_any_of_its_password(password: str) -> None:
    """What ``status``, ``/readyz`` and the logs print when Redis does not answer."""
    port = free_port()
    coordinator = Coordinator.from_url(f"redis://worker:{password}@127.0.0.1:{port}/0")
    with pytest.raises(CoordError) as caught:
        coordinator.ping()
    message = str(caught.value)
    assert f"redis://worker:***@127.0.0.1:{port}/0" in message
    for piece in re.split("[@:%]", password):
        assert piece not in message.replace(f"127.0.0.1:{port}", "")
