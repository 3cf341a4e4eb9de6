"""How failures read: a blob whose body stops coming is reported as a timeout (requests
wraps that read timeout in a ConnectionError, which reads as no answer at all)."""

from __future__ import annotations

import pytest

from syncworker.errors import TransportError
from syncworker.oci import Descriptor, Digest
from syncworker.registry import ClientOptions, RegistryClient
from tests.support.images import make_image
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy

KIB = 1024


def test_a_body_that_stalls_is_reported_as_a_timeout(registry: RegistryServer) -> None:
    image = make_image("stalled-body", layers=1, layer_size=64 * KIB)
    push_image(registry.url, "errors/stall", "v1", image)
    layer = image.blobs[-1]
    descriptor = Descriptor(layer.media_type, Digest.parse(layer.digest), len(layer.data))
    options = ClientOptions(timeout=0.5, max_retries=0)
    with StallingProxy(registry.url, layer.digest, after=KIB) as proxy:
        client = RegistryClient([proxy.url], options=options)
        with (
            pytest.raises(TransportError) as caught,
            client.blob("errors/stall", descriptor) as body,
        ):
            for _chunk in body:
                pass
        client.close()
    message = str(caught.value)
    assert f"GET {proxy.url}/v2/errors/stall/blobs/{layer.digest}: timed out" in message
    assert "ConnectionError" not in message
