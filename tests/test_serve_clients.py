"""``syncworker serve`` read by clients we did not write: a Debian ``docker-registry`` in
proxy mode pulling through it (verifying digests as it goes), ``oras`` reading a
referrer, skopeo over TLS with Basic auth; and the S3 store, streamed or redirected."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml
from oras.provider import Registry as OrasRegistry

from tests.support.corpus import Corpus
from tests.support.mirror import run_sync, write_sync_config
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import S3Server, s3_server
from tests.support.serve_server import ServeProcess
from tests.support.tls import TlsMaterial
from tests.test_serve import mirror_of, skopeo_digest

__all__ = ["s3_server"]  # the session fixture, imported for pytest

Seeded = tuple[RegistryServer, Corpus]


def test_a_registry_in_proxy_mode_pulls_through_serve(
    seeded_registry: Seeded, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    _, corpus = seeded_registry
    with ServeProcess(mirror_of(seeded_registry, tmp_path)) as serve:
        proxy = make_registry(proxy=serve.url)
        for name in ("alpine_3.19", "docker_image", "oci_index"):
            pushed = corpus[name]
            copied = skopeo_digest(proxy.host, pushed.repo, str(pushed.tag), tmp_path / name)
            assert copied == pushed.digest, name


def test_the_proxy_check_fails_through_a_registry_lacking_the_image(
    seeded_registry: Seeded, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """The check above can fail: a proxy of an empty registry serves nothing of it."""
    _, corpus = seeded_registry
    proxy = make_registry(proxy=make_registry().url)
    pushed = corpus["alpine_3.19"]
    url = f"{proxy.url}/v2/{pushed.repo}/manifests/{pushed.tag}"
    assert requests.get(url, timeout=30).status_code == 404


def test_oras_reads_a_referrer(seeded_registry: Seeded, tmp_path: Path) -> None:
    _, corpus = seeded_registry
    subject, sbom = corpus["alpine_3.19"], corpus["sbom"]
    with ServeProcess(mirror_of(seeded_registry, tmp_path)) as serve:
        listed = requests.get(
            f"{serve.url}/v2/library/alpine/referrers/{subject.digest}", timeout=30
        ).json()["manifests"]
        found = next(d for d in listed if d["artifactType"] == sbom.manifest.artifact_type)
        oras = OrasRegistry(hostname=serve.host, insecure=True)
        manifest = oras.get_manifest(f"{serve.host}/library/alpine@{found['digest']}")
        assert manifest["subject"]["digest"] == subject.digest
        layer = manifest["layers"][0]
        blob = oras.get_blob(f"{serve.host}/library/alpine", layer["digest"])
        assert hashlib.sha256(blob.content).hexdigest() == layer["digest"].split(":")[1]
        assert blob.content == sbom.manifest.blobs[-1].data


def test_the_oras_check_fails_on_a_registry_without_the_referrer(
    seeded_registry: Seeded, make_registry: Callable[..., RegistryServer]
) -> None:
    """The check above can fail: oras finds no such manifest on a registry lacking it."""
    _, corpus = seeded_registry
    empty = make_registry()
    oras = OrasRegistry(hostname=empty.host, insecure=True)
    with pytest.raises(Exception, match="404|not found|Not Found|MANIFEST_UNKNOWN|NAME_UNKNOWN"):
        oras.get_manifest(f"{empty.host}/library/alpine@{corpus['sbom'].digest}")


def test_tls_and_htpasswd(seeded_registry: Seeded, tls_certs: TlsMaterial, tmp_path: Path) -> None:
    _, corpus = seeded_registry
    config = mirror_of(seeded_registry, tmp_path)
    htpasswd = tmp_path / "htpasswd"
    made = subprocess.run(
        ["htpasswd", "-Bbn", "reader", "s3cret-pass"], capture_output=True, text=True, check=True
    )
    htpasswd.write_text(made.stdout)
    doc = yaml.safe_load(config.read_text())
    doc["syncworker"] = {
        "serve": {
            "htpasswd": str(htpasswd),
            "tls": {"certificate": str(tls_certs.server_cert), "key": str(tls_certs.server_key)},
        }
    }
    config.write_text(yaml.safe_dump(doc))
    pushed = corpus["alpine_3.19"]
    with ServeProcess(config, tls=True) as serve:
        url = f"{serve.url}/v2/{pushed.repo}/manifests/{pushed.tag}"
        anonymous = requests.get(url, verify=str(tls_certs.ca_cert), timeout=30)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
        wrong = requests.get(url, auth=("reader", "nope"), verify=str(tls_certs.ca_cert))
        assert wrong.status_code == 401
        done = subprocess.run(
            ["skopeo", "inspect", "--raw", "--creds", "reader:s3cret-pass",
             "--cert-dir", str(tls_certs.cert_dir), f"docker://{serve.host}/{pushed.repo}:{pushed.tag}"],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == pushed.manifest.raw
        assert "s3cret-pass" not in serve.output()


def s3_config(seeded: Seeded, s3: S3Server, directory: Path, redirect: bool) -> Path:
    registry, _ = seeded
    directory.mkdir()
    config = write_sync_config(directory, directory / "unused", [{"urls": [registry.url]}])
    doc = yaml.safe_load(config.read_text())
    doc["storage"]["storageDriver"] = s3.driver(s3.new_bucket())
    if redirect:
        doc["storage"]["redirect"] = {"disable": False}
    config.write_text(yaml.safe_dump(doc))
    run = run_sync(config)
    assert run.code == 0, run.output
    return config


def test_s3_blobs_streamed_or_redirected(
    seeded_registry: Seeded, s3_server: S3Server, tmp_path: Path
) -> None:
    _, corpus = seeded_registry
    layer = corpus["alpine_3.19"].manifest.blobs[-1]
    for redirect in (False, True):
        config = s3_config(seeded_registry, s3_server, tmp_path / str(redirect), redirect)
        with ServeProcess(config) as serve:
            url = f"{serve.url}/v2/library/alpine/blobs/{layer.digest}"
            first = requests.get(url, allow_redirects=False, timeout=30)
            assert first.status_code == (307 if redirect else 200)
            if redirect:
                assert first.headers["Location"].startswith(s3_server.endpoint)
            assert requests.get(url, timeout=30).content == layer.data
            part = requests.get(url, headers={"Range": "bytes=2-5"}, timeout=30)
            assert part.content == layer.data[2:6]
            pushed = corpus["docker_image"]
            copied = skopeo_digest(serve.host, pushed.repo, "latest", tmp_path / f"c{redirect}")
            assert copied == pushed.digest
