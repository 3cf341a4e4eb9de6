"""docker credential helpers (``credHelpers``, ``credsStore`` in config.json) against real
registries: a ``docker-credential-<name>`` script on PATH hands out the login of an
htpasswd registry, or an identity token that a token issuer takes as a refresh token. A
helper that fails, is missing or hangs is one line naming it and the registry, and what a
helper prints never reaches the output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from syncworker.config import load_config
from syncworker.config.docker import DOCKER_HUB_SERVER, FAILURE_KEPT, HelperLogin, docker_login
from syncworker.errors import ConfigError
from syncworker.registry.auth import Credentials
from tests.support.images import make_image
from tests.support.mirror import assert_no_secret, layout_tags, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.token_issuer import TokenIssuer

USER, PASSWORD = "helper-bot", "helper-pa55-never-printed"
IDENTITY_TOKEN = "identity-token-never-printed"
HELPER = "sw-test"

# The helper: answers from answers.json (the first answer, dropped once used while more
# remain), records each server address asked on stdin, and may sleep or fail first.
_SCRIPT = """#!{python}
import json, pathlib, sys, time
here = pathlib.Path({here!r})
assert sys.argv[1:] == ["get"], sys.argv
(here / "asked.log").open("a").write(sys.stdin.read() + "\\n")
plan = json.loads((here / "plan.json").read_text())
time.sleep(plan.get("sleep", 0))
if plan.get("fail"):
    print(plan["fail"])
    sys.stderr.write(plan["fail"])
    sys.exit(1)
answers = json.loads((here / "answers.json").read_text())
print(json.dumps(answers[0]))
if len(answers) > 1:
    (here / "answers.json").write_text(json.dumps(answers[1:]))
"""


class Helper:
    """``docker-credential-sw-test`` on PATH, and docker's config.json naming it."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = directory
        directory.mkdir()
        script = directory / f"docker-credential-{HELPER}"
        script.write_text(_SCRIPT.format(python=sys.executable, here=str(directory)))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("DOCKER_CONFIG", str(directory))
        self.plan({})

    def config(self, config: Mapping[str, Any]) -> None:
        (self.dir / "config.json").write_text(json.dumps(config))

    def plan(self, plan: Mapping[str, Any], *answers: Mapping[str, str]) -> None:
        (self.dir / "plan.json").write_text(json.dumps(plan))
        (self.dir / "answers.json").write_text(json.dumps(list(answers)))

    @property
    def asked(self) -> list[str]:
        log = self.dir / "asked.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Helper:
    return Helper(tmp_path / "helper", monkeypatch)


@pytest.fixture(scope="module")
def basic_registry() -> Any:
    server = RegistryServer(htpasswd=(USER, PASSWORD))
    try:
        push_image(server.url, "team/app", "v1", make_image(("helpers", 1)), auth=(USER, PASSWORD))
        yield server
    finally:
        server.stop()


def _sync(tmp_path: Path, url: str, **settings: Any) -> Any:
    tmp_path.mkdir(exist_ok=True)
    root = tmp_path / "store"
    return run_sync(write_sync_config(tmp_path, root, [{"urls": [url]}], settings=settings))


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
def test_a_helper_logs_in_to_a_basic_auth_registry(
    key: str, helper: Helper, basic_registry: RegistryServer, tmp_path: Path
) -> None:
    # A wrong login in `auths` too: the helper comes first, as in docker.
    wrong = {"username": USER, "password": "wrong"}
    name: Any = {basic_registry.host: HELPER} if key == "credHelpers" else HELPER
    helper.config({key: name, "auths": {basic_registry.host: wrong}})
    helper.plan({}, {"ServerURL": basic_registry.host, "Username": USER, "Secret": PASSWORD})
    run = _sync(tmp_path, basic_registry.url)
    assert run.code == 0, run.output[-3000:]
    assert list(layout_tags(tmp_path / "store")) == ["team/app"]
    # Asked once for the process, with the registry's host on stdin.
    assert helper.asked == [basic_registry.host]
    assert_no_secret([run.output], PASSWORD)


def test_a_refused_login_is_asked_for_again(
    helper: Helper, basic_registry: RegistryServer, tmp_path: Path
) -> None:
    """The helper's first answer is stale (the password was rotated): the registry's 401
    makes the mirror ask again, and the fresh answer opens it."""
    helper.config({"credHelpers": {basic_registry.host: HELPER}})
    stale = {"Username": USER, "Secret": "rotated-away"}
    helper.plan({}, stale, {"Username": USER, "Secret": PASSWORD})
    run = _sync(tmp_path, basic_registry.url)
    assert run.code == 0, run.output[-3000:]
    assert len(helper.asked) == 2
    assert_no_secret([run.output], PASSWORD, "rotated-away")


def test_an_identity_token_is_spent_as_a_refresh_token(
    helper: Helper,
    make_token_issuer: Callable[..., TokenIssuer],
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
) -> None:
    issuer = make_token_issuer(users={USER: PASSWORD}, anonymous_pull=False)
    server = make_registry(token_auth=issuer)
    push_image(server.url, "team/app", "v1", make_image(("helpers", 2)), auth=(USER, PASSWORD))
    issuer.refresh_tokens[IDENTITY_TOKEN] = USER
    helper.config({"credHelpers": {server.host: HELPER}})
    helper.plan({}, {"Username": "<token>", "Secret": IDENTITY_TOKEN})
    issued_before = issuer.issued_to[USER]
    run = _sync(tmp_path, server.url)
    assert run.code == 0, run.output[-3000:]
    assert list(layout_tags(tmp_path / "store")) == ["team/app"]
    assert issuer.issued_to[USER] > issued_before and issuer.rejected == 0
    assert_no_secret([run.output], IDENTITY_TOKEN)
    # An identity token the issuer does not know: refused, asked again once, then failed.
    issuer.refresh_tokens.clear()
    run = _sync(tmp_path / "again", server.url)
    assert run.code == 1 and "401" in run.output
    assert_no_secret([run.output], IDENTITY_TOKEN)


@pytest.mark.parametrize(
    ("plan", "why"),
    [
        ({"fail": f"leaked {PASSWORD}"}, "exited with status 1"),
        ({"sleep": 30}, "no answer within 1 s"),
    ],
    ids=["failing", "slow"],
)
def test_a_failing_helper_is_one_line_naming_it_and_the_registry(
    plan: dict[str, Any],
    why: str,
    helper: Helper,
    basic_registry: RegistryServer,
    tmp_path: Path,
) -> None:
    helper.config({"credsStore": HELPER})
    helper.plan(plan)
    run = _sync(tmp_path, basic_registry.url, credentialHelperTimeout="1s")
    assert run.code == 1
    line = f"docker credential helper docker-credential-{HELPER} for {basic_registry.host}: {why}"
    assert line in run.output, run.output[-3000:]
    assert "Traceback" not in run.output
    assert_no_secret([run.output], PASSWORD)
    assert len(helper.asked) == 1  # a failure is kept: not one wait per repository


def test_a_missing_helper_names_itself(
    helper: Helper, basic_registry: RegistryServer, tmp_path: Path
) -> None:
    helper.config({"credHelpers": {basic_registry.host: "absent"}})
    run = _sync(tmp_path, basic_registry.url)
    assert run.code == 1
    expected = f"docker-credential-absent for {basic_registry.host}: not found on PATH"
    assert expected in run.output, run.output[-3000:]
    assert "Traceback" not in run.output


def test_docker_hub_names_are_one_registry(helper: Helper, tmp_path: Path) -> None:
    helper.config({"credHelpers": {"docker.io": HELPER}})
    helper.plan({}, {"Username": "hub", "Secret": "s"})
    for host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        found = docker_login(host)
        assert isinstance(found, HelperLogin) and found.current() == Credentials("hub", "s")
    # Helpers are asked for Hub's login under the address docker keeps it under.
    assert helper.asked == [DOCKER_HUB_SERVER] * 3
    # config.json's https://index.docker.io/v1/ key serves every name of Hub.
    helper.config({"auths": {DOCKER_HUB_SERVER: {"username": "hub", "password": "p"}}})
    assert docker_login("registry-1.docker.io") == Credentials("hub", "p")
    assert docker_login("registry.example") is None


def test_single_names_on_docker_hub_are_official_images(tmp_path: Path) -> None:
    entry = {"urls": ["https://registry-1.docker.io"], "repos": ["alpine", "bitnami/redis"]}
    config = load_config(write_sync_config(tmp_path, tmp_path / "store", [entry]))
    assert config.registries[0].repos == ["library/alpine", "bitnami/redis"]
    other = {"urls": ["https://registry.example"], "repos": ["alpine"]}
    config = load_config(write_sync_config(tmp_path, tmp_path / "store", [other]))
    assert config.registries[0].repos == ["alpine"]


def test_not_found_is_anonymous_and_garbage_is_an_error(helper: Helper) -> None:
    helper.config({"credsStore": HELPER})
    helper.plan({"fail": "credentials not found in native keychain"})
    assert HelperLogin(HELPER, "registry.example").current() is None
    helper.plan({}, {"Username": "u"})
    with pytest.raises(ConfigError, match='for registry.example: answered without a "Username"'):
        HelperLogin(HELPER, "registry.example").current()
    # The login is kept until refused: then the helper is asked again.
    helper.plan({}, {"Username": "u", "Secret": "one"}, {"Username": "u", "Secret": "two"})
    found = HelperLogin(HELPER, "registry.example")
    assert [found.current(), found.current()] == [Credentials("u", "one")] * 2
    found.refused()
    assert found.current() == Credentials("u", "two")


def test_a_failure_is_kept_for_a_while_then_the_helper_is_asked_again(helper: Helper) -> None:
    """A helper that failed once (its network call, a locked keyring) does not fail its
    registry for the life of a worker."""
    now = [0.0]
    helper.config({"credsStore": HELPER})
    helper.plan({"fail": "keyring locked"})
    found = HelperLogin(HELPER, "registry.example", clock=lambda: now[0])
    for _ in range(2):
        with pytest.raises(ConfigError, match="exited with status 1"):
            found.current()
    assert len(helper.asked) == 1  # kept: not one wait per repository
    helper.plan({}, {"Username": "u", "Secret": "s"})
    now[0] = FAILURE_KEPT
    assert found.current() == Credentials("u", "s")
    assert len(helper.asked) == 2
