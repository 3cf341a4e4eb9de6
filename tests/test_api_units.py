"""The API's pure parts: reading notifications, routing them to registry entries, the token
and the listen address. (tests/test_api.py and test_api_e2e.py run the real thing.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncworker.api.notifications import (
    Push,
    Skipped,
    distribution_pushes,
    harbor_pushes,
    normal_host,
)
from syncworker.api.routing import entries_for_hosts, refusal, validate_image
from syncworker.cli.api import TOKEN_ENV, api_token
from syncworker.config import Config
from syncworker.config.loader import validate
from syncworker.config.serving import listen_address
from syncworker.errors import ConfigError, ContentError, RequestError
from syncworker.oci import Reference

DIGEST = "sha256:" + "0f" * 32


def config(*registries: dict[str, Any], token: str | None = None) -> Config:
    settings: dict[str, Any] = {"api": {"token": token}} if token else {}
    return Config.model_validate({
        "storage": {"rootDirectory": "/tmp/unused"},
        "extensions": {"sync": {"registries": list(registries)}},
        "syncworker": settings,
    })  # fmt: skip


def manifest_event(**target: Any) -> dict[str, Any]:
    """A manifest push as distribution 2.8 sends it (notifications/bridge.go)."""
    base = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST,
            "repository": "team/app", "tag": "v1",
            "url": f"https://reg.example.com:443/v2/team/app/manifests/{DIGEST}"}  # fmt: skip
    return {"id": "e1", "action": "push", "target": {**base, **target},
            "request": {"host": "reg.example.com", "method": "PUT"}}  # fmt: skip


def test_a_manifest_push_is_read_with_its_hosts_tag_and_digest() -> None:
    [push] = distribution_pushes({"events": [manifest_event()]})
    assert push == Push(("reg.example.com", "reg.example.com"), "team/app", "v1", DIGEST)
    assert push.reference == "v1"
    [by_digest] = distribution_pushes({"events": [manifest_event(tag=None)]})
    assert isinstance(by_digest, Push) and by_digest.reference == DIGEST


def test_blobs_mounts_pulls_and_deletes_are_skipped() -> None:
    blob = manifest_event(url=f"https://reg.example.com/v2/team/app/blobs/{DIGEST}")
    pull = {**manifest_event(), "action": "pull"}
    delete = {"id": "d", "action": "delete", "target": {"repository": "team/app"}}
    items = distribution_pushes({"events": [blob, pull, delete, "junk"]})
    assert all(isinstance(item, Skipped) for item in items)
    assert [item.reason for item in items if isinstance(item, Skipped)][-1] == "not a JSON object"


@pytest.mark.parametrize("body", [[], {"events": {}}, {"no": "events"}, "text"])
def test_a_malformed_envelope_is_refused(body: Any) -> None:
    with pytest.raises(RequestError):
        distribution_pushes(body)


def test_harbor_push_in_both_payload_formats() -> None:
    data = {"resources": [{"digest": DIGEST, "tag": "1.0",
                           "resource_url": "harbor.example.com/library/nginx:1.0"}],
            "repository": {"repo_full_name": "library/nginx", "namespace": "library"}}  # fmt: skip
    expected = [Push(("harbor.example.com",), "library/nginx", "1.0", DIGEST)]
    assert harbor_pushes({"type": "PUSH_ARTIFACT", "event_data": data}) == expected
    cloud = {"specversion": "1.0", "type": "harbor.artifact.pushed", "data": data}
    assert harbor_pushes(cloud) == expected
    [skipped] = harbor_pushes({"type": "DELETE_ARTIFACT", "event_data": data})
    assert isinstance(skipped, Skipped)
    with pytest.raises(RequestError):
        harbor_pushes({"type": "PUSH_ARTIFACT", "event_data": {"resources": []}})


def test_hosts_compare_without_default_ports_or_case() -> None:
    assert normal_host("Reg.Example.com:443", "https") == "reg.example.com"
    assert normal_host("reg.example.com:443") == "reg.example.com"
    assert normal_host("reg.example.com:443", "http") == "reg.example.com:443"
    assert normal_host("127.0.0.1:5000") == "127.0.0.1:5000"


def test_a_push_goes_to_every_entry_on_its_host() -> None:
    cfg = config(
        {"urls": ["https://reg.example.com"], "name": "a", "content": [{"prefix": "team/**"}]},
        {"urls": ["http://mirror:5000", "https://reg.example.com:443"], "name": "b"},
        {"urls": ["https://other.example.com"], "name": "c"},
    )
    assert [e.name for e in entries_for_hosts(cfg, ("reg.example.com",))] == ["a", "b"]
    assert entries_for_hosts(cfg, ("reg.example.com:8443",)) == []


def test_refusal_follows_repos_prefix_and_tag_rules() -> None:
    cfg = config(
        {"urls": ["https://r.example"], "name": "rules",
         "content": [{"prefix": "team/**", "tags": {"regex": "^v", "excludeRegex": "-rc"}}]},
        {"urls": ["https://r.example"], "name": "listed", "repos": ["team/app"]},
    )  # fmt: skip
    rules, listed = cfg.registries
    assert refusal(rules, "team/app", "v1") is None
    assert refusal(rules, "team/app", None) is None  # a digest: only the prefix applies
    assert "tag rules" in str(refusal(rules, "team/app", "v1-rc"))
    assert "no content rule" in str(refusal(rules, "other/app", "v1"))
    assert refusal(listed, "team/app", "anything") is None
    assert "repos list" in str(refusal(listed, "team/other", "v1"))


@pytest.mark.parametrize(
    ("repo", "reference"),
    [("Team/app", "v1"), ("team//app", "v1"), ("team/app", "v1/x"), ("team/app", ""),
     ("team/app", "sha256:xyz"), ("team/app", "md5:" + "0" * 32), ("../x", "v1")],
)  # fmt: skip
def test_names_are_validated_as_the_engine_parses_them(repo: str, reference: str) -> None:
    with pytest.raises(ContentError):
        validate_image(repo, reference)


def test_reference_of_tag_and_digest() -> None:
    assert str(Reference.of("team/app", "v1")) == "team/app:v1"
    assert str(Reference.of("team/app", DIGEST)) == f"team/app@{DIGEST}"


def test_the_environment_token_wins_and_short_ones_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert api_token(config(token="from-the-config-file")) == "from-the-config-file"
    assert "from-the-config-file" not in repr(config(token="from-the-config-file"))
    monkeypatch.setenv(TOKEN_ENV, "  from-the-environment\n")
    assert api_token(config(token="from-the-config-file")) == "from-the-environment"
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(ConfigError) as refused:
        api_token(config())
    assert "short" not in str(refused.value).replace("shorter", "")
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ConfigError):
        api_token(config())


def test_a_short_token_in_the_config_is_refused_as_it_loads(tmp_path: Path) -> None:
    """`validate` and every command refuse it, not only `syncworker api` when it starts;
    the error names the key and never echoes the token."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "storage: {rootDirectory: /tmp/unused}\n"
        "extensions: {sync: {registries: [{urls: ['http://127.0.0.1:5000']}]}}\n"
        "syncworker: {api: {token: tooshort}}\n"
    )
    problems = validate(path)
    assert any("syncworker.api.token" in problem for problem in problems), problems
    assert not any("tooshort" in problem for problem in problems)


def test_listen_addresses() -> None:
    assert listen_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert listen_address("[::]:9000") == ("::", 9000)
    for bad in ("8080", ":8080", "host:", "host:99999", "host:http"):
        with pytest.raises(ConfigError):
            listen_address(bad)


def test_other_commands_never_import_the_web_stack() -> None:
    """FastAPI and uvicorn take a while to import: only `syncworker api` loads them."""
    code = (
        "import sys; from syncworker.cli import build_parser; build_parser(['sync']); "
        "import syncworker.cli.sync, syncworker.cli.trigger, syncworker.cli.status; "
        "web = {'fastapi', 'starlette', 'uvicorn'}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & web))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
