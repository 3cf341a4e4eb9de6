"""Token-auth and TLS registries from the fixtures work with skopeo and the test pusher."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.images import make_image
from tests.support.ports import wait_until
from tests.support.push import PushError, push_image
from tests.support.registry_server import RegistryServer
from tests.support.tls import TlsMaterial
from tests.support.token_issuer import REGISTRY_LEEWAY, TokenIssuer, parse_scope

SKOPEO_TIMEOUT = 60


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=SKOPEO_TIMEOUT, check=False
    )


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_token_registry_with_skopeo_creds(
    make_token_issuer: Callable[..., TokenIssuer],
    make_registry: Callable[..., RegistryServer],
    algorithm: str,
) -> None:
    issuer = make_token_issuer(users={"alice": "wonderland"}, algorithm=algorithm)
    server = make_registry(token_auth=issuer)
    image = make_image(("token", algorithm))
    push_image(server.url, "team/app", "v1", image, auth=("alice", "wonderland"))
    ref = f"docker://{server.host}/team/app:v1"
    result = skopeo("inspect", "--tls-verify=false", "--creds", "alice:wonderland", ref)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Digest"] == image.digest
    assert issuer.issued_to["alice"] >= 2
    pushes = [parse_scope(s) for s in issuer.scopes_requested]
    assert any(p and p[1] == "team/app" and "push" in p[2] for p in pushes)


def test_token_registry_anonymous_pull_only(
    make_token_issuer: Callable[..., TokenIssuer],
    make_registry: Callable[..., RegistryServer],
) -> None:
    issuer = make_token_issuer(users={"alice": "wonderland"}, anonymous_pull=True)
    server = make_registry(token_auth=issuer)
    push_image(server.url, "pub/app", "v1", make_image("anon"), auth=("alice", "wonderland"))
    result = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{server.host}/pub/app:v1")
    assert result.returncode == 0, result.stderr
    assert issuer.issued_to[None] >= 1
    with pytest.raises(PushError, match="401"):
        push_image(server.url, "pub/app", "v2", make_image("anon-push"))


def test_token_issuer_rejects_wrong_password(
    make_token_issuer: Callable[..., TokenIssuer],
) -> None:
    issuer = make_token_issuer(users={"alice": "wonderland"})
    response = requests.get(
        issuer.realm, params={"scope": "repository:a:pull"}, auth=("alice", "nope"), timeout=30
    )
    assert response.status_code == 401
    assert "wonderland" not in response.text
    assert issuer.rejected == 1 and issuer.tokens_issued == 0


def test_token_response_fields_and_expiry(
    make_token_issuer: Callable[..., TokenIssuer],
) -> None:
    issuer = make_token_issuer(users={"alice": "wonderland"}, expires_in=2)
    body: dict[str, Any] = requests.get(
        issuer.realm,
        params={"service": issuer.service, "scope": "repository:a/b:pull,push"},
        auth=("alice", "wonderland"),
        timeout=30,
    ).json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["expires_in"] == 2
    assert body["token"] == body["access_token"]


def test_registry_rejects_a_token_once_past_its_lifetime(
    make_token_issuer: Callable[..., TokenIssuer],
    make_registry: Callable[..., RegistryServer],
) -> None:
    # exp + REGISTRY_LEEWAY is 2 s ahead: accepted now, refused once that has passed.
    issuer = make_token_issuer(users={"alice": "wonderland"}, jwt_lifetime=2 - REGISTRY_LEEWAY)
    server = make_registry(token_auth=issuer)
    token = requests.get(
        issuer.realm, params={"service": issuer.service}, auth=("alice", "wonderland"), timeout=30
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{server.url}/v2/", headers=headers, timeout=30).status_code == 200
    refused = wait_until(
        lambda: requests.get(f"{server.url}/v2/", headers=headers, timeout=30).status_code == 401,
        timeout=30,
        interval=0.5,
    )
    assert refused


def test_parse_scope_keeps_port_in_name() -> None:
    assert parse_scope("repository:127.0.0.1:5000/a:pull,push") == (
        "repository",
        "127.0.0.1:5000/a",
        ["pull", "push"],
    )
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ["*"])


def test_tls_registry_with_cert_dir(
    tls_certs: TlsMaterial, make_registry: Callable[..., RegistryServer]
) -> None:
    server = make_registry(tls=tls_certs.server)
    assert server.url.startswith("https://")
    image = make_image("tls")
    push_image(server.url, "secure/app", "v1", image, verify=str(tls_certs.ca_cert))
    ref = f"docker://{server.host}/secure/app:v1"
    result = skopeo("inspect", "--cert-dir", str(tls_certs.cert_dir), ref)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Digest"] == image.digest
    assert {p.name for p in tls_certs.cert_dir.iterdir()} == {"ca.crt", "client.cert", "client.key"}


def test_tls_registry_refuses_unknown_ca(
    tls_certs: TlsMaterial, make_registry: Callable[..., RegistryServer]
) -> None:
    server = make_registry(tls=tls_certs.server)
    result = skopeo("inspect", f"docker://{server.host}/secure/app:v1")
    assert result.returncode != 0
    assert "certificate" in result.stderr


def test_mutual_tls_needs_the_client_cert_from_cert_dir(
    tls_certs: TlsMaterial, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    server = make_registry(tls=tls_certs.server, client_ca=tls_certs.ca_cert)
    ref = f"docker://{server.host}/secure/none:v1"
    with_client = skopeo("inspect", "--cert-dir", str(tls_certs.cert_dir), ref)
    assert "manifest unknown" in with_client.stderr  # TLS and HTTP worked; repo is empty
    ca_only = tmp_path / "ca-only"
    ca_only.mkdir()
    (ca_only / "ca.crt").write_bytes(tls_certs.ca_cert.read_bytes())
    without_client = skopeo("inspect", "--cert-dir", str(ca_only), ref)
    assert without_client.returncode != 0
    assert "manifest unknown" not in without_client.stderr
