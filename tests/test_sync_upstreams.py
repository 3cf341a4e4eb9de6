"""``syncworker sync`` against real upstreams that need something of the client: basic auth
(zot credentials file, docker config.json), bearer tokens, TLS with a private CA, and URL
failover. Each run must mirror the exact upstream digests and print no secret anywhere."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.client import registry_session
from tests.support.images import Manifest, make_image, make_index
from tests.support.mirror import (
    SKOPEO_READABLE,
    SyncRun,
    assert_no_secret,
    check_store,
    mirrored_digest,
    run_sync,
    sync_in_subprocess,
    write_sync_config,
)
from tests.support.ports import LOOPBACK, free_port
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import SECRET_KEY, S3Server, s3_server
from tests.support.tls import TlsMaterial
from tests.support.token_issuer import TokenIssuer

__all__ = ["s3_server"]  # the session fixture, imported for pytest

USER, PASSWORD = "mirror-bot", "pa55-w0rd-never-printed"


# skopeo 1.9 (which _assert_mirrored reads with) skips index.json entries of Docker types.


def _images(seed: str) -> dict[tuple[str, str], Manifest]:
    """A nested-name OCI image and a Docker manifest list: (repo, tag) -> image."""
    return {
        ("team/app", "v1"): make_image((seed, "app")),
        ("multi/list", "latest"): make_index((seed, "list"), fmt="docker"),
    }


def _push_all(
    url: str, images: dict[tuple[str, str], Manifest], *, verify: bool | str = True
) -> None:
    for (repo, tag), image in images.items():
        push_image(url, repo, tag, image, auth=(USER, PASSWORD), verify=verify)


def _assert_mirrored(root: Path, images: dict[tuple[str, str], Manifest]) -> None:
    for (repo, tag), image in images.items():
        assert mirrored_digest(root, repo, tag) == image.digest, f"{repo}:{tag}"
    check_store(root)


def _sync(config: Path, caplog: pytest.LogCaptureFixture) -> SyncRun:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    return run_sync(config)


def _basic_header() -> str:
    return base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


# -- basic auth ------------------------------------------------------------------------


def test_basic_auth_with_credentials_file(
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
    tmp_store_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_registry(htpasswd=(USER, PASSWORD))
    images = _images("basic-file")
    _push_all(server.url, images)
    credentials = {server.host: {"username": USER, "password": PASSWORD}}
    config = write_sync_config(
        tmp_path,
        tmp_store_root,
        [{"urls": [server.url]}],
        credentials=credentials,
        settings=SKOPEO_READABLE,
    )
    run = _sync(config, caplog)
    assert run.code == 0, run.output
    assert "0 failures" in run.stdout
    _assert_mirrored(tmp_store_root, images)
    assert_no_secret([run.output, caplog.text], PASSWORD, _basic_header())


def test_basic_auth_without_credentials_fails_naming_the_registry(
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
    tmp_store_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_registry(htpasswd=(USER, PASSWORD))
    _push_all(server.url, _images("basic-none"))
    config = write_sync_config(tmp_path, tmp_store_root, [{"urls": [server.url]}])
    run = _sync(config, caplog)
    assert run.code == 1, run.output
    assert server.host in run.stdout and "401" in run.stdout
    assert check_store(tmp_store_root) == {}


def test_basic_auth_from_docker_config(
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
    tmp_store_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_registry(htpasswd=(USER, PASSWORD))
    images = _images("basic-docker")
    _push_all(server.url, images)
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    auths = {"auths": {server.host: {"auth": _basic_header()}}}
    (docker_dir / "config.json").write_text(json.dumps(auths), encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    config = write_sync_config(
        tmp_path, tmp_store_root, [{"urls": [server.url]}], settings=SKOPEO_READABLE
    )
    run = _sync(config, caplog)
    assert run.code == 0, run.output
    _assert_mirrored(tmp_store_root, images)
    assert_no_secret([run.output, caplog.text], PASSWORD, _basic_header())


# -- bearer tokens ---------------------------------------------------------------------


def test_bearer_token_upstream(
    make_token_issuer: Callable[..., TokenIssuer],
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
    tmp_store_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    issuer = make_token_issuer(users={USER: PASSWORD}, anonymous_pull=False)
    server = make_registry(token_auth=issuer)
    images = _images("bearer")
    _push_all(server.url, images)
    pushed = issuer.tokens_issued
    credentials = {server.host: {"username": USER, "password": PASSWORD}}
    config = write_sync_config(
        tmp_path,
        tmp_store_root,
        [{"urls": [server.url]}],
        credentials=credentials,
        settings=SKOPEO_READABLE,
    )
    run = _sync(config, caplog)
    assert run.code == 0, run.output
    _assert_mirrored(tmp_store_root, images)
    tokens = issuer.tokens[pushed:]
    assert tokens, "the mirror never asked the token issuer"
    # A JWT's signature part alone is as secret as the whole token.
    secrets = [PASSWORD, _basic_header(), *tokens, *(t.rsplit(".", 1)[1] for t in tokens)]
    assert_no_secret([run.output, caplog.text], *secrets)


# -- TLS -------------------------------------------------------------------------------


def test_tls_upstream_with_cert_dir(
    make_registry: Callable[..., RegistryServer],
    tls_certs: TlsMaterial,
    tmp_path: Path,
    tmp_store_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_registry(tls=tls_certs.server)
    images = _images("tls")
    _push_all(server.url, images, verify=str(tls_certs.ca_cert))
    entry = {"urls": [server.url], "tlsVerify": True, "certDir": str(tls_certs.cert_dir)}
    config = write_sync_config(tmp_path, tmp_store_root, [entry], settings=SKOPEO_READABLE)
    run = _sync(config, caplog)
    assert run.code == 0, run.output
    _assert_mirrored(tmp_store_root, images)


def test_tls_upstream_without_cert_dir_fails_clearly(
    make_registry: Callable[..., RegistryServer],
    tls_certs: TlsMaterial,
    tmp_path: Path,
    tmp_store_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_registry(tls=tls_certs.server)
    _push_all(server.url, _images("tls-untrusted"), verify=str(tls_certs.ca_cert))
    config = write_sync_config(
        tmp_path, tmp_store_root, [{"urls": [server.url], "tlsVerify": True}]
    )
    run = _sync(config, caplog)
    assert run.code == 1, run.output
    failed = [line for line in run.stdout.splitlines() if "FAILED" in line]
    assert failed, run.output
    assert server.host in failed[0]
    assert any(word in failed[0] for word in ("SSL", "TLS", "certificate")), failed[0]
    assert check_store(tmp_store_root) == {}


def test_mutual_tls_upstream_gets_the_client_cert_from_cert_dir(
    make_registry: Callable[..., RegistryServer],
    tls_certs: TlsMaterial,
    tmp_path: Path,
    tmp_store_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_registry(tls=tls_certs.server, client_ca=tls_certs.ca_cert)
    images = _images("mtls")
    with registry_session(verify=str(tls_certs.ca_cert)) as session:
        session.cert = (str(tls_certs.client_cert), str(tls_certs.client_key))
        for (repo, tag), image in images.items():
            push_image(server.url, repo, tag, image, session=session)
    entry = {"urls": [server.url], "tlsVerify": True, "certDir": str(tls_certs.cert_dir)}
    config = write_sync_config(tmp_path, tmp_store_root, [entry], settings=SKOPEO_READABLE)
    run = _sync(config, caplog)
    assert run.code == 0, run.output
    _assert_mirrored(tmp_store_root, images)
    key = tls_certs.client_key.read_text().strip().splitlines()[1]
    assert_no_secret([run.output, caplog.text], key)


# -- failover --------------------------------------------------------------------------


def test_failover_to_the_second_url(
    registry: RegistryServer,
    tmp_path: Path,
    tmp_store_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = make_image("failover")
    push_image(registry.url, "failover/app", "v1", image)
    dead = f"http://{LOOPBACK}:{free_port()}"
    entry = {"urls": [dead, registry.url], "content": [{"prefix": "failover/**"}]}
    config = write_sync_config(tmp_path, tmp_store_root, [entry])
    run = _sync(config, caplog)
    assert run.code == 0, run.output
    assert mirrored_digest(tmp_store_root, "failover/app", "v1") == image.digest
    assert set(check_store(tmp_store_root)) == {"failover/app"}


# -- where credentials may not go ------------------------------------------------------


def test_token_realm_over_plain_http_for_an_https_upstream_is_refused(
    make_token_issuer: Callable[..., TokenIssuer],
    make_registry: Callable[..., RegistryServer],
    tls_certs: TlsMaterial,
    tmp_path: Path,
    tmp_store_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The registry is https, its realm http: the login would cross in the clear."""
    issuer = make_token_issuer(users={USER: PASSWORD}, anonymous_pull=False)
    assert issuer.realm.startswith("http://")
    server = make_registry(tls=tls_certs.server, token_auth=issuer)
    _push_all(server.url, _images("downgrade"), verify=str(tls_certs.ca_cert))
    issued_before = issuer.tokens_issued
    entry = {"urls": [server.url], "certDir": str(tls_certs.cert_dir)}
    credentials = {server.host: {"username": USER, "password": PASSWORD}}
    config = write_sync_config(tmp_path, tmp_store_root, [entry], credentials=credentials)
    run = _sync(config, caplog)
    assert run.code == 1, run.output
    assert "plain http" in run.stdout, run.stdout
    assert issuer.tokens_issued == issued_before and issuer.rejected == 0
    assert_no_secret([run.output, caplog.text], PASSWORD, _basic_header())


def test_no_secret_at_vv_in_a_subprocess_with_s3(
    make_registry: Callable[..., RegistryServer],
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    """``-vv`` is DEBUG for syncworker, but botocore's and urllib3's DEBUG lines (signed
    headers, presigned queries) stay out: those loggers are kept at INFO."""
    server = make_registry(htpasswd=(USER, PASSWORD))
    images = _images("vv")
    _push_all(server.url, images)
    credentials = {server.host: {"username": USER, "password": PASSWORD}}
    driver = s3_server.driver(s3_server.new_bucket(), "/mirror")
    config = write_sync_config(
        tmp_path, Path("/mirror"), [{"urls": [server.url]}], credentials=credentials,
        storage_driver=driver,
    )  # fmt: skip
    output = sync_in_subprocess(config, "-vv")
    secrets = [PASSWORD, _basic_header(), SECRET_KEY, "AWS4-HMAC-SHA256", "Signature="]
    assert_no_secret([output], *secrets)
