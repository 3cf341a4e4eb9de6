"""``syncworker serve`` over a mirrored filesystem store: the pull side of the distribution
spec, as the real command answers it, checked with plain HTTP and with skopeo.

The mirror is the standard corpus (tests/support/corpus.py) synced by ``syncworker sync``;
every digest compared is the upstream's.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.command import ROOT, START_TIMEOUT, SYNCWORKER
from tests.support.corpus import Corpus
from tests.support.images import make_artifact, make_image
from tests.support.mirror import SKOPEO_READABLE, run_sync, write_sync_config
from tests.support.ports import LOOPBACK, free_port, wait_until
from tests.support.process import stop_process
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.serve_server import ServeProcess

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SBOM_TYPE = "application/spdx+json"
SKOPEO_TIMEOUT = 120


def mirror_of(seeded: tuple[RegistryServer, Corpus], directory: Path, **settings: str) -> Path:
    """The standard corpus synced into a store under ``directory``; the config's path."""
    registry, _ = seeded
    config = write_sync_config(
        directory, directory / "store", [{"urls": [registry.url]}], settings=settings or None
    )
    run = run_sync(config)
    assert run.code == 0, run.output
    return config


@pytest.fixture(scope="module")
def serve(
    seeded_registry: tuple[RegistryServer, Corpus], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    config = mirror_of(seeded_registry, tmp_path_factory.mktemp("serve"))
    with ServeProcess(config) as server:
        yield server


def skopeo_digest(host: str, repo: str, tag: str, out: Path) -> str:
    """The digest of what ``skopeo copy --all --preserve-digests`` copied of repo:tag.

    Read with ``skopeo inspect --raw`` instead: a referrers tag-schema index
    (``sha256-<hex>``: artifacts, no platforms), which skopeo refuses to copy with
    --preserve-digests ("must be converted") from the upstream registry just the same; and
    an image with a foreign layer, which the mirror never holds (image-spec: fetched from
    its ``urls``; the test's URLs lead nowhere, and skopeo then asks the registry)."""
    image = f"docker://{host}/{repo}:{tag}"
    if (tag.startswith("sha256-") and not tag.endswith(".sig")) or repo == "windows/foreign":
        command = ["skopeo", "inspect", "--raw", "--tls-verify=false", image]
    else:
        out.mkdir(parents=True)
        command = ["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                   image, f"dir:{out}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=SKOPEO_TIMEOUT, check=False)
    assert done.returncode == 0, f"{repo}:{tag}: {done.stderr.decode()}"
    raw = done.stdout if "inspect" in command else (out / "manifest.json").read_bytes()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def mismatches(host: str, corpus: Corpus, out: Path) -> list[str]:
    """Every tag of the corpus whose copy through ``host`` has another digest."""
    found = []
    for repo, tags in sorted(corpus.tags.items()):
        for tag, digest in sorted(tags.items()):
            copied = skopeo_digest(host, repo, tag, out / repo / tag)
            if copied != digest:
                found.append(f"{repo}:{tag}")
    return found


def test_skopeo_copies_every_tag_with_the_upstream_digests(
    serve: ServeProcess, seeded_registry: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    _, corpus = seeded_registry
    assert mismatches(serve.host, corpus, tmp_path) == []


def test_the_skopeo_check_fails_on_a_registry_serving_other_content(
    seeded_registry: tuple[RegistryServer, Corpus], make_registry: type, tmp_path: Path
) -> None:
    """The check above can fail: a registry holding other bytes under one tag is caught."""
    from tests.support.images import make_image
    from tests.support.push import push_image

    _, corpus = seeded_registry
    other = make_registry()
    push_image(other.url, "docker/hello", "latest", make_image("not-hello", fmt="docker"))
    wrong = Corpus(tags={"docker/hello": corpus.tags["docker/hello"]})
    assert mismatches(other.host, wrong, tmp_path) == ["docker/hello:latest"]


def test_manifests_by_tag_and_digest_with_their_type_and_digest(
    serve: ServeProcess, seeded_registry: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = seeded_registry
    for name, media_type in [("docker_image", DOCKER_MANIFEST), ("oci_index", OCI_INDEX)]:
        pushed = corpus[name]
        for ref in (pushed.tag, pushed.digest):
            url = f"{serve.url}/v2/{pushed.repo}/manifests/{ref}"
            got = requests.get(url, timeout=30)
            assert got.status_code == 200, got.text
            assert got.headers["Content-Type"] == media_type
            assert got.headers["Docker-Content-Digest"] == pushed.digest
            assert got.content == pushed.manifest.raw
            head = requests.head(url, timeout=30)
            assert head.status_code == 200
            assert head.headers["Content-Length"] == str(len(pushed.manifest.raw))
            assert head.headers["Content-Type"] == media_type and not head.content


def test_unknown_names_manifests_and_blobs_are_the_specs_errors(serve: ServeProcess) -> None:
    cases = [
        ("/v2/no/such/manifests/latest", 404, "NAME_UNKNOWN"),
        ("/v2/library/alpine/manifests/nope", 404, "MANIFEST_UNKNOWN"),
        ("/v2/library/alpine/manifests/sha256:" + "0" * 64, 404, "MANIFEST_UNKNOWN"),
        ("/v2/library/alpine/blobs/sha256:" + "0" * 64, 404, "BLOB_UNKNOWN"),
        ("/v2/library/alpine/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
        ("/v2/Bad/Name/tags/list", 400, "NAME_INVALID"),
        ("/v2/no/such/tags/list", 404, "NAME_UNKNOWN"),
        ("/v2/library/alpine/tags/list?n=x", 400, "PAGINATION_NUMBER_INVALID"),
    ]
    for path, status, code in cases:
        got = requests.get(serve.url + path, timeout=30)
        assert (got.status_code, got.json()["errors"][0]["code"]) == (status, code), path


def test_write_methods_are_unsupported_and_change_nothing(
    serve: ServeProcess, seeded_registry: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = seeded_registry
    pushed = corpus["alpine_3.19"]
    manifest_url = f"{serve.url}/v2/{pushed.repo}/manifests/{pushed.tag}"
    attempts = [
        ("PUT", manifest_url, b"{}"),
        ("DELETE", manifest_url, b""),
        ("POST", f"{serve.url}/v2/library/alpine/blobs/uploads/", b""),
        ("PATCH", f"{serve.url}/v2/library/alpine/blobs/uploads/abc", b"x"),
        ("DELETE", f"{serve.url}/v2/library/alpine/blobs/{pushed.digest}", b""),
    ]
    for method, url, body in attempts:
        got = requests.request(method, url, data=body, timeout=30)
        assert got.status_code == 405, (method, url)
        assert got.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert requests.get(manifest_url, timeout=30).content == pushed.manifest.raw


def test_blobs_whole_in_ranges_and_by_head(
    serve: ServeProcess, seeded_registry: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = seeded_registry
    layer = corpus["alpine_3.19"].manifest.blobs[-1]
    url = f"{serve.url}/v2/library/alpine/blobs/{layer.digest}"
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and whole.content == layer.data
    assert whole.headers["Docker-Content-Digest"] == layer.digest
    size = len(layer.data)
    head = requests.head(url, timeout=30)
    assert head.headers["Content-Length"] == str(size) and not head.content
    part = requests.get(url, headers={"Range": "bytes=3-9"}, timeout=30)
    assert part.status_code == 206 and part.content == layer.data[3:10]
    assert part.headers["Content-Range"] == f"bytes 3-9/{size}"
    tail = requests.get(url, headers={"Range": "bytes=-5"}, timeout=30)
    assert tail.status_code == 206 and tail.content == layer.data[-5:]
    past = requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=30)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{size}"


def test_tags_and_catalog_paginate_with_link(
    serve: ServeProcess, seeded_registry: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = seeded_registry
    assert collect(serve.url, "/v2/library/alpine/tags/list?n=3", "tags") == sorted(
        corpus.tags["library/alpine"]
    )
    assert collect(serve.url, "/v2/_catalog?n=2", "repositories") == corpus.repositories
    page = requests.get(f"{serve.url}/v2/_catalog?n=2&last=multi/oci", timeout=30).json()
    assert page["repositories"] == ["team/sub/app", "windows/foreign"]


def collect(base: str, path: str, key: str) -> list[str]:
    """Every item of a paginated list, following ``Link`` until it is absent."""
    found: list[str] = []
    while path:
        got = requests.get(base + path, timeout=30)
        assert got.status_code == 200, got.text
        found += got.json()[key]
        link = got.headers.get("Link")
        path = link.split(";")[0].strip("<>") if link else ""
    return found


def test_referrers_listed_and_filtered_by_artifact_type(
    serve: ServeProcess, seeded_registry: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = seeded_registry
    subject, sbom = corpus["alpine_3.19"], corpus["sbom"]
    url = f"{serve.url}/v2/library/alpine/referrers/{subject.digest}"
    listed = requests.get(url, timeout=30)
    assert listed.status_code == 200 and listed.headers["Content-Type"] == OCI_INDEX
    assert sbom.manifest.referrer_descriptor() in listed.json()["manifests"]
    assert "OCI-Filters-Applied" not in listed.headers
    filtered = requests.get(url, params={"artifactType": SBOM_TYPE}, timeout=30)
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert filtered.json()["manifests"] == [sbom.manifest.referrer_descriptor()]
    none = requests.get(url, params={"artifactType": "application/x-none"}, timeout=30)
    assert none.json()["manifests"] == []


def test_docker_types_served_as_their_bytes_under_layout_media_types_oci(
    seeded_registry: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    """``layoutMediaTypes: oci`` lists a Docker manifest under its OCI twin in index.json;
    the Content-Type is still the type of its bytes (kept in an annotation)."""
    _, corpus = seeded_registry
    config = mirror_of(seeded_registry, tmp_path, **SKOPEO_READABLE)
    index = json.loads((tmp_path / "store/docker/hello/index.json").read_text())
    assert index["manifests"][0]["mediaType"] == OCI_MANIFEST
    pushed = corpus["docker_image"]
    with ServeProcess(config) as server:
        got = requests.get(f"{server.url}/v2/docker/hello/manifests/latest", timeout=30)
    assert got.headers["Content-Type"] == DOCKER_MANIFEST
    assert got.headers["Docker-Content-Digest"] == pushed.digest


def test_metrics_count_requests_by_route_and_code_and_bytes_served(
    seeded_registry: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    _, corpus = seeded_registry
    pushed = corpus["alpine_3.19"]
    port = free_port()
    config = mirror_of(seeded_registry, tmp_path)
    with ServeProcess(config, extra=("--metrics-port", str(port))) as serve:
        got = requests.get(f"{serve.url}/v2/{pushed.repo}/manifests/{pushed.tag}", timeout=30)
        requests.get(f"{serve.url}/v2/{pushed.repo}/manifests/nope", timeout=30)
        requests.put(f"{serve.url}/v2/{pushed.repo}/manifests/x", data=b"{}", timeout=30)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text

    def sample(line: str) -> float:
        found = [row for row in text.splitlines() if row.startswith(line + " ")]
        return float(found[0].split()[-1]) if found else 0.0

    requests_total = "syncworker_serve_requests_total"
    assert sample(f'{requests_total}{{code="200",method="GET",route="manifest"}}') == 1
    assert sample(f'{requests_total}{{code="404",method="GET",route="manifest"}}') == 1
    assert sample(f'{requests_total}{{code="405",method="PUT",route="manifest"}}') == 1
    sent = sample('syncworker_serve_bytes_total{route="manifest"}')
    assert sent >= len(got.content)


def test_it_says_where_it_serves_from_at_the_default_log_level(tmp_path: Path) -> None:
    """One plain line on stderr, without -v: the store's directory and the address; no
    log level, no Python repr."""
    config = write_sync_config(tmp_path, tmp_path / "store", [{"urls": ["http://127.0.0.1:9"]}])
    port = free_port()
    err = tmp_path / "serve.err"
    with err.open("w") as err_file:
        serving = subprocess.Popen(
            [*SYNCWORKER, "serve", "-c", str(config), "--listen", f"{LOOPBACK}:{port}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err_file,
        )  # fmt: skip
    try:
        assert wait_until(lambda: "serving" in err.read_text(), timeout=START_TIMEOUT)
    finally:
        stop_process(serving)
    line = f"syncworker: serving {tmp_path / 'store'} (read-only) on http://{LOOPBACK}:{port}"
    assert err.read_text().splitlines() == [line]


def test_a_read_sent_with_a_chunked_body_ends_its_connection(tmp_path: Path) -> None:
    """A GET whose body is framed by Transfer-Encoding (RFC 9112 section 6.1) is answered,
    then its connection closed: the unread body is never taken for the next request, which
    a proxy in front would pair with another client's (request smuggling)."""
    config = write_sync_config(tmp_path, tmp_path / "store", [{"urls": ["http://127.0.0.1:9"]}])
    smuggled = b"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with (
        ServeProcess(config) as serve,
        socket.create_connection((LOOPBACK, serve.port), timeout=30) as conn,
    ):
        conn.sendall(head + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in status.split(b"\r\n")[1:])
    length = int(fields[b"Content-Length"])
    assert rest[length:] == b""
    assert status.startswith(b"HTTP/1.1 200") and b"Connection: close" in status


def test_an_htpasswd_file_gone_bad_is_an_error_answer_and_a_log_line(tmp_path: Path) -> None:
    """An edit that breaks the file (it is read again when it changes) refuses every
    request with the spec's error and says why in the log, instead of dropping
    connections with a traceback."""
    htpasswd = tmp_path / "htpasswd"
    made = subprocess.run(
        ["htpasswd", "-Bbn", "reader", "pw"], capture_output=True, text=True, check=True
    )
    htpasswd.write_text(made.stdout)
    settings = {"serve": {"htpasswd": str(htpasswd)}}
    registries = [{"urls": ["http://127.0.0.1:9"]}]
    config = write_sync_config(tmp_path, tmp_path / "store", registries, settings=settings)
    with ServeProcess(config) as serve:
        assert requests.get(f"{serve.url}/v2/", auth=("reader", "pw"), timeout=30).ok
        htpasswd.write_text("reader:pw\n")
        got = requests.get(f"{serve.url}/v2/", auth=("reader", "pw"), timeout=30)
        assert got.status_code == 500 and got.json()["errors"][0]["code"] == "UNKNOWN"
        assert f"{htpasswd} line 1: not user:bcrypt-hash" in serve.output()
        htpasswd.unlink()
        gone = requests.get(f"{serve.url}/v2/", auth=("reader", "pw"), timeout=30)
        assert gone.status_code == 500
        assert "Traceback" not in serve.output()


def test_a_referrer_gone_from_the_store_is_left_out_of_the_listing(
    make_registry: type, tmp_path: Path
) -> None:
    """A manifest listed in ``index.json`` whose blob a prune and gc removed since is
    logged and left out; the other referrers are still answered."""
    upstream = make_registry()
    subject = make_image("gone-referrer")
    push_image(upstream.url, "app", "1", subject)
    kept, gone = (
        make_artifact(subject, artifact_type=SBOM_TYPE, payload=f'{{"n": {n}}}'.encode())
        for n in (1, 2)
    )
    for artifact in (kept, gone):
        push_image(upstream.url, "app", None, artifact)
    config = write_sync_config(tmp_path, tmp_path / "store", [{"urls": [upstream.url]}])
    assert run_sync(config).code == 0
    (tmp_path / "store/app/blobs" / gone.digest.replace(":", "/")).unlink()
    with ServeProcess(config) as serve:
        got = requests.get(f"{serve.url}/v2/app/referrers/{subject.digest}", timeout=30)
        output = serve.output()
    assert got.status_code == 200, got.text
    assert [d["digest"] for d in got.json()["manifests"]] == [kept.digest]
    assert f"listed manifest {gone.digest} is absent" in output
