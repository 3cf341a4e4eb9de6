"""One source per destination on the cluster's paths: a real registry notifying a real
`syncworker api` process, real `syncworker worker` processes, a private Redis. Two upstream
repositories whose globs meet in one destination (what `validate` cannot see): the first to
sync holds it; the other is refused by webhooks, ``/v1/sync`` (repository and image),
``trigger --image`` and a walk's ``sync_repo``, each refusal naming both sources, and the
destination is left byte for byte as it was, ``prune: true`` notwithstanding."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncworker.celeryapp import create_app
from syncworker.config import load_config
from tests.support.api_server import ApiServer
from tests.support.cluster import REGISTRY, Cluster, trigger, wait_finished, wait_for
from tests.support.images import make_image
from tests.support.ports import free_port
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.test_api_e2e import notification_endpoint
from tests.test_claims import files_of

pytestmark = pytest.mark.slow

CONTENT = [
    {"prefix": "team-a/app/**", "destination": "app", "stripPrefix": True},
    {"prefix": "team-b/app/**", "destination": "app", "stripPrefix": True},
]
REFUSAL = (
    f"{REGISTRY}/team-b/app: destination 'app' mirrors {REGISTRY}/team-a/app,"
    f" not {REGISTRY}/team-b/app"
)


class Setup:
    def __init__(self, workdir: Path) -> None:
        self.token = secrets.token_hex(16)
        self.redis = RedisServer()
        api_port = free_port()
        self.upstream = RegistryServer(notifications=[notification_endpoint(api_port, self.token)])
        self.cluster = Cluster(workdir, self.upstream, self.redis.url)
        self.cluster.write_config(content=CONTENT, prune=True)
        self.api = ApiServer(self.cluster.config_path, workdir / "api.log", token=self.token,
                             port=api_port, env=self.cluster.env)  # fmt: skip
        self.cluster.worker("w1")

    def close(self) -> None:
        self.api.stop()
        self.cluster.stop_all()
        self.upstream.stop()
        self.redis.close()

    def refusals(self) -> int:
        return self.cluster.log("w1").count(REFUSAL)

    def outcome(self, task_id: str) -> tuple[str, list[str]]:
        """How the API says request ``task_id`` ended, its failures cut to their start."""
        answer = self.api.request("GET", f"/v1/sync/{task_id}?wait=55", self.token)
        assert answer.status_code == 200, answer.text
        status = answer.json()
        failures = (status.get("result") or {}).get("failures", [])
        return status["state"], [f[: len(REFUSAL)] for f in failures]

    def sync(self, **body: str) -> str:
        answer = self.api.request(
            "POST", "/v1/sync", self.token, json={"registry": REGISTRY, **body}
        )
        assert answer.status_code == 202, answer.text
        task_id: str = answer.json()["task_id"]
        return task_id


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.close()


def test_every_cluster_path_refuses_a_second_source(setup: Setup) -> None:
    store = setup.cluster.store / "app"
    # A webhook: the push of team-a/app:v1 is mirrored, and team-a/app claims "app".
    push_image(setup.upstream.url, "team-a/app", "v1", make_image(seed="claims-a"))
    wait_for("team-a/app:v1 mirrored", lambda: (store / "index.json").is_file())
    wait_for("its sync_image done", lambda: "sync_image(up, team-a/app, v1) done" in
             setup.cluster.log("w1"))  # fmt: skip
    before = files_of(store)

    # A webhook of the other source: refused.
    push_image(setup.upstream.url, "team-b/app", "v2", make_image(seed="claims-b"))
    wait_for("the webhook's sync_image refused", lambda: setup.refusals() == 1)

    # /v1/sync of the repository, then of the image: each request ends failed, naming both.
    repo_request = setup.sync(repo="team-b/app")
    assert setup.outcome(repo_request) == ("failed", [REFUSAL])
    assert setup.refusals() == 2
    image_task = setup.sync(repo="team-b/app", reference="v2")
    app = create_app(load_config(setup.cluster.config_path))
    try:
        outcome = app.AsyncResult(image_task).get(timeout=120)
    finally:
        app.close()
    assert [REFUSAL in failure for failure in outcome["failures"]] == [True], outcome
    assert setup.outcome(image_task) == ("failed", [REFUSAL])

    # `trigger --image --wait`: exit 1, the refusal printed.
    done = setup.cluster.cli("trigger", "--image", "team-b/app:v2", "--wait")
    assert done.returncode == 1 and REFUSAL in done.stderr, done.stderr

    # A walk: team-a/app is unchanged, team-b/app the run's one failure.
    run_id, _ = trigger(setup.cluster)
    status = wait_finished(setup.cluster.coord(), run_id)
    [failure] = status.failures
    assert f"{REGISTRY}/{failure.repo}: {failure.reason}".startswith(REFUSAL), failure
    assert files_of(store) == before
