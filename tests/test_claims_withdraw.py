"""A claim withdrawn by the sync that took it and listed nothing (syncworker/engine/mirror.py
``_claimed``), beside a sync of another source in another process, and a first sync killed
(SIGKILL) before it could withdraw or finish: one source in the destination, every tree
whole. The claim's record itself is tested in tests/test_claims.py."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from syncworker.store.claim import CLAIM_FILE
from tests.support.chaos import verified_tags
from tests.support.cluster import ROOT, SYNCWORKER
from tests.support.corpus import Corpus
from tests.support.images import make_image, make_layer
from tests.support.mirror import check_store, layout_tags, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy

Seeded = tuple[RegistryServer, Corpus]
WAIT_SECONDS = 120.0
MIB = 1 << 20


def _source(directory: Path, root: Path, name: str, url: str, repo: str) -> Path:
    """A config of its own mapping ``name``'s ``repo`` into ``same``."""
    directory.mkdir(parents=True, exist_ok=True)
    content = [{"prefix": repo, "destination": "same", "stripPrefix": True}]
    entry = {"name": name, "urls": [url], "repos": [repo], "content": content}
    return write_sync_config(directory, root, [entry])


def _start(config: Path) -> subprocess.Popen[str]:
    command = [*SYNCWORKER, "sync", "-q", "-c", str(config)]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_failed_first_sync_beside_another_sources_sync_leaves_that_one(
    seeded_registry: Seeded, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    locked = make_registry(htpasswd=("user", "secret"))  # answers 401: its sync lists nothing
    failing = _source(tmp_path / "old", root, "old", locked.url, "library/alpine")
    good = _source(tmp_path / "hub", root, "hub", server.url, "library/alpine")
    for _ in range(3):
        procs = [_start(failing), _start(good)]
        codes = [proc.wait(timeout=WAIT_SECONDS) for proc in procs]
        outputs = [proc.communicate()[0] for proc in procs]
        assert codes[0] == 1, outputs[0]
        # The good source is refused only while the failing one held its claim.
        assert codes[1] == 0 or "mirrors old/library/alpine" in outputs[1], outputs[1]
    assert run_sync(good).code == 0
    assert json.loads((root / "same" / CLAIM_FILE).read_bytes())["registry"] == "hub"
    assert verified_tags(root, {"same": corpus.tags["library/alpine"]}, skopeo=False) == len(
        corpus.tags["library/alpine"]
    )
    assert (
        run_sync(failing).code == 1 and layout_tags(root)["same"] == corpus.tags["library/alpine"]
    )


def test_a_first_sync_killed_before_it_listed_anything_leaves_its_claim_and_no_tree(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """Killed mid-copy: nothing listed, so nothing broken; its claim stays (it could not
    withdraw it), and its next sync finishes."""
    repo = "claims/killed"
    big = make_layer("claims-killed-big", size=4 * MIB, compresslevel=0)
    image = make_image("claims-killed", layers=0, base=[big])
    push_image(registry.url, repo, "v1", image)
    root = tmp_path / "store"
    with StallingProxy(registry.url, big.digest, after=MIB) as proxy:
        config = _source(tmp_path, root, "hub", proxy.url, repo)
        sync = _start(config)
        try:
            assert proxy.reached.wait(WAIT_SECONDS), "the layer was never asked for"
        finally:
            sync.send_signal(signal.SIGKILL)
            sync.communicate()
        assert (root / "same" / CLAIM_FILE).exists()
        assert check_store(root) == {}  # nothing listed: no tree to break
        proxy.release()
        run = run_sync(config)
    assert run.code == 0, run.output
    assert layout_tags(root) == {"same": {"v1": image.digest}}
    check_store(root)
