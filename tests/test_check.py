"""``syncworker check``: a real registry mirrored into a real store, then damaged the ways
a disk or a power cut damages it (a blob's bytes changed, a blob gone, a child manifest
gone, a referrer's blob gone); the check names each broken entry, ``--repair`` copies them
again from the upstream and skopeo reads the repaired tags."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path
from typing import Any

import requests
import yaml

from syncworker.cli import main
from syncworker.config.loader import load_config
from syncworker.config.mirrorbuild import build_mirror
from syncworker.config.storeopen import store_for
from syncworker.engine import LocalLocks
from syncworker.engine.checkrun import checker
from syncworker.runtime import Runtime
from tests.support.images import Manifest, make_artifact, make_image, make_index, make_layer
from tests.support.mirror import (
    SKOPEO_READABLE,
    SKOPEO_TIMEOUT,
    SyncRun,
    check_store,
    run_sync,
    write_sync_config,
)
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

REPO = "check/app"


def run_check(config: Path, *extra: str) -> SyncRun:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", "-c", str(config), *extra])
    return SyncRun(code, out.getvalue(), err.getvalue())


def blob_path(root: Path, repo: str, digest: str) -> Path:
    algorithm, _, hex_ = digest.partition(":")
    return root / repo / "blobs" / algorithm / hex_


def corrupt(path: Path) -> None:
    """Same size, other bytes: what a torn write or a bad sector leaves. A new file, so
    that hard links of the blob in other repositories keep their bytes."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


def skopeo_copy(root: Path, repo: str, tag: str, dest: Path) -> None:
    """skopeo copies the tag out of the layout, verifying every blob it reads."""
    done = subprocess.run(
        ["skopeo", "copy", "--all", f"oci:{root}/{repo}:{tag}", f"dir:{dest}"],
        capture_output=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"skopeo cannot copy {repo}:{tag}: {done.stderr.decode()}"


def _mirror(registry: RegistryServer, tmp_path: Path, **entry: Any) -> tuple[Path, Path]:
    """REPO's repositories mirrored into a directory: (its root, the config)."""
    root = tmp_path / "store"
    registries = [{"urls": [registry.url], "content": [{"prefix": f"{REPO}/**"}], **entry}]
    config = write_sync_config(tmp_path, root, registries, settings=SKOPEO_READABLE)
    assert run_sync(config).code == 0
    return root, config


def _mirror_broken(
    registry: RegistryServer, tmp_path: Path, leaf: str, **entry: Any
) -> tuple[str, Manifest, Path]:
    """An image pushed as ``REPO/<leaf>:v1`` and mirrored, then its last layer removed from
    the store: (the repository, the image, the config)."""
    repo = f"{REPO}/{leaf}"
    image = make_image((tmp_path.name, leaf), layers=1)
    push_image(registry.url, repo, "v1", image)
    root, config = _mirror(registry, tmp_path, **entry)
    blob_path(root, repo, image.blobs[-1].digest).unlink()
    return repo, image, config


def _mirror_apart(
    registry: RegistryServer, tmp_path: Path, images: dict[str, Manifest]
) -> tuple[Path, Path]:
    """Each of ``images`` pushed as ``REPO/<name>/app:v1`` and mirrored by a registry entry
    of its own, named ``<name>``: (the store's root, the config)."""
    for name, image in images.items():
        push_image(registry.url, f"{REPO}/{name}/app", "v1", image)
    root = tmp_path / "store"
    registries = [
        {"name": name, "urls": [registry.url], "content": [{"prefix": f"{REPO}/{name}/**"}]}
        for name in images
    ]
    config = write_sync_config(tmp_path, root, registries)
    assert run_sync(config).code == 0
    return root, config


def _push_set(registry: RegistryServer, repo: str, seed: str) -> dict[str, Manifest]:
    images = {
        "single": make_image((seed, "single"), layers=2),
        "gone": make_image((seed, "gone"), layers=1),
        "multi": make_index((seed, "multi"), layers=1),
    }
    for tag, image in images.items():
        push_image(registry.url, repo, tag, image)
    sbom = make_artifact(
        images["single"], artifact_type="application/spdx+json", payload=seed.encode() * 64
    )
    push_image(registry.url, repo, None, sbom)
    images["sbom"] = sbom
    return images


def test_check_names_each_broken_tree_and_repair_makes_it_whole(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = f"{REPO}/{tmp_path.name[-20:]}"
    images = _push_set(registry, repo, tmp_path.name)
    root, config = _mirror(registry, tmp_path)
    whole = run_check(config, "--deep")
    assert whole.code == 0, whole.output
    assert "0 broken" in whole.stdout, whole.output
    assert f"] {repo}: ok, 5 trees, " in whole.stderr, whole.output  # a line per repository

    layer = images["single"].blobs[-1].digest
    corrupt(blob_path(root, repo, layer))
    gone = images["gone"].blobs[0].digest
    blob_path(root, repo, gone).unlink()
    child = images["multi"].children[1].digest
    blob_path(root, repo, child).unlink()
    payload = images["sbom"].blobs[-1].digest
    blob_path(root, repo, payload).unlink()

    shallow = run_check(config)  # sizes only: the changed bytes are not seen
    assert shallow.code == 1, shallow.output
    assert f"{repo}:gone ({images['gone'].digest}): blob {gone} absent" in shallow.stdout
    assert f"{repo}:multi ({images['multi'].digest}): manifest {child} absent" in shallow.stdout
    assert f"{repo}@{images['sbom'].digest} ({images['sbom'].digest}): blob {payload} absent" in (
        shallow.stdout
    )
    assert f"{repo}:single " not in shallow.stdout, shallow.output

    deep = run_check(config, "--deep")
    assert deep.code == 1, deep.output
    assert f"{repo}:single ({images['single'].digest}): blob {layer} corrupt" in deep.stdout
    # and the referrers tag-schema index that lists the SBOM
    assert deep.stdout.count("BROKEN ") == 5, deep.output

    repaired = run_check(config, "--deep", "--repair")
    assert repaired.code == 0, repaired.output
    assert repaired.stdout.count("REPAIRED ") == 5, repaired.output
    assert "STILL BROKEN" not in repaired.stdout, repaired.output
    assert run_check(config, "--deep").code == 0
    check_store(root)
    for tag in ("single", "gone", "multi"):
        skopeo_copy(root, repo, tag, tmp_path / f"copy-{tag}")


def test_children_left_out_by_platforms_are_expected(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = f"{REPO}/platforms"
    image = make_index((tmp_path.name, "platforms"), layers=1)
    push_image(registry.url, repo, "multi", image)
    root, config = _mirror(registry, tmp_path, platforms=["linux/amd64"])
    kept = image.children[0]
    assert not blob_path(root, repo, image.children[1].digest).exists()
    assert run_check(config, "--deep").code == 0

    blob_path(root, repo, kept.digest).unlink()
    broken = run_check(config)
    assert broken.code == 1
    assert f"manifest {kept.digest} absent" in broken.stdout, broken.output


def test_a_repair_the_upstream_cannot_serve_fails_and_names_the_cause(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo, image, config = _mirror_broken(registry, tmp_path, "orphan")
    url = f"{registry.url}/v2/{repo}/manifests/{image.digest}"
    assert requests.delete(url, timeout=10).status_code == 202

    run = run_check(config, "--repair")
    assert run.code == 1, run.output
    assert f"NOT REPAIRED {repo}:v1: not repaired: the upstream {repo} no longer has it" in (
        run.stdout
    ), run.output
    assert f"STILL BROKEN {repo}:v1" in run.stdout


def test_registry_option_checks_only_what_that_registry_mirrors(
    registry: RegistryServer, tmp_path: Path
) -> None:
    images = {name: make_image((tmp_path.name, name), layers=1) for name in ("one", "two")}
    root, config = _mirror_apart(registry, tmp_path, images)
    for name, image in images.items():
        blob_path(root, f"{REPO}/{name}/app", image.blobs[-1].digest).unlink()

    one = run_check(config, "-r", "one")
    assert one.code == 1, one.output
    assert f"BROKEN {REPO}/one/app:v1 " in one.stdout and "/two/" not in one.stdout
    assert "1 repository," in one.stdout
    unknown = run_check(config, "-r", "three")
    assert unknown.code == 2 and "three" in unknown.stderr, unknown.output


def test_the_claim_names_the_source_when_the_rules_no_longer_do(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo, _, config = _mirror_broken(registry, tmp_path, "claimed", name="up")
    doc = yaml.safe_load(config.read_text())
    doc["extensions"]["sync"]["registries"][0]["content"] = [{"prefix": "elsewhere/**"}]
    config.write_text(yaml.safe_dump(doc))

    repaired = run_check(config, "--repair")
    assert repaired.code == 0, repaired.output
    assert f"REPAIRED {repo}:v1" in repaired.stdout


def test_a_layer_damaged_where_repositories_share_it_is_fetched_not_linked(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """On a directory, repositories share a layer's file (hard links): bytes damaged in place
    are damaged in all of them, so a repair must fetch it, never link another holder's."""
    shared = make_layer((tmp_path.name, "shared"), size=256 * 1024)
    images = {name: make_image((tmp_path.name, name), base=[shared]) for name in ("one", "two")}
    root, config = _mirror_apart(registry, tmp_path, images)
    path = blob_path(root, f"{REPO}/one/app", shared.digest)
    assert path.stat().st_nlink == 2
    with path.open("r+b") as damaged:  # in place: both repositories see it
        damaged.seek(1000)
        damaged.write(b"\0" * 16)

    # Repairing the second alone: the first still holds the damaged file under the name.
    two = run_check(config, "--deep", "--repair", "-r", "two")
    assert two.code == 0, two.output
    one = run_check(config, "--deep", "-r", "one")
    assert one.code == 1 and f"blob {shared.digest} corrupt" in one.stdout, one.output
    assert run_check(config, "--deep", "--repair").code == 0
    check_store(root)


def test_a_repair_acting_on_a_stale_check_never_deletes_a_blob_made_whole_since(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """Two repairs of one damage (a redelivered ``check_repo``, or a second command) each
    check without the lock: the second, once it holds the lock, finds the layer whole again
    and keeps it, so an upstream that no longer serves it costs the tree nothing."""
    repo = f"{REPO}/twice"
    image = make_image((tmp_path.name, "twice"), layers=1)
    push_image(registry.url, repo, "v1", image)
    root, config = _mirror(registry, tmp_path)
    layer = blob_path(root, repo, image.blobs[-1].digest)
    corrupt(layer)
    with Runtime.open(load_config(config)) as runtime, checker(runtime.mirror, deep=True) as trees:
        stale = trees.check_repo(repo)
        assert [str(d.digest) for t in stale.broken for d in t.damage] == [image.blobs[-1].digest]
        assert runtime.mirror.repair(repo, stale.broken).ok  # the first repair
        url = f"{registry.url}/v2/{repo}/manifests/{image.digest}"
        assert requests.delete(url, timeout=10).status_code == 202
        second = runtime.mirror.repair(repo, stale.broken)
        assert not second.ok  # the upstream no longer has the image to walk
        assert layer.exists()
        assert trees.check_repo(repo).ok


def test_a_tree_several_entries_list_is_checked_and_repaired_once(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """An index synced by digest, then tagged ``v1`` and ``v2`` and its first child
    ``v1-amd64``: ``index.json`` lists the index three times. One broken layer of that
    child is one broken tree naming every entry of the index, and one naming the child's
    tag; the repair GETs each manifest of them from the upstream once, and skopeo reads
    the repaired image by tag."""
    repo = f"{REPO}/entries"
    image = make_index((tmp_path.name, "entries"), layers=1)
    child = image.children[0]
    for tag in ("v1", "v2"):
        push_image(registry.url, repo, tag, image)
    push_image(registry.url, repo, "v1-amd64", child)
    root = tmp_path / "store"
    registries = [{"urls": [registry.url], "content": [{"prefix": repo}]}]
    config = write_sync_config(tmp_path, root, registries)
    loaded = load_config(config)
    with build_mirror(loaded, store_for(loaded), LocalLocks()) as mirror:
        assert mirror.sync_image(registry.host, repo, image.digest).ok
    assert run_sync(config).code == 0
    blob_path(root, repo, child.blobs[-1].digest).unlink()

    found = run_check(config)
    assert found.code == 1, found.output
    index = f"{repo}:v1, {repo}:v2, {repo}@{image.digest}"
    assert f"BROKEN {index} ({image.digest}): blob " in found.stdout, found.output
    assert f"BROKEN {repo}:v1-amd64 ({child.digest}): " in found.stdout, found.output
    assert found.stdout.count("BROKEN ") == 2, found.output
    assert "1 repository, 2 trees, " in found.stdout, found.output
    assert ": 2 broken" in found.stdout, found.output

    gets = registry.request_count(handler="manifest", method="get")
    repaired = run_check(config, "--repair")
    assert repaired.code == 0, repaired.output
    assert f"REPAIRED {index}\n" in repaired.stdout, repaired.output
    manifests = 1 + len(image.children)
    assert registry.request_count(handler="manifest", method="get") - gets == manifests
    check_store(root)
    # docs/STORE.md: skopeo reads it by tag; without one it cannot choose among the entries.
    skopeo_copy(root, repo, "v2", tmp_path / "copy")
    untold = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{root}/{repo}"],
        capture_output=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )
    assert b"more than one image in oci" in untold.stderr, untold
