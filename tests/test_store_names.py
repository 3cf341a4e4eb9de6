"""Repositories named like a file of an OCI layout (``a/b/blobs``, ``a/b/index.json``,
``a/b/oci-layout``) would be written inside the layout of repository ``a/b``: the store
refuses them by name, and ``a/b`` stays readable and correct across runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from syncworker.errors import StoreError
from syncworker.oci import Digest
from syncworker.store import FsStore
from tests.support.images import make_image
from tests.support.mirror import check_store, mirrored_digest, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

SIBLING = "names/a/b"
CLASHING = [f"{SIBLING}/blobs", f"{SIBLING}/index.json", f"{SIBLING}/oci-layout"]


@pytest.mark.parametrize("name", [*CLASHING, "x/blobs/sha256", "blobs"])
def test_layout_file_names_are_refused_by_the_store(tmp_path: Path, name: str) -> None:
    store = FsStore(tmp_path)
    data = b"would land in a parent's layout"
    with pytest.raises(StoreError, match=re.escape(repr(name))):
        store.put_blob(name, Digest.of(data), len(data), [data])
    with pytest.raises(StoreError, match=re.escape(repr(name))):
        store.index(name)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary


def test_clashing_names_fail_alone_and_the_sibling_stays_correct(
    registry: RegistryServer, tmp_path: Path
) -> None:
    sibling = make_image("names-sibling")
    push_image(registry.url, SIBLING, "v1", sibling)
    for index, name in enumerate(CLASHING):
        push_image(registry.url, name, "v1", make_image(("names-clash", index)))
    root = tmp_path / "store"
    entry = {"urls": [registry.url], "content": [{"prefix": "names/**"}]}
    config = write_sync_config(tmp_path, root, [entry])
    for _ in range(2):
        run = run_sync(config)
        assert run.code == 1, run.output
        failed = [line for line in run.stdout.splitlines() if "FAILED" in line]
        for name in CLASHING:
            assert any(name in line for line in failed), (name, run.output)
        assert not any(SIBLING + ":" in line or line.endswith(SIBLING) for line in failed)
        assert mirrored_digest(root, SIBLING, "v1") == sibling.digest
        assert set(check_store(root)) == {SIBLING}
        assert sibling.all_blob_digests() <= check_store(root)[SIBLING]
