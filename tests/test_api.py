"""`syncworker api` over HTTP: a real api process and a private Redis (no worker, so every
task sent stays in its queue, where the tests read it back).

Covers the gate (401, 413, nothing enqueued), the 400s with their reasons, the REST
endpoints against `syncworker status --json`, Harbor's webhook, coalescing, readiness,
the OpenAPI schema and where the token comes from.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from syncworker.coord import Coordinator
from tests.support.api_server import ApiServer
from tests.support.cluster import queued_args, queued_task
from tests.support.command import ROOT, SYNCWORKER
from tests.support.redis_server import RedisServer
from tests.support.tls import TlsMaterial

# One xdist worker runs this module's tests (scripts/test.sh: --dist loadgroup), so its
# module-scoped API server starts once, not once per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_api")]

UPSTREAM = "http://127.0.0.1:1"  # never contacted: nothing here runs a task
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32


@dataclass
class Api:
    server: ApiServer
    token: str
    config_token: str
    redis: redis.Redis
    config_path: Path

    def stored_keys(self) -> list[bytes]:
        """Every key but kombu's queue bindings (declared once per connection, kept)."""
        return [k for k in self.redis.keys("*") if not k.startswith(b"_kombu.binding")]

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.server.request(method, path, token=self.token, **kwargs)

    def queued(self, queue: str = "syncworker.ondemand") -> list[tuple[str, list[Any]]]:
        raw = self.redis.lrange(queue, 0, -1)
        return [(queued_task(item), queued_args(item)) for item in raw]

    def status_json(self, *args: str) -> Any:
        done = subprocess.run([*SYNCWORKER, "status", *args, "--json", "-c", str(self.config_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("api")
    server = RedisServer()
    config_token = secrets.token_hex(16)  # in the file, overridden by the environment's
    config = {
        "storage": {"rootDirectory": str(workdir / "store")},
        "extensions": {"sync": {"registries": [
            {"urls": [UPSTREAM], "name": "up", "content": [{"prefix": "team/**"}]},
            {"urls": ["https://registry.example.com"], "name": "harbor"},
            {"urls": ["https://registry-1.docker.io"], "name": "hub"},  # never contacted
        ]}},
        "syncworker": {"redis": server.url, "api": {"token": config_token}},
    }  # fmt: skip
    config_path = workdir / "mirror.yaml"
    config_path.write_text(yaml.safe_dump(config))
    token = secrets.token_hex(16)
    api_server = ApiServer(config_path, workdir / "api.log", token=token)
    client = redis.Redis.from_url(server.url)
    yield Api(api_server, token, config_token, client, config_path)
    client.close()
    api_server.stop()
    server.close()


@pytest.fixture(autouse=True)
def empty_redis(api: Api) -> None:
    """Each test starts with no queue, run or key (a private server)."""
    for key in api.stored_keys():
        api.redis.delete(key)


PROTECTED = [
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/some-run"),
    ("POST", "/v1/sync"),
    ("POST", "/v1/webhooks/distribution"),
    ("POST", "/v1/webhooks/harbor"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_but_healthz_needs_the_token(api: Api, method: str, path: str) -> None:
    body = {"registry": "up", "repo": "team/app", "reference": "v1"}
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-of-some-length"},
        {"Authorization": f"Basic {api.token}"},
        {"Authorization": f"Bearer {api.config_token}"},  # the environment's wins
        {"Authorization": f"Bearer {api.token}x"},
    ):
        answer = api.server.request(method, path, headers=headers, json=body)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.stored_keys() == []  # nothing enqueued, nothing recorded
    assert api.server.request("GET", "/healthz").json() == {"status": "ok"}
    assert api.token not in api.server.output() and api.config_token not in api.server.output()


def test_bodies_over_the_limit_are_413_and_enqueue_nothing(api: Api) -> None:
    big = json.dumps({"registry": "up", "repo": "team/app", "reference": "v1", "x": "a" * 2**20})
    answer = api.call("POST", "/v1/sync", data=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    chunks = iter([big[: 2**19].encode(), big[2**19 :].encode()])  # chunked: no length given
    answer = api.call("POST", "/v1/webhooks/distribution", data=chunks)
    assert answer.status_code == 413
    assert api.stored_keys() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"registry": "up", ', "JSON"),
        ('{"registry": "nope"}', "unknown registry"),
        ('{"registry": "up", "repo": "team/App", "reference": "v1"}', "invalid repository"),
        ('{"registry": "up", "repo": "team/../x"}', "invalid repository"),
        ('{"registry": "up", "repo": "team/app", "reference": "v1/x"}', "invalid"),
        ('{"registry": "up", "repo": "team/app", "reference": "sha256:abc"}', "digest"),
        ('{"registry": "up", "repo": "other/app", "reference": "v1"}', "no content rule"),
        ('{"registry": "up", "reference": "v1"}', "needs its repo"),
        ('{"registry": "up", "repo": "team/app", "extra": 1}', "extra"),
    ],
)
def test_bad_requests_are_400_with_a_reason(api: Api, body: str, reason: str) -> None:
    headers = {"Content-Type": "application/json"}
    answer = api.call("POST", "/v1/sync", data=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert reason.lower() in answer.json()["detail"].lower()
    assert api.stored_keys() == []


def test_malformed_webhooks_are_400_and_odd_events_are_skipped(api: Api) -> None:
    for body in ("[", '{"events": 3}', "[]"):
        answer = api.call("POST", "/v1/webhooks/distribution", data=body)
        assert answer.status_code == 400, answer.text
    answer = api.call("POST", "/v1/webhooks/distribution?registry=nope", json={"events": []})
    assert answer.status_code == 400 and "unknown registry" in answer.json()["detail"]
    # One odd event must not make the registry resend the envelope forever: 202, skipped.
    odd = {"action": "push", "target": {"repository": "team/../x", "tag": "v1",
           "url": f"{UPSTREAM}/v2/x/manifests/v1", "digest": DIGEST}}  # fmt: skip
    answer = api.call("POST", "/v1/webhooks/distribution", json={"events": [odd, 7]})
    assert answer.status_code == 202
    assert [s["reason"] for s in answer.json()["skipped"]][1] == "not a JSON object"
    assert api.queued() == []


def test_registry_parameter_names_the_entry_whatever_the_host(api: Api) -> None:
    url = f"http://registry.internal:5000/v2/team/app/manifests/{DIGEST}"
    target = {"repository": "team/app", "tag": "v2", "digest": DIGEST, "url": url}
    event = {"action": "push", "request": {"host": "registry.internal:5000"}, "target": target}
    by_host = api.call("POST", "/v1/webhooks/distribution", json={"events": [event]}).json()
    assert by_host["accepted"] == []
    reason = by_host["skipped"][0]["reason"]
    assert "no registry entry for its host (registry.internal:5000)" in reason, reason
    named = api.call("POST", "/v1/webhooks/distribution?registry=up", json={"events": [event]})
    assert [a["registry"] for a in named.json()["accepted"]] == ["up"]
    assert api.queued() == [("syncworker.sync_image", ["up", "team/app", "v2"])]


def test_a_single_name_on_docker_hub_is_sent_as_the_official_image(api: Api) -> None:
    """As the scheduled sync of ``repos: [alpine]`` names it, so both land in one copy."""
    body = {"registry": "hub", "repo": "alpine", "reference": "3.20"}
    answer = api.call("POST", "/v1/sync", json=body)
    assert answer.status_code == 202
    status = api.call("GET", f"/v1/sync/{answer.json()['task_id']}").json()
    assert status["repo"] == "library/alpine"
    assert api.queued() == [("syncworker.sync_image", ["hub", "library/alpine", "3.20"])]


def test_sync_walk_and_runs_show_what_status_json_shows(api: Api) -> None:
    first = api.call("POST", "/v1/sync", json={"registry": "up"})
    assert first.status_code == 202 and first.json()["started"] is True
    run_id = first.json()["run_id"]
    again = api.call("POST", "/v1/sync", json={"registry": "up"})
    assert again.json() == {"run_id": run_id, "started": False}  # in progress: not again
    assert [task for task, _ in api.queued("syncworker.walk")].count("syncworker.walk_catalog") == 1

    assert api.call("GET", f"/v1/runs/{run_id}").json() == api.status_json(run_id)
    assert api.call("GET", "/v1/runs").json() == api.status_json()
    assert api.call("GET", "/v1/runs/no-such-run").status_code == 404

    # A repository in flight: its images so far are in the run's counters.
    coord = Coordinator(api.redis)
    coord.mark_enqueued(run_id, "team/app")
    assert coord.note_live(run_id, "team/app", {"images_copied": 3, "bytes": 10})
    view = api.call("GET", f"/v1/runs/{run_id}").json()
    assert (view["counters"]["images_copied"], view["in_flight"]) == (3, 1)
    assert view == api.status_json(run_id)


def test_sync_repo_and_image_send_the_public_tasks(api: Api) -> None:
    repo = api.call("POST", "/v1/sync", json={"registry": "up", "repo": "team/app"})
    assert repo.status_code == 202
    assert api.queued("syncworker.repo") == [("syncworker.sync_repo", ["up", "team/app"])]
    image = api.call("POST", "/v1/sync", json={"registry": "up", "repo": "team/app",
                                               "reference": "1.0"})  # fmt: skip
    assert image.status_code == 202 and image.json()["coalesced"] is False
    assert api.queued() == [("syncworker.sync_image", ["up", "team/app", "1.0"])]
    # By digest, the content is known: an identical request is answered with the same task.
    body = {"registry": "up", "repo": "team/app", "reference": DIGEST}
    ids = {api.call("POST", "/v1/sync", json=body).json()["task_id"] for _ in range(3)}
    assert len(ids) == 1 and len(api.queued()) == 2


def test_harbor_push_coalesces_redeliveries_but_not_a_moved_tag(api: Api) -> None:
    def payload(digest: str, tag: str = "v1") -> dict[str, Any]:
        resource = {"digest": digest, "tag": tag,
                    "resource_url": f"registry.example.com/library/nginx:{tag}"}  # fmt: skip
        repository = {"name": "nginx", "namespace": "library", "repo_full_name": "library/nginx"}
        return {"type": "PUSH_ARTIFACT", "occur_at": 1, "operator": "ci",
                "event_data": {"resources": [resource], "repository": repository}}  # fmt: skip

    first = api.call("POST", "/v1/webhooks/harbor", json=payload(DIGEST))
    assert first.status_code == 202
    [accepted] = first.json()["accepted"]
    assert (accepted["registry"], accepted["coalesced"]) == ("harbor", False)
    redelivered = api.call("POST", "/v1/webhooks/harbor", json=payload(DIGEST)).json()
    assert redelivered["accepted"][0] == {**accepted, "coalesced": True}
    moved = api.call("POST", "/v1/webhooks/harbor", json=payload(OTHER_DIGEST)).json()
    back = api.call("POST", "/v1/webhooks/harbor", json=payload(DIGEST)).json()
    assert not moved["accepted"][0]["coalesced"] and not back["accepted"][0]["coalesced"]
    assert api.queued() == [("syncworker.sync_image", ["harbor", "library/nginx", "v1"])] * 3
    pulled = api.call("POST", "/v1/webhooks/harbor", json={"type": "PULL_ARTIFACT"}).json()
    assert pulled["accepted"] == [] and len(api.queued()) == 3


def test_readiness_and_openapi(api: Api) -> None:
    assert api.call("GET", "/readyz").json() == {"redis": "ok", "broker": "ok"}
    schema = api.call("GET", "/openapi.json").json()
    assert {"/v1/sync", "/v1/runs", "/v1/runs/{run_id}", "/v1/webhooks/distribution",
            "/v1/webhooks/harbor", "/healthz", "/readyz"} <= set(schema["paths"])  # fmt: skip
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert {"202", "400", "401", "413", "503"} <= set(
        schema["paths"]["/v1/sync"]["post"]["responses"]
    )


def test_the_kubernetes_readiness_probe_command(api: Api) -> None:
    """deploy/kubernetes/api.yaml's exec probe, run against this API (its port swapped in)."""
    deployment = next(yaml.safe_load_all((ROOT / "deploy/kubernetes/api.yaml").read_text()))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    command = [part.replace("127.0.0.1:8080", api.server.host) for part in probe["exec"]["command"]]
    python = [sys.executable, *command[1:]]
    env = {**os.environ, "SYNCWORKER_API_TOKEN": api.token + "\n"}
    assert subprocess.run(python, env=env, capture_output=True, timeout=60).returncode == 0
    env["SYNCWORKER_API_TOKEN"] = "wrong-token-0123456789"
    assert subprocess.run(python, env=env, capture_output=True, timeout=60).returncode != 0


def test_readyz_is_503_when_redis_is_down(tmp_path: Path) -> None:
    server = RedisServer()
    config_path = tmp_path / "mirror.yaml"
    config_path.write_text(yaml.safe_dump({
        "storage": {"rootDirectory": str(tmp_path / "store")},
        "extensions": {"sync": {"registries": [{"urls": [UPSTREAM], "name": "up"}]}},
        "syncworker": {"redis": server.url, "api": {"token": "t" * 16}},
    }))  # fmt: skip
    with ApiServer(config_path, tmp_path / "api.log", token=None) as api_server:  # the config's
        assert api_server.request("GET", "/readyz", token="t" * 16).status_code == 200
        server.close()
        answer = api_server.request("GET", "/readyz", token="t" * 16)
        assert answer.status_code == 503
        assert answer.json()["redis"] != "ok" and answer.json()["broker"] != "ok"
        body = {"registry": "up", "repo": "team/app", "reference": "v1"}
        assert api_server.request("POST", "/v1/sync", token="t" * 16, json=body).status_code == 503


def test_api_serves_https_and_mutual_tls(tmp_path: Path, tls_certs: TlsMaterial) -> None:
    server = RedisServer()
    config_path = tmp_path / "mirror.yaml"
    config_path.write_text(yaml.safe_dump({
        "storage": {"rootDirectory": str(tmp_path / "store")},
        "extensions": {"sync": {"registries": [{"urls": [UPSTREAM], "name": "up"}]}},
        "syncworker": {"redis": server.url},
    }))  # fmt: skip
    token = secrets.token_hex(16)
    tls = (tls_certs.server_cert, tls_certs.server_key, tls_certs.ca_cert)
    client = (tls_certs.client_cert, tls_certs.client_key)
    try:
        with ApiServer(config_path, tmp_path / "api.log", token=token, tls=tls) as api_server:
            assert api_server.url.startswith("https://")
            assert api_server.request("GET", "/readyz", token=token).status_code == 200
            assert api_server.request("GET", "/readyz").status_code == 401
        with ApiServer(config_path, tmp_path / "mtls.log", token=token, tls=tls,
                       client_cert=client) as mutual:  # fmt: skip
            assert mutual.request("GET", "/readyz", token=token).status_code == 200
            # Without a client certificate the handshake fails (TLS 1.3 reports it as a
            # connection closed; SSLError is a ConnectionError too).
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(mutual.url + "/healthz", verify=str(tls_certs.ca_cert), timeout=30)
    finally:
        server.close()


def test_api_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    config_path = tmp_path / "mirror.yaml"
    config_path.write_text(yaml.safe_dump({
        "storage": {"rootDirectory": str(tmp_path / "store")},
        "syncworker": {"redis": "redis://127.0.0.1:1/0", "api": {"token": "tiny-tok"}},
    }))  # fmt: skip
    for env_token in ("", "   "):  # empty: the config's (too short); blank: none at all
        done = subprocess.run(
            [*SYNCWORKER, "api", "-c", str(config_path)], cwd=ROOT, capture_output=True,
            text=True, timeout=60, env={**os.environ, "SYNCWORKER_API_TOKEN": env_token},
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "syncworker.api.token" in done.stderr and "tiny-tok" not in done.stderr


def test_a_refused_path_cannot_forge_a_log_line(api: Api) -> None:
    """The path of a request without the token is logged as data: a line break in it
    (sent percent-encoded) starts no line of its own."""
    answer = api.server.request("GET", "/v1/runs%0a2026-01-01 INFO forged-by-a-stranger")
    assert answer.status_code == 401
    lines = api.server.output().splitlines()
    assert any("forged-by-a-stranger" in line for line in lines)
    assert not any(line.startswith("2026-01-01 INFO forged") for line in lines)
