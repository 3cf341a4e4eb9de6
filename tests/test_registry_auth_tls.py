"""The registry client against real bearer-token and TLS registries from the fixtures."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syncworker.errors import RegistryError, TransportError
from syncworker.oci import Digest
from syncworker.oci.mediatypes import OCI_MANIFEST
from syncworker.registry import ClientOptions, Credentials, RegistryClient
from tests.support.images import make_image
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.tls import TlsMaterial
from tests.support.token_issuer import TokenIssuer

OPTIONS = ClientOptions(max_retries=1, retry_delay=0.01, timeout=10.0)
USER, PASSWORD = "alice", "w0nderland-secret"


@pytest.fixture
def token_registry(
    make_token_issuer: Callable[..., TokenIssuer], make_registry: Callable[..., RegistryServer]
) -> tuple[RegistryServer, TokenIssuer]:
    issuer = make_token_issuer(users={USER: PASSWORD}, anonymous_pull=True)
    return make_registry(token_auth=issuer), issuer


def test_bearer_push_and_pull_with_credentials(
    token_registry: tuple[RegistryServer, TokenIssuer],
) -> None:
    server, issuer = token_registry
    image = make_image("bearer-client")
    push_image(server.url, "team/app", "v1", image, auth=(USER, PASSWORD))
    issued_to_the_pusher = issuer.issued_to[USER]
    with RegistryClient([server.url], Credentials(USER, PASSWORD), OPTIONS) as client:
        client.ping()
        for _ in range(5):
            assert client.head_manifest("team/app", "v1").digest == Digest.parse(image.digest)
        assert client.tags("team/app") == ["v1"]
        assert "team/app" in list(client.catalog())
    # ping, pull, catalog: one token per scope, reused afterwards.
    assert issuer.issued_to[USER] - issued_to_the_pusher == 3


def test_bearer_anonymous_pull(token_registry: tuple[RegistryServer, TokenIssuer]) -> None:
    server, issuer = token_registry
    image = make_image("bearer-anonymous")
    push_image(server.url, "pub/app", "v1", image, auth=(USER, PASSWORD))
    with RegistryClient([server.url], options=OPTIONS) as client:
        raw, manifest = client.get_manifest("pub/app", "v1")
        assert raw == image.raw and manifest.media_type == OCI_MANIFEST
    assert issuer.issued_to[None] >= 1


def test_bearer_wrong_password_names_no_secret(
    token_registry: tuple[RegistryServer, TokenIssuer],
) -> None:
    server, _ = token_registry
    wrong = Credentials(USER, "not-" + PASSWORD)
    with RegistryClient([server.url], wrong, OPTIONS) as client:
        with pytest.raises(RegistryError) as caught:
            client.tags("team/app")
        assert client.stats.snapshot().retries == 0
    assert caught.value.status == 401
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(wrong)


def test_tls_with_cert_dir(
    make_registry: Callable[..., RegistryServer], tls_certs: TlsMaterial
) -> None:
    server = make_registry(tls=tls_certs.server)
    assert server.url.startswith("https://")
    image = make_image("tls-client")
    options = ClientOptions(cert_dir=str(tls_certs.cert_dir), max_retries=0)
    push_image(server.url, "tls/app", "v1", image, verify=str(tls_certs.cert_dir / "ca.crt"))
    with RegistryClient([server.url], options=options) as client:
        assert client.get_manifest("tls/app", "v1")[0] == image.raw
    untrusting = RegistryClient([server.url], options=ClientOptions(max_retries=0))
    with untrusting, pytest.raises(TransportError, match="SSLError"):
        untrusting.ping()
    insecure = ClientOptions(tls_verify=False, max_retries=0)
    with RegistryClient([server.url], options=insecure) as client:
        assert client.tags("tls/app") == ["v1"]


def test_tls_verify_off_also_reaches_a_plain_http_upstream(registry: RegistryServer) -> None:
    """zot configs often set tlsVerify: false on every entry, plain-HTTP ones included: the
    client must not hand TLS-only settings to a plain-HTTP connection."""
    push_image(registry.url, "tlsoff/app", "v1", make_image("tls-off-plain"))
    insecure = ClientOptions(tls_verify=False, max_retries=0)
    with RegistryClient([registry.url], options=insecure) as client:
        assert client.tags("tlsoff/app") == ["v1"]


def test_a_refusal_says_whether_a_login_was_configured(
    make_registry: Callable[..., RegistryServer],
) -> None:
    """A wrong password and a missing login get the same 401: the error tells them apart."""
    server = make_registry(htpasswd=(USER, PASSWORD))
    messages: dict[str, str] = {}
    for name, login in (("none", None), ("wrong", Credentials(USER, "not-" + PASSWORD))):
        with (
            RegistryClient([server.url], login, OPTIONS) as client,
            pytest.raises(RegistryError) as caught,
        ):
            client.tags("team/app")
        assert caught.value.status == 401
        messages[name] = str(caught.value)
    assert "no login is configured for this registry" in messages["none"]
    assert "the login configured for this registry was refused" in messages["wrong"]
    assert PASSWORD not in messages["wrong"]
