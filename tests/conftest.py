"""Shared fixtures: real services on 127.0.0.1, started by the fixtures themselves.

Every fixture that needs a binary (docker-registry, redis-server, htpasswd) FAILS with a clear
message when it is missing; nothing is skipped. `scripts/test.sh` installs them.

Session-scoped
    registry          RegistryServer: an empty, plain-HTTP, no-auth distribution 2.8 registry.
                      Shared by the session: push under a repository name unique to your test,
                      and compare its metrics as before/after deltas (counters are cumulative)
                      or take a fresh one from make_registry().
    seeded_registry   (RegistryServer, Corpus): a separate registry holding the standard corpus
                      (tests/support/corpus.py docstring). Treat it as READ-ONLY.
    redis_url         "redis://127.0.0.1:6379/N" when that Redis answers PING, else the URL of
                      a private redis-server; N is the pytest-xdist worker's number (0 when
                      run without -n). Shared: use your own key prefix (redis_prefix), never
                      FLUSHALL / FLUSHDB.

Function-scoped
    make_registry     factory: make_registry(htpasswd=(u, p) | token_auth=issuer, tls=(cert,
                      key), client_ca=ca_file) -> a fresh RegistryServer, stopped after the
                      test. client_ca (with tls) requires client certificates: mutual TLS.
    make_token_issuer factory: make_token_issuer(users={"u": "p"}, anonymous_pull=True,
                      expires_in=300, jwt_lifetime=None, algorithm="RS256"|"ES256") -> a
                      running TokenIssuer (pass it as make_registry(token_auth=...)); it
                      counts tokens_issued, issued_to[user], scopes_requested, rejected.
    tls_certs         TlsMaterial for 127.0.0.1/localhost: CA, server cert/key, client
                      cert/key, and a zot-style certDir (ca.crt, client.cert, client.key).
    private_redis     RedisServer of its own on a free port (stop/kill/restart it freely).
    redis_prefix      a unique key prefix for this test, e.g. "test:gw1:3f2a9c1e:".
    tmp_store_root    an empty directory (pathlib.Path) for a store root.

Helpers to import: tests.support.images (make_image, make_index, make_artifact, ...),
tests.support.push.push_image, tests.support.corpus (seed_standard, seed_many),
tests.support.client.registry_session. A RegistryServer has url, host, metrics(),
request_count(handler=, method=, code=), blob_gets(), kill(), restart(), stop(); its
Prometheus handler labels are listed in tests/support/registry_server.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.corpus import Corpus, seed_standard
from tests.support.redis_server import RedisServer, shared_redis_url
from tests.support.registry_server import RegistryServer
from tests.support.tls import TlsMaterial, make_tls_material
from tests.support.token_issuer import TokenIssuer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers (-n), the slow and chaos tests first, each module's together: they
    take the longest, and one handed out last would keep the run going while the other
    workers sit idle."""
    if getattr(config.option, "numprocesses", None):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None
                   and item.get_closest_marker("chaos") is None)  # fmt: skip


def _fail_on_error(factory: Callable[[], Any], what: str) -> Any:
    try:
        return factory()
    except (OSError, RuntimeError) as exc:
        pytest.fail(f"cannot start {what}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    server: RegistryServer = _fail_on_error(RegistryServer, "docker-registry")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seeded_registry() -> Iterator[tuple[RegistryServer, Corpus]]:
    server: RegistryServer = _fail_on_error(RegistryServer, "docker-registry")
    try:
        corpus = seed_standard(server)
        yield server, corpus
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, server = _fail_on_error(shared_redis_url, "redis-server")
    yield url
    if server is not None:
        server.close()


@pytest.fixture
def redis_prefix() -> str:
    return f"test:{os.environ.get('PYTEST_XDIST_WORKER', 'main')}:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server: RedisServer = _fail_on_error(RedisServer, "redis-server")
    yield server
    server.close()


@pytest.fixture
def make_registry() -> Iterator[Callable[..., RegistryServer]]:
    started: list[RegistryServer] = []

    def make(**options: Any) -> RegistryServer:
        server: RegistryServer = _fail_on_error(
            lambda: RegistryServer(**options), "docker-registry"
        )
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def make_token_issuer(tmp_path: Path) -> Iterator[Callable[..., TokenIssuer]]:
    started: list[TokenIssuer] = []

    def make(**options: Any) -> TokenIssuer:
        workdir = tmp_path / f"token-issuer-{len(started)}"
        issuer = TokenIssuer(workdir, **options)
        started.append(issuer)
        return issuer

    yield make
    for issuer in started:
        issuer.stop()


@pytest.fixture
def tls_certs(tmp_path: Path) -> TlsMaterial:
    return make_tls_material(tmp_path / "tls")


@pytest.fixture
def tmp_store_root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root
