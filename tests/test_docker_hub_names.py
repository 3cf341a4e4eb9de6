"""Docker Hub's repository names as docker spells them: a single name (``alpine``) is the
official image ``library/alpine``, whichever of Docker Hub's host names a URL uses. A
configured ``repos`` entry, an API request and a pull-through name given as ``alpine`` all
mean it, and all store it as ``library/alpine``; ``serve`` reads that one copy under either
spelling. Another registry's single names are left alone.

Docker Hub is known by its host name only, so the end-to-end test runs the engine against a
local registry told it is Docker Hub (the engine's ``Upstream.docker_hub``), under the
configuration of a Docker Hub entry that ``serve`` and the pull-through read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from syncworker.api.routing import refusal
from syncworker.config.syncextension import RegistryConfig
from syncworker.engine import LocalLocks, Mirror, Upstream
from syncworker.registry import ClientOptions
from syncworker.serve.context import Served, stored_names
from syncworker.serve.ondemand import OnDemand
from syncworker.serve.server import RegistryHTTPServer
from syncworker.store.fs import FsStore
from tests.support.images import make_image
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.test_serve import skopeo_digest

EVERYTHING = [{"prefix": "**"}]
FAST = ClientOptions(max_retries=1, retry_delay=0.01)


def _entry(url: str, **more: Any) -> RegistryConfig:
    return RegistryConfig.model_validate({"urls": [url], "content": EVERYTHING, **more})


@pytest.mark.parametrize(
    "url", ["https://docker.io", "https://index.docker.io", "https://registry-1.docker.io"]
)
def test_a_single_name_on_docker_hub_is_an_official_image(url: str) -> None:
    entry = _entry(url, repos=["alpine", "bitnami/redis"])
    assert entry.repos == ["library/alpine", "bitnami/redis"]
    assert entry.upstream_repository("alpine") == "library/alpine"
    assert entry.upstream_repository("library/alpine") == "library/alpine"


def test_another_registrys_single_names_are_its_own() -> None:
    entry = _entry("https://ghcr.example.com", repos=["alpine"])
    assert entry.repos == ["alpine"]
    assert entry.upstream_repository("alpine") == "alpine"


def test_requests_for_a_single_name_reach_the_official_image() -> None:
    hub = _entry("https://registry-1.docker.io", repos=["alpine"], onDemand=True)
    assert refusal(hub, "alpine", "3.20") is None  # the API's POST /v1/sync
    assert refusal(hub, "library/alpine", "3.20") is None
    assert refusal(hub, "busybox", None) == "not in the registry's repos list"
    copies: list[tuple[str, str, str]] = []
    pull_through = OnDemand([hub], lambda *copy: copies.append(copy), wait=30)
    try:
        assert pull_through.maps("alpine")  # ``docker pull mirror/alpine`` through serve
        pull_through.fill_image("alpine", "3.20")
    finally:
        pull_through.close()
    # Copied as library/alpine, under which the scheduled sync stores it too.
    assert copies == [(hub.name, "library/alpine", "3.20")]


def test_a_single_name_is_stored_where_the_rules_put_the_official_image() -> None:
    hub = _entry("https://docker.io")
    assert [hub.stored_name(n) for n in ("alpine", "library/alpine", "bitnami/redis")] == [
        "library/alpine",
        None,
        None,
    ]
    under = [{"prefix": "**", "destination": "/hub", "stripPrefix": False}]
    assert _entry("https://docker.io", content=under).stored_name("hub/alpine") == (
        "hub/library/alpine"
    )
    other = _entry("https://ghcr.example.com")
    names = stored_names([other, hub])
    assert [names("alpine"), names("library/alpine"), names("team/app")] == [
        "library/alpine",
        "library/alpine",
        "team/app",
    ]
    assert stored_names([other])("alpine") == "alpine"


def test_serve_reads_one_copy_under_both_spellings_and_pulls_through_beside_it(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """A scheduled sync of ``repos: [hubserve]`` stores ``library/hubserve``; ``docker pull
    mirror/hubserve`` and a daemon's ``registry-mirrors`` request for
    ``library/hubserve`` both read it, and a tag pulled through as ``hubserve`` lands
    beside it, not in a second copy."""
    scheduled, pulled = make_image("hub-scheduled"), make_image("hub-pulled")
    push_image(registry.url, "library/hubserve", "1.0", scheduled)
    hub = _entry("https://registry-1.docker.io", repos=["hubserve"], onDemand=True)
    upstream = Upstream(hub.name, (registry.url,), {}, FAST, hub.content_rules(), docker_hub=True)
    store = FsStore(tmp_path / "store")
    with Mirror({hub.name: upstream}, store, LocalLocks(), blob_threads=2) as mirror:
        assert mirror.sync_repo(hub.name, hub.repos[0]).copied == ["1.0"]
        push_image(registry.url, "library/hubserve", "2.0", pulled)
        copies: list[tuple[str, str, str]] = []

        def copy(*args: str) -> None:
            copies.append(args)
            mirror.sync_image(*args)

        filler = OnDemand([hub], copy, wait=60)
        with _serving(Served(store, filler=filler, names=stored_names([hub]))) as host:
            for name in ("hubserve", "library/hubserve"):
                assert _digest(host, name, "1.0", tmp_path) == scheduled.digest
            assert _digest(host, "hubserve", "2.0", tmp_path) == pulled.digest
            assert _digest(host, "library/hubserve", "2.0", tmp_path) == pulled.digest
    assert copies == [(hub.name, "library/hubserve", "2.0")]
    assert store.repositories() == ["library/hubserve"]


@contextmanager
def _serving(served: Served) -> Iterator[str]:
    server = RegistryHTTPServer(("127.0.0.1", 0), served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        served.close()


def _digest(host: str, repo: str, tag: str, tmp_path: Path) -> str:
    return skopeo_digest(host, repo, tag, tmp_path / f"{repo.replace('/', '_')}-{tag}")
