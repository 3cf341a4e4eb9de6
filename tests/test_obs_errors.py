"""How failures read: a blob whose body stops coming is reported as a timeout (requests
wraps that read timeout in a ConnectionError, which reads as no answer at all); a repository
whose lock cannot be taken is named with the cause, not logged as an unexpected error."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncworker.errors import TransportError
from syncworker.oci import Descriptor, Digest
from syncworker.registry import ClientOptions, RegistryClient
from tests.support.images import make_image
from tests.support.mirror import run_sync, write_sync_config
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


def test_a_repository_whose_lock_cannot_be_taken_is_a_failure_naming_it(
    registry: RegistryServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    push_image(registry.url, "errors/locked", "v1", make_image("unlockable", layers=1))
    root = tmp_path / "store"
    root.mkdir()
    (root / ".locks").write_bytes(b"")  # where the repository locks go: not a directory
    config = write_sync_config(tmp_path, root, [{"urls": [registry.url]}])
    run = run_sync(config)
    assert run.code != 0
    assert "FAILED" in run.stdout and ".locks/errors/locked/.lock: Not a directory" in run.stdout
    assert "StoreError" not in run.stdout, run.stdout
    logged = [r for r in caplog.records if "errors/locked" in r.getMessage()]
    assert logged and not any(r.exc_info or "unexpected" in r.getMessage() for r in logged)
