"""Pull-through: ``syncworker serve`` over an empty store mirrors what an ``onDemand``
registry's rules map, while the client waits, and nothing else.

In one process (no Redis) and through the workers (two replicas, Redis, two worker
processes), where the upstream's own counters show each blob fetched once for five
concurrent pulls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from syncworker.config import load_config
from syncworker.oci import Digest
from syncworker.serve.apierrors import ApiError
from syncworker.serve.ondemand import MAX_FLIGHTS, REFERRERS_FRESH_SECONDS, OnDemand
from syncworker.worker.tasknames import QUEUE_ONDEMAND
from tests.support.cluster import Cluster
from tests.support.corpus import Corpus
from tests.support.images import make_artifact, make_image
from tests.support.mirror import write_sync_config
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.serve_server import ServeProcess
from tests.test_serve import skopeo_digest

Seeded = tuple[RegistryServer, Corpus]
# Only library/** is mapped, under mirror/ (destination + stripPrefix exercised too).
CONTENT = [{"prefix": "library/**", "destination": "/mirror", "stripPrefix": False,
            "tags": {"regex": "^3\\."}}]  # fmt: skip
SBOM = "application/spdx+json"


def ondemand_config(directory: Path, upstream: str, **serve: Any) -> Path:
    config = write_sync_config(
        directory,
        directory / "store",
        [{"urls": [upstream], "onDemand": True, "content": CONTENT}],
        settings={"serve": serve} if serve else None,
    )
    return config


@pytest.fixture
def serve(seeded_registry: Seeded, tmp_path: Path) -> Iterator[ServeProcess]:
    with ServeProcess(ondemand_config(tmp_path, seeded_registry[0].url)) as server:
        yield server


def test_a_mapped_image_is_mirrored_on_demand(
    serve: ServeProcess, seeded_registry: Seeded, tmp_path: Path
) -> None:
    _, corpus = seeded_registry
    pushed = corpus["alpine_3.19"]
    copied = skopeo_digest(serve.host, "mirror/library/alpine", "3.19", tmp_path / "out")
    assert copied == pushed.digest
    index = tmp_path / "store/mirror/library/alpine/index.json"
    assert index.exists()  # in the store now: served from it from here on


def test_an_unmapped_name_or_tag_is_unknown_without_an_upstream_request(
    serve: ServeProcess, seeded_registry: Seeded
) -> None:
    registry, _ = seeded_registry
    before = registry.request_count()
    cases = [
        ("library/alpine", "3.19", "NAME_UNKNOWN"),  # mapped under mirror/ only
        ("mirror/team/sub/app", "v1", "NAME_UNKNOWN"),  # no rule takes team/**
        ("mirror/library/alpine", "latest", "MANIFEST_UNKNOWN"),  # the tag rule excludes it
    ]
    for name, tag, code in cases:
        got = requests.get(f"{serve.url}/v2/{name}/manifests/{tag}", timeout=30)
        assert got.status_code == 404 and got.json()["errors"][0]["code"] == code, name
    assert registry.request_count() == before


def test_past_the_wait_a_503_the_client_retries_the_copy_going_on(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    _, corpus = seeded_registry
    config = ondemand_config(tmp_path, seeded_registry[0].url, onDemandTimeout="1ms")
    url_path = "/v2/mirror/library/alpine/manifests/3.20"
    with ServeProcess(config) as serve:
        first = requests.get(serve.url + url_path, timeout=30)
        assert first.status_code == 503, first.text
        assert first.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert int(first.headers["Retry-After"]) > 0
        index = tmp_path / "store/mirror/library/alpine/index.json"
        deadline = threading.Event()
        for _ in range(600):
            if index.exists() and "3.20" in index.read_text():
                break
            deadline.wait(0.1)
        again = requests.get(serve.url + url_path, timeout=30)
    assert again.status_code == 200
    assert again.headers["Docker-Content-Digest"] == corpus.digest("library/alpine", "3.20")


def test_referrers_of_an_ondemand_registry_are_fetched_first(
    make_registry: type, tmp_path: Path
) -> None:
    """A signature that arrived upstream after the image was pulled is listed."""
    upstream = make_registry()
    image = make_image("referred")
    push_image(upstream.url, "library/app", "3.1", image)
    with ServeProcess(ondemand_config(tmp_path, upstream.url)) as serve:
        got = requests.get(f"{serve.url}/v2/mirror/library/app/manifests/3.1", timeout=60)
        assert got.status_code == 200
        sbom = make_artifact(image, artifact_type=SBOM, payload=b'{"later": true}')
        push_image(upstream.url, "library/app", None, sbom)
        url = f"{serve.url}/v2/mirror/library/app/referrers/{image.digest}"
        listed = requests.get(url, params={"artifactType": SBOM}, timeout=60)
    assert listed.status_code == 200
    assert [d["digest"] for d in listed.json()["manifests"]] == [sbom.digest]


def test_five_pulls_through_two_replicas_fetch_each_blob_once(
    make_registry: type, private_redis: RedisServer, tmp_path: Path
) -> None:
    upstream = make_registry()
    image = make_image("fleet", layers=3, layer_size=256 * 1024)
    push_image(upstream.url, "library/fleet", "3.0", image)
    cluster = Cluster(tmp_path, upstream, private_redis.url)
    cluster.write_config(onDemand=True, content=CONTENT)
    doc = yaml.safe_load(cluster.config_path.read_text())
    doc["syncworker"]["serve"] = {"onDemandTimeout": "120s"}
    cluster.config_path.write_text(yaml.safe_dump(doc))
    try:
        cluster.worker("w1", "-Q", "syncworker.ondemand")
        cluster.worker("w2", "-Q", "syncworker.ondemand")
        with ServeProcess(cluster.config_path) as one, ServeProcess(cluster.config_path) as two:
            before = upstream.blob_gets()
            digests = pull_at_once([one, two, one, two, one], tmp_path)
            fetched = upstream.blob_gets() - before
    finally:
        cluster.stop_all()
    assert digests == [image.digest] * 5
    assert fetched == len(image.all_blob_digests())


def pull_at_once(replicas: list[ServeProcess], tmp_path: Path) -> list[str]:
    found: list[str] = [""] * len(replicas)
    start = threading.Barrier(len(replicas))

    def pull(i: int, serve: ServeProcess) -> None:
        start.wait()
        found[i] = skopeo_digest(serve.host, "mirror/library/fleet", "3.0", tmp_path / f"p{i}")

    threads = [threading.Thread(target=pull, args=(i, s)) for i, s in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def test_a_replica_holds_a_bounded_number_of_copies_past_it_none_starts(tmp_path: Path) -> None:
    """Each digest of a mapped name is a copy of its own: a client asking for many cannot
    make a replica queue upstream requests without end."""
    config = load_config(ondemand_config(tmp_path, "http://127.0.0.1:9"))
    release, started = threading.Event(), []

    def copy(registry: str, repo: str, reference: str) -> None:
        started.append(reference)
        release.wait(60)

    filler = OnDemand(config.registries, copy, wait=0.001)
    try:
        for n in range(MAX_FLIGHTS):
            with pytest.raises(ApiError, match="being mirrored"):
                filler.fill_image("mirror/library/alpine", f"3.{n}")
        with pytest.raises(ApiError, match="too many images") as refused:
            filler.fill_image("mirror/library/alpine", "3.x")
        assert refused.value.status == 503 and refused.value.headers["Retry-After"]
    finally:
        release.set()
        filler.close()
    assert "3.x" not in started


def test_a_closed_filler_starts_nothing_and_answers_each_fill(tmp_path: Path) -> None:
    """A keep-alive connection is still served while the replica stops: past close() an
    image pull is a 503 its client retries elsewhere, a referrers listing is answered from
    the store, and no copy starts."""
    config = load_config(ondemand_config(tmp_path, "http://127.0.0.1:9"))
    started: list[str] = []

    def copy(registry: str, repo: str, reference: str) -> None:
        started.append(reference)

    filler = OnDemand(config.registries, copy, wait=60)
    filler.close()
    with pytest.raises(ApiError, match="stopping") as refused:
        filler.fill_image("mirror/library/alpine", "3.20")
    assert refused.value.status == 503 and refused.value.headers["Retry-After"]
    filler.fill_referrers("mirror/library/alpine", Digest.parse("sha256:" + "cd" * 32), None)
    assert started == []


def test_sigterm_ends_a_replica_whose_copy_waits_on_absent_workers(
    seeded_registry: Seeded, private_redis: RedisServer, tmp_path: Path
) -> None:
    """The copy is the workers' task: the stopping replica stops waiting for it instead of
    holding its process up to an hour."""
    config = through_absent_workers(tmp_path, seeded_registry[0].url, private_redis.url)
    with ServeProcess(config) as serve:
        got = requests.get(f"{serve.url}/v2/mirror/library/alpine/manifests/3.20", timeout=30)
        assert got.status_code == 503  # no worker runs: the copy waits
        serve.stop()  # SIGTERM, then SIGKILL if it has not ended within STOP_TIMEOUT
        assert serve.returncode == 0, serve.output()[-2000:]


def test_a_referrers_listing_past_the_wait_is_answered_and_a_fresh_one_copies_nothing(
    tmp_path: Path,
) -> None:
    """A listing is never failed by its copy (a 503 fails ``notation verify``): past the
    wait it is answered from the store. Listings of a subject copied moments ago share
    that copy, until REFERRERS_FRESH_SECONDS have passed."""
    config = load_config(ondemand_config(tmp_path, "http://127.0.0.1:9"))
    release, started, counted = threading.Event(), [], []
    now = [1000.0]
    subject = Digest.parse("sha256:" + "ab" * 32)
    name = "mirror/library/app"

    def stuck_copy(registry: str, repo: str, reference: str) -> None:
        release.wait(60)

    def copy(registry: str, repo: str, reference: str) -> None:
        started.append(reference)

    def counter(kind: str, outcome: str) -> None:
        counted.append(outcome)

    stuck = OnDemand(config.registries, stuck_copy, 0.001, counter)
    try:
        stuck.fill_referrers(name, subject, None)  # still copying: answered all the same
    finally:
        release.set()
        stuck.close()
    filler = OnDemand(config.registries, copy, 60, counter, clock=lambda: now[0])
    try:
        filler.fill_referrers(name, subject, None)
        filler.fill_referrers(name, subject, SBOM)
        now[0] += REFERRERS_FRESH_SECONDS
        filler.fill_referrers(name, subject, None)
    finally:
        filler.close()
    assert counted == ["timeout", "ok", "fresh", "ok"]
    assert started == [str(subject)] * 2


def through_absent_workers(directory: Path, upstream: str, redis_url: str) -> Path:
    """A config whose copies are the workers' tasks (none runs), waited for 1ms."""
    config = ondemand_config(directory, upstream, onDemandTimeout="1ms")
    doc = yaml.safe_load(config.read_text())
    doc["syncworker"] = {"redis": redis_url, "serve": doc["syncworker"]["serve"]}
    config.write_text(yaml.safe_dump(doc))
    return config


def test_a_copy_through_the_workers_is_followed_by_its_request_not_its_result(
    seeded_registry: Seeded, private_redis: RedisServer, tmp_path: Path
) -> None:
    """Celery's Redis result backend subscribes to the result of every task it sends (and
    drops the subscription with the AsyncResult); nothing in serve reads that connection,
    so its replies pile up in the socket. The copy is followed through its request in
    Redis instead, as the HTTP API follows its tasks, and nothing subscribes."""
    config = through_absent_workers(tmp_path, seeded_registry[0].url, private_redis.url)
    client = redis.Redis.from_url(private_redis.url)
    with ServeProcess(config) as serve:
        got = requests.get(f"{serve.url}/v2/mirror/library/alpine/manifests/3.20", timeout=30)
        assert got.status_code == 503  # no worker runs: the copy waits
        pause = threading.Event()
        for _ in range(600):  # until the copy's task is with the broker
            if client.llen(QUEUE_ONDEMAND):
                break
            pause.wait(0.1)
        requested = list(client.scan_iter(match="*request:*"))
        subscribed = [name for name in client.info("commandstats") if "subscribe" in name]
    assert subscribed == []
    assert len(requested) == 1 and client.hget(requested[0], "state") == b"queued"
