"""Docker Hub's repository names as docker spells them: a single name (``alpine``) is the
official image ``library/alpine``, whichever of Docker Hub's host names a URL uses. A
configured ``repos`` entry, an API request and a pull-through name given as ``alpine`` all
mean it; another registry's single names are left alone. (That the engine then asks the
upstream for ``library/alpine``: ``test_engine_repo.py``.)"""

from __future__ import annotations

from typing import Any

import pytest

from syncworker.api.routing import refusal
from syncworker.config.syncextension import RegistryConfig
from syncworker.serve.ondemand import OnDemand

EVERYTHING = [{"prefix": "**"}]


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
    # Stored under the name pulled; the engine asks Docker Hub for library/alpine.
    assert copies == [(hub.name, "alpine", "3.20")]
