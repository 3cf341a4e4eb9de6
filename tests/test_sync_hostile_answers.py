"""``syncworker sync``, as a subprocess, against upstreams whose answers are malformed.

Each malformed answer (JSON nested past Python's recursion limit, JSON of the wrong types,
header values that are not what they claim, a token no header can carry, bodies shorter or
longer than announced) must fail exactly the one thing it concerns: that registry's
catalog, that repository or that tag. It is named in the summary with a one-line cause,
everything else (a real registry beside, and the healthy repositories of the same stub)
is mirrored, the exit code is 1, and no Python traceback reaches the user.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.hostile import Answer, HostileRegistry, json_answer
from tests.support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    canonical_json,
    make_image,
    make_index,
)
from tests.support.mirror import check_store, mirrored_digest, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

# Far past CPython's recursion limit (1000): json.loads raises RecursionError.
DEEP = 100_000
SYNC_TIMEOUT = 300.0


def _nested(depth: int = DEEP) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass
class Shape:
    """What a hostile stub serves, and the failures the run must report for it."""

    repos: list[str] = field(default_factory=list)
    # (registry name, repo, tag or None): exactly these failure lines, no others.
    expected: list[tuple[str, str, str | None]] = field(default_factory=list)


ShapeMaker = Callable[[HostileRegistry, str], Shape]


def _image_with(repo: str, upstream: HostileRegistry, tag: str, change: dict[str, object]) -> None:
    base = make_image(("hostile-answers", repo, tag))
    body = {**base.json, **change}
    upstream.serve_image(repo, tag, Manifest(canonical_json(body), OCI_MANIFEST, blobs=base.blobs))


def _wrong_types(upstream: HostileRegistry, name: str) -> Shape:
    repo = "types/app"
    base = make_image(("hostile-answers", "types"))
    layer = base.json["layers"][0]
    cases = {
        "bool-size": {"layers": [{**layer, "size": True}]},
        "object-artifact-type": {"artifactType": {"evil": 1}},
        "string-annotations": {"annotations": "not a map"},
        "list-urls": {"layers": [{**layer, "urls": "http://x"}]},
    }
    for tag, change in cases.items():
        _image_with(repo, upstream, tag, change)
    upstream.serve_tags(repo, [*cases, "fine"])
    upstream.serve_image(repo, "fine", make_image(("hostile-answers", "types-fine")))
    return Shape([repo], [(name, repo, tag) for tag in cases])


def _deep_json(upstream: HostileRegistry, name: str) -> Shape:
    nested = Manifest(
        b'{"schemaVersion": 2, "mediaType": "%s", "x": %s}' % (OCI_MANIFEST.encode(), _nested()),
        OCI_MANIFEST,
    )
    upstream.serve_tags("deep/manifest", ["v1", "fine"])
    upstream.serve_manifest("deep/manifest", "v1", nested)
    upstream.serve_image("deep/manifest", "fine", make_image(("hostile-answers", "deep-fine")))
    upstream.route("GET", "/v2/deep/tags/list", Answer(200, _nested()))
    # A 404 whose error body nests past the limit: the tag fails as "not found", no crash.
    upstream.serve_tags("deep/error", ["v1"])
    upstream.route("GET", "/v2/deep/error/manifests/v1", Answer(404, _nested()))
    upstream.route("HEAD", "/v2/deep/error/manifests/v1", Answer(404))
    return Shape(
        ["deep/manifest", "deep", "deep/error"],
        [(name, "deep/manifest", "v1"), (name, "deep", None), (name, "deep/error", "v1")],
    )


def _odd_headers(upstream: HostileRegistry, name: str) -> Shape:
    repo = "headers/app"
    upstream.serve_tags(repo, ["length", "digest", "fine"])
    image = make_image(("hostile-answers", "length"))
    upstream.serve_image(repo, "length", image)
    # "²".isdigit() is True in Python, int("²") raises; on the wire it is latin-1 0xB2.
    headers = {"Content-Type": OCI_MANIFEST, "Content-Length": "²"}
    # By tag and by digest: a client that HEADs a new tag first (it may not yet know
    # whether the upstream counts pulls) then GETs it by digest.
    for ref in ("length", image.digest):
        upstream.route("GET", f"/v2/{repo}/manifests/{ref}", Answer(200, image.raw, headers))
    # UTF-8 bytes (not latin-1 text) in a header: the client reads them as latin-1.
    other = make_image(("hostile-answers", "digest-header"))
    upstream.serve_image(repo, "digest", other)
    snowman = "sha256:\u2603".encode().decode("latin-1")
    digest_headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": snowman}
    upstream.route("GET", f"/v2/{repo}/manifests/digest", Answer(200, other.raw, digest_headers))
    head = {**digest_headers, "Content-Length": str(other.size)}
    upstream.route("HEAD", f"/v2/{repo}/manifests/digest", Answer(200, b"", head))
    upstream.serve_image(repo, "fine", make_image(("hostile-answers", "headers-fine")))
    return Shape([repo], [(name, repo, "length"), (name, repo, "digest")])


def _bad_token(upstream: HostileRegistry, name: str) -> Shape:
    """A bearer realm, named for this repository alone, hands out a token no HTTP header
    can carry."""
    repo = "token/app"
    challenge = f'Bearer realm="{upstream.url}/token",service="hostile"'
    refusal = json_answer({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
    refusal.headers["WWW-Authenticate"] = challenge
    upstream.route("GET", f"/v2/{repo}/tags/list", refusal)
    upstream.route("GET", "/token", json_answer({"token": "caf\u00e9-\u2603"}))
    return Shape([repo], [(name, repo, None)])


def _body_lengths(upstream: HostileRegistry, name: str) -> Shape:
    repo = "lengths/app"
    short, long_ = make_image(("hostile-answers", "short")), make_image(("hostile-answers", "long"))
    upstream.serve_tags(repo, ["short", "long"])
    upstream.serve_image(repo, "short", short)
    upstream.serve_image(repo, "long", long_)
    layer = short.blobs[-1]
    cut = {"Content-Length": str(layer.size)}
    upstream.route("GET", f"/v2/{repo}/blobs/{layer.digest}", Answer(200, layer.data[:10], cut))
    extra = long_.blobs[-1]
    upstream.route("GET", f"/v2/{repo}/blobs/{extra.digest}", Answer(200, extra.data + b"tail"))
    return Shape([repo], [(name, repo, "short"), (name, repo, "long")])


def _bad_referrers(upstream: HostileRegistry, name: str) -> Shape:
    """The referrers API lists a descriptor whose size is a string. A client learns once
    per registry whether it has the API, so this shape gets a stub of its own."""
    repo = "refs/app"
    image = make_image(("hostile-answers", "refs"))
    upstream.serve_tags(repo, ["v1"])
    upstream.serve_image(repo, "v1", image)
    entry = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": "12"}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
    upstream.route(
        "GET", f"/v2/{repo}/referrers/{image.digest}", json_answer(index, media_type=OCI_INDEX)
    )
    return Shape([repo], [(name, repo, "v1")])


def _bad_platform(upstream: HostileRegistry, name: str) -> Shape:
    """A platform of the wrong type in an index entry."""
    child = make_image(("hostile-answers", "platform-child"))
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [child.descriptor(platform={"os": "linux", "architecture": ["amd64"]})],
    }
    upstream.serve_tags("refs/index", ["v1"])
    upstream.serve_image(
        "refs/index", "v1", Manifest(canonical_json(body), OCI_INDEX, children=(child,))
    )
    return Shape(["refs/index"], [(name, "refs/index", "v1")])


SHAPES: list[ShapeMaker] = [
    _wrong_types,
    _deep_json,
    _odd_headers,
    _body_lengths,
    _bad_platform,
]
# Shapes that change what a client learns of its whole registry: one stub each.
OWN_STUB_SHAPES: list[ShapeMaker] = [_bad_token, _bad_referrers]


@pytest.fixture
def stubs() -> Iterator[list[HostileRegistry]]:
    servers = [HostileRegistry() for _ in range(3 + len(OWN_STUB_SHAPES))]
    yield servers
    for server in servers:
        server.close()


def _failures(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.strip().startswith("FAILED")]


def test_each_malformed_answer_fails_only_its_own_thing(
    stubs: list[HostileRegistry], registry: RegistryServer, tmp_path: Path
) -> None:
    upstream, deep_catalog, typed_catalog, *own = stubs
    real = make_index(("hostile-answers", "real"))
    push_image(registry.url, "real/app", "v1", real)
    fine = make_image(("hostile-answers", "stub-fine"))
    upstream.serve_tags("fine/app", ["v1"])
    upstream.serve_image("fine/app", "v1", fine)
    expected: list[tuple[str, str, str | None]] = []
    repos = ["fine/app"]
    for make in SHAPES:
        shape = make(upstream, "stub")
        expected += shape.expected
        repos += shape.repos
    upstream.route("GET", "/v2/_catalog", json_answer({"repositories": repos}))
    entries: list[dict[str, object]] = []
    for make, stub in zip(OWN_STUB_SHAPES, own, strict=True):
        name = make.__name__.strip("_")
        shape = make(stub, name)
        stub.route("GET", "/v2/_catalog", json_answer({"repositories": shape.repos}))
        expected += shape.expected
        entries.append({"name": name, "urls": [stub.url]})
    # Two more stubs whose catalogs are malformed: only their catalog fails.
    deep_catalog.route("GET", "/v2/_catalog", Answer(200, b'{"repositories": ' + _nested()))
    typed_catalog.route("GET", "/v2/_catalog", json_answer({"repositories": "real/app"}))
    expected += [("deep-catalog", "(catalog)", None), ("typed-catalog", "(catalog)", None)]
    root = tmp_path / "store"
    config = write_sync_config(
        tmp_path,
        root,
        [
            {"name": "stub", "urls": [upstream.url]},
            {"name": "deep-catalog", "urls": [deep_catalog.url]},
            {"name": "typed-catalog", "urls": [typed_catalog.url]},
            *entries,
            {"name": "real", "urls": [registry.url], "repos": ["real/app"]},
        ],
    )

    done = subprocess.run(
        [sys.executable, "-m", "syncworker", "-v", "sync", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=SYNC_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        check=False,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    failures = _failures(done.stdout)
    assert len(failures) == len(expected), "\n".join(failures)
    for registry_name, repo, tag in expected:
        where = f"{registry_name}/{repo}:{tag}: " if tag else f"{registry_name}/{repo}: "
        line = next((f for f in failures if where in f), None)
        assert line is not None, f"no failure names {where!r}:\n{done.stdout}"
        cause = line[line.index(where) + len(where) :]
        assert cause.strip() and "\n" not in cause and len(cause) < 400, line
    assert mirrored_digest(root, "real/app", "v1") == real.digest
    assert mirrored_digest(root, "fine/app", "v1") == fine.digest
    for repo in ("types/app", "deep/manifest", "headers/app"):
        assert mirrored_digest(root, repo, "fine")
    check_store(root)
