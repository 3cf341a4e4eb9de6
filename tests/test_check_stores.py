"""``syncworker check`` on the other stores: S3 (moto) and a registry destination (HEAD
there), damaged through their own APIs; ``--repair`` makes them whole and skopeo reads them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import requests
import yaml

from tests.support.images import make_image, make_index
from tests.support.mirror import SKOPEO_READABLE, SKOPEO_TIMEOUT, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import S3Server, s3_server
from tests.test_check import run_check, skopeo_copy
from tests.test_store_s3_mirror import download

__all__ = ["s3_server"]  # the session fixture, imported for pytest

REPO = "check/stores"


def _config(tmp_path: Path, registry: RegistryServer, **settings: object) -> Path:
    registries = [{"urls": [registry.url], "content": [{"prefix": f"{REPO}/**"}]}]
    return write_sync_config(
        tmp_path, tmp_path / "store", registries, settings={**SKOPEO_READABLE, **settings}
    )


def test_check_and_repair_an_s3_store(
    registry: RegistryServer, s3_server: S3Server, tmp_path: Path
) -> None:
    repo = f"{REPO}/s3"
    single = make_image((tmp_path.name, "single"), layers=2)
    multi = make_index((tmp_path.name, "multi"), layers=1)
    push_image(registry.url, repo, "single", single)
    push_image(registry.url, repo, "multi", multi)
    bucket = s3_server.new_bucket()
    try:
        config = _config(tmp_path, registry)
        doc = yaml.safe_load(config.read_text())
        doc["storage"] = {"rootDirectory": "/m", "storageDriver": s3_server.driver(bucket, "/m")}
        config.write_text(yaml.safe_dump(doc))
        assert run_sync(config).code == 0
        assert run_check(config, "--deep").code == 0

        s3 = s3_server.client()
        layer = single.blobs[-1]
        key = f"m/{repo}/blobs/sha256/{layer.digest.partition(':')[2]}"
        data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        data[0] ^= 0xFF
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
        child = multi.children[0].digest
        s3.delete_object(Bucket=bucket, Key=f"m/{repo}/blobs/sha256/{child.partition(':')[2]}")

        broken = run_check(config, "--deep")
        assert broken.code == 1, broken.output
        assert f"{repo}:single ({single.digest}): blob {layer.digest} corrupt" in broken.stdout
        assert f"{repo}:multi ({multi.digest}): manifest {child} absent" in broken.stdout

        repaired = run_check(config, "--deep", "--repair")
        assert repaired.code == 0, repaired.output
        assert run_check(config, "--deep").code == 0
        copy = tmp_path / "from-s3"
        download(s3_server, bucket, "m/", copy)
        for tag in ("single", "multi"):
            skopeo_copy(copy, repo, tag, tmp_path / f"copy-{tag}")
    finally:
        s3_server.drop(bucket)


def _skopeo_copy_docker(server: RegistryServer, repo: str, tag: str, dest: Path) -> None:
    done = subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--src-tls-verify=false",
            f"docker://{server.host}/{repo}:{tag}",
            f"dir:{dest}",
        ],
        capture_output=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"skopeo cannot copy {repo}:{tag}: {done.stderr.decode()}"


def test_check_and_repair_a_registry_destination(
    registry: RegistryServer,
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
) -> None:
    dest = make_registry()
    repo = f"{REPO}/dest"
    single = make_image((tmp_path.name, "single"), layers=2)
    multi = make_index((tmp_path.name, "multi"), layers=1)
    push_image(registry.url, repo, "single", single)
    push_image(registry.url, repo, "multi", multi)
    config = _config(tmp_path, registry, destination={"url": dest.url})
    assert run_sync(config).code == 0
    assert run_check(config).code == 0

    layer = single.blobs[-1].digest
    deleted = requests.delete(f"{dest.url}/v2/{repo}/blobs/{layer}", timeout=10)
    assert deleted.status_code == 202, deleted.text
    child = multi.children[1].digest
    deleted = requests.delete(f"{dest.url}/v2/{repo}/manifests/{child}", timeout=10)
    assert deleted.status_code == 202, deleted.text

    broken = run_check(config)
    assert broken.code == 1, broken.output
    assert f"{repo}:single ({single.digest}): blob {layer} absent" in broken.stdout
    assert f"{repo}:multi ({multi.digest}): manifest {child} absent" in broken.stdout

    repaired = run_check(config, "--repair")
    assert repaired.code == 0, repaired.output
    assert run_check(config, "--deep").code == 0
    for tag in ("single", "multi"):
        _skopeo_copy_docker(dest, repo, tag, tmp_path / f"copy-{tag}")
