"""zot's ``credentialHelper: ecr`` against moto's ECR: the password it hands out opens a
real registry (htpasswd ``AWS`` / moto's token), it is renewed an hour before it expires
and not asked for on every request, and a failing AWS is named without secrets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from syncworker.config import load_config
from syncworker.config.credentials import ECR_MIN_REUSE, ECR_RENEW_BEFORE, EcrLogin
from syncworker.errors import TransportError
from syncworker.registry.auth import Credentials
from syncworker.retry import classify
from tests.support.corpus import seed_many
from tests.support.mirror import assert_no_secret, layout_tags, run_sync, write_sync_config
from tests.support.ports import free_port
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server

__all__ = ["s3_server"]  # moto's server (every service, ECR too), imported for pytest

# moto's default account, and the password its GetAuthorizationToken hands out for it.
# One xdist worker runs this module's tests (scripts/test.sh: --dist loadgroup), so its
# module-scoped registry with htpasswd starts once, not once per worker.
pytestmark = pytest.mark.xdist_group("test_ecr_credentials")

ACCOUNT = "123456789012"
PASSWORD = f"{ACCOUNT}-auth-token"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, tmp_path: Path) -> S3Server:
    """The AWS SDK's own configuration, pointing its ECR client at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a session made with this env
    return s3_server


@pytest.fixture
def token_calls(aws: S3Server) -> Iterator[list[str]]:
    """GetAuthorizationToken calls made through boto3's default session (what the helper
    uses), by the region asked."""
    boto3.setup_default_session()
    calls: list[str] = []

    def count(model: Any, context: Any, **_: Any) -> None:
        calls.append(context["client_region"])

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.ecr.GetAuthorizationToken", count)
    yield calls


@pytest.fixture(scope="module")
def ecr_registry() -> Iterator[RegistryServer]:
    """A registry that accepts moto's ECR login, and nothing else."""
    server = RegistryServer(htpasswd=("AWS", PASSWORD))
    try:
        seed_many(server, repos=2, tags=2, layers=2, auth=("AWS", PASSWORD))
        yield server
    finally:
        server.stop()


def test_sync_logs_in_with_the_ecr_helper(
    ecr_registry: RegistryServer, aws: S3Server, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    entry = {"urls": [ecr_registry.url], "credentialHelper": "ecr"}
    run = run_sync(write_sync_config(tmp_path, root, [entry]))
    assert run.code == 0, run.output[-3000:]
    assert sorted(layout_tags(root)) == ["scale/repo-000", "scale/repo-001"]
    assert_no_secret([run.output], PASSWORD)
    # Without the helper, the same registry refuses us: the helper's login is what opened it.
    refused = run_sync(
        write_sync_config(tmp_path, tmp_path / "other", [{**entry, "credentialHelper": None}])
    )
    assert refused.code == 1 and "401" in refused.output


def test_account_and_region_come_from_an_ecr_host(token_calls: list[str]) -> None:
    login = EcrLogin("https://111122223333.dkr.ecr.eu-west-2.amazonaws.com")
    # moto names the password after the account it was asked for.
    assert login.current() == Credentials("AWS", "111122223333-auth-token")
    assert token_calls == ["eu-west-2"]
    # Any other host: the SDK's default account and region.
    assert EcrLogin("https://mirror.example").current() == Credentials("AWS", PASSWORD)
    assert token_calls == ["eu-west-2", REGION]


def test_the_login_is_renewed_an_hour_before_it_expires(token_calls: list[str]) -> None:
    expires = _moto_expiry()
    now = [expires - 3 * 3600]
    login = EcrLogin("https://mirror.example", clock=lambda: now[0])
    assert login.current().password == PASSWORD
    now[0] = expires - ECR_RENEW_BEFORE - 1  # still more than an hour left: reused
    login.current()
    assert len(token_calls) == 1
    now[0] = expires - ECR_RENEW_BEFORE  # an hour left: asked again
    login.current()
    assert len(token_calls) == 2


def test_a_refused_login_is_renewed_a_minute_after_the_last_ask(token_calls: list[str]) -> None:
    """A 401 to the password (revoked early) renews it before its hour-before-expiry mark,
    but AWS is still asked at most once a minute."""
    now = [_moto_expiry() - 3 * 3600]
    login = EcrLogin("https://mirror.example", clock=lambda: now[0])
    login.current()
    login.refused()
    login.current()
    assert len(token_calls) == 1
    now[0] += ECR_MIN_REUSE
    login.current()
    assert len(token_calls) == 2


def test_an_expired_login_is_not_asked_for_on_every_request(token_calls: list[str]) -> None:
    """moto's tokens expired in 2015: the helper still asks AWS at most once a minute."""
    now = [_moto_expiry() + 86400]
    login = EcrLogin("https://mirror.example", clock=lambda: now[0])
    for _ in range(5):
        login.current()
    now[0] += ECR_MIN_REUSE
    login.current()
    assert len(token_calls) == 2


def test_an_unreachable_aws_is_a_temporary_error_naming_the_registry(
    aws: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(TransportError, match=r"ECR login for mirror.example .*failed") as info:
        EcrLogin("https://mirror.example").current()
    assert classify(info.value) and SECRET_KEY not in str(info.value)


def test_the_helper_is_configured_per_registry(tmp_path: Path) -> None:
    config_path = write_sync_config(
        tmp_path,
        tmp_path / "store",
        [{"urls": ["https://a.example", "https://b.example"], "credentialHelper": "ecr"}],
    )
    config = load_config(config_path)
    logins = config.credentials_for(config.registries[0])
    assert sorted(logins) == ["https://a.example", "https://b.example"]
    assert all(isinstance(login, EcrLogin) for login in logins.values())


def _moto_expiry() -> float:
    """When moto says its tokens expire (a Unix time); asked outside the counted session."""
    client = boto3.session.Session().client("ecr")
    expires: datetime = client.get_authorization_token()["authorizationData"][0]["expiresAt"]
    return expires.timestamp()
