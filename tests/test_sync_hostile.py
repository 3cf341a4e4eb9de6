"""``syncworker sync`` against an upstream that lies, and against bad configuration.

Each lie is refused for the image it concerns: the run goes on (a good repository in the
same catalog is mirrored), exits 1, names the repository, tag and cause in its summary, and
nothing of the refused image is reachable from any ``index.json``; no file is written
outside the store root. A bad configuration exits 2 before the store is touched.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.support.hostile import Answer, HostileRegistry, json_answer
from tests.support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    canonical_json,
    make_artifact,
    make_image,
    make_index,
)
from tests.support.mirror import (
    assert_no_secret,
    check_store,
    mirrored_digest,
    run_sync,
    write_sync_config,
)

GOOD_REPO, GOOD_TAG = "good/app", "v1"
# distribution-spec: manifests over 4 MiB may be refused; ours are (oci.MAX_MANIFEST_BYTES).
OVER_MANIFEST_LIMIT = 4 * 1024 * 1024 + 1


@dataclass
class Lie:
    """What one hostile scenario serves, and what the run must say about it."""

    repos: list[str]
    expected: list[tuple[str, str | None, str]]  # (repo, tag or None, cause regex)
    refused: set[str] = field(default_factory=set)  # digests that must stay unreachable
    never_asked: list[str] = field(default_factory=list)  # request paths that must not occur
    # Blobs fetched in parallel with the one that lied, or a tree copied before its
    # referrers turned out to loop, stay as unreferenced files (a later run reuses them).
    orphans_ok: bool = False

    def refuse(self, *images: Manifest) -> None:
        for image in images:
            self.refused |= {m.digest for m in image.walk()} | image.all_blob_digests()


def _digest_mismatch(upstream: HostileRegistry) -> Lie:
    image, other = make_image("hostile-digest"), make_image("hostile-digest-other")
    upstream.serve_tags("lie/mbytes", ["v1"])
    upstream.serve_image("lie/mbytes", "v1", image)
    upstream.serve_manifest("lie/mbytes", "v1", image, body=other.raw)
    lie = Lie(["lie/mbytes"], [("lie/mbytes", "v1", r"(?i)digest")])
    lie.refuse(image, other)
    return lie


def _oversized_manifest(upstream: HostileRegistry) -> Lie:
    base = make_image("hostile-big")
    body = {**base.json, "annotations": {"padding": "x" * OVER_MANIFEST_LIMIT}}
    image = Manifest(canonical_json(body), OCI_MANIFEST, blobs=base.blobs)
    upstream.serve_tags("lie/huge", ["v1"])
    upstream.serve_image("lie/huge", "v1", image)
    lie = Lie(["lie/huge"], [("lie/huge", "v1", r"(?i)MiB|too (large|big)|limit|exceed")])
    lie.refuse(image)
    return lie


def _blob_mismatch(upstream: HostileRegistry) -> Lie:
    image = make_image("hostile-blob")
    layer = image.blobs[-1]
    upstream.serve_tags("lie/layer", ["v1"])
    upstream.serve_image("lie/layer", "v1", image)
    # Same length, other bytes: only the digest check can catch it.
    upstream.serve_blob("lie/layer", layer, body=bytes(reversed(layer.data)))
    lie = Lie(["lie/layer"], [("lie/layer", "v1", r"(?i)digest")], orphans_ok=True)
    lie.refuse(image)
    return lie


def _escaping_repo_names(upstream: HostileRegistry) -> Lie:
    lie = Lie(["../evil", "a/../../b", "Upper/Case", "/abs"], [])
    for index, repo in enumerate(lie.repos):
        image = make_image(("hostile-name", index))
        upstream.serve_tags(repo, ["v1"])
        upstream.serve_image(repo, "v1", image)
        lie.expected.append((repo, None, r"(?i)invalid|name"))
        lie.never_asked.append(f"/v2/{repo}/tags/list")
        lie.refuse(image)
    return lie


def _bad_tags(upstream: HostileRegistry) -> Lie:
    repo = "lie/refs"
    fine, evil = make_image("hostile-tags-fine"), make_image("hostile-tags-evil")
    bad = ["..", "a/b", "-dash"]
    upstream.serve_tags(repo, [*bad, "ok"])
    upstream.serve_image(repo, "ok", fine)
    for tag in bad:
        upstream.serve_manifest(repo, tag, evil)
    for blob in evil.blobs:
        upstream.serve_blob(repo, blob)
    lie = Lie([repo], [(repo, tag, r"(?i)invalid|tag") for tag in bad])
    lie.never_asked += [f"/v2/{repo}/manifests/{tag}" for tag in bad]
    lie.refuse(evil)
    return lie


def _unknown_algorithm(upstream: HostileRegistry) -> Lie:
    base = make_image("hostile-md5")
    layer = {**base.json["layers"][0], "digest": "md5:" + "0" * 32}
    body = {**base.json, "layers": [layer]}
    image = Manifest(canonical_json(body), OCI_MANIFEST, blobs=base.blobs[:1])
    upstream.serve_tags("lie/hash", ["v1"])
    upstream.serve_image("lie/hash", "v1", image)
    lie = Lie(["lie/hash"], [("lie/hash", "v1", r"(?i)md5|algorithm")])
    lie.refuse(image)
    return lie


def _referrer_cycle(upstream: HostileRegistry) -> Lie:
    """A lists R as its referrer and R lists A: following referrers never ends."""
    repo = "lie/loop"
    subject = make_image("hostile-cycle")
    referrer = make_artifact(
        subject, artifact_type="application/vnd.example.sbom", payload=b"cycle sbom"
    )
    upstream.serve_tags(repo, ["v1"])
    upstream.serve_image(repo, "v1", subject)
    upstream.serve_image(repo, referrer.digest, referrer)
    for of, listed in ((subject, referrer), (referrer, subject)):
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [listed.descriptor()]}
        answer = json_answer(index, media_type=OCI_INDEX)
        upstream.route("GET", f"/v2/{repo}/referrers/{of.digest}", answer)
    lie = Lie([repo], [(repo, "v1", r"(?i)cycle|ancestor|itself")], orphans_ok=True)
    lie.refuse(subject, referrer)
    return lie


def _type_says_index_body_says_manifest(upstream: HostileRegistry) -> Lie:
    """Content-Type an index, the body's own mediaType an image manifest: one document
    two readers would take differently (image-spec 1.0.2, CVE-2021-41190)."""
    base = make_image("hostile-type-header")
    image = Manifest(base.raw, OCI_INDEX, blobs=base.blobs)
    upstream.serve_tags("lie/typed", ["v1"])
    upstream.serve_image("lie/typed", "v1", image)
    lie = Lie(["lie/typed"], [("lie/typed", "v1", r"(?i)media ?type")])
    lie.refuse(image)
    return lie


def _index_with_layers(upstream: HostileRegistry) -> Lie:
    """No mediaType in the body, served as an index, but shaped as an image manifest:
    mirrored as an empty index its layers would never be fetched."""
    base = make_image("hostile-shape")
    body = {k: v for k, v in base.json.items() if k != "mediaType"}
    image = Manifest(canonical_json(body), OCI_INDEX, blobs=base.blobs)
    upstream.serve_tags("lie/shape", ["v1"])
    upstream.serve_image("lie/shape", "v1", image)
    lie = Lie(["lie/shape"], [("lie/shape", "v1", r"(?i)media ?type|layers|config")])
    lie.refuse(image)
    return lie


def _child_type_differs(upstream: HostileRegistry) -> Lie:
    """An index lists a child as an image manifest; the child says it is an index."""
    inner = make_index("hostile-child-inner")
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**inner.descriptor(), "mediaType": OCI_MANIFEST}],
    }
    outer = Manifest(canonical_json(body), OCI_INDEX, children=(inner,))
    upstream.serve_tags("lie/child", ["v1"])
    upstream.serve_image("lie/child", "v1", outer)
    lie = Lie(["lie/child"], [("lie/child", "v1", r"(?i)media ?type")])
    lie.refuse(outer)
    return lie


LIES: list[Callable[[HostileRegistry], Lie]] = [
    _digest_mismatch,
    _oversized_manifest,
    _blob_mismatch,
    _escaping_repo_names,
    _bad_tags,
    _unknown_algorithm,
    _referrer_cycle,
    _type_says_index_body_says_manifest,
    _index_with_layers,
    _child_type_differs,
]


@pytest.fixture
def upstream() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.close()


def _files_under(top: Path, skip: Path) -> set[str]:
    found: set[str] = set()
    for here, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if Path(here, d) != skip]
        found.update(os.path.join(here, name) for name in files + dirs)
    return found


def _stored_digests(root: Path) -> set[str]:
    """Every blob file in the store, referenced or not."""
    return {f"sha256:{path.name}" for path in root.glob("**/blobs/sha256/*")}


def _failure_lines(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.strip().startswith("FAILED")]


@pytest.mark.parametrize("make_lie", LIES, ids=[f.__name__.strip("_") for f in LIES])
def test_lie_is_refused_and_the_run_goes_on(
    upstream: HostileRegistry,
    make_lie: Callable[[HostileRegistry], Lie],
    tmp_path: Path,
) -> None:
    good = make_image("hostile-good")
    upstream.serve_tags(GOOD_REPO, [GOOD_TAG])
    upstream.serve_image(GOOD_REPO, GOOD_TAG, good)
    # This upstream has the referrers API (spec.md "Listing Referrers": then never a 404).
    no_referrers = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    upstream.route(
        "GET",
        f"/v2/{GOOD_REPO}/referrers/{good.digest}",
        json_answer(no_referrers, media_type=OCI_INDEX),
    )
    lie = make_lie(upstream)
    # The good repository last: refusals before it must not stop the walk.
    catalog = {"repositories": [*lie.repos, GOOD_REPO]}
    upstream.route("GET", "/v2/_catalog", json_answer(catalog))
    root = tmp_path / "inside" / "store"
    root.parent.mkdir()
    config = write_sync_config(tmp_path, root, [{"urls": [upstream.url]}])
    before = _files_under(tmp_path, root)

    run = run_sync(config)

    assert run.code == 1, run.output
    failures = _failure_lines(run.stdout)
    assert len(failures) == len(lie.expected), run.stdout
    for repo, tag, cause in lie.expected:
        where = f"/{repo}:{tag}: " if tag else f"/{repo}: "
        line = next((f for f in failures if where in f), None)
        assert line is not None, f"no failure names {where!r}:\n{run.stdout}"
        # The cause alone: a repository name must not be what matches it.
        reason = line[line.index(where) + len(where) :].replace(repo, "<repo>")
        assert re.search(cause, reason), line
    assert mirrored_digest(root, GOOD_REPO, GOOD_TAG) == good.digest
    reachable = set().union(*check_store(root).values())
    assert not reachable & lie.refused
    if not lie.orphans_ok:
        assert not _stored_digests(root) & lie.refused, "refused content was written"
    assert _files_under(tmp_path, root) == before
    # Refused names are refused before any request is made with them.
    asked = {path for _, path in upstream.requests}
    assert not asked & set(lie.never_asked)


# -- bad configuration ----------------------------------------------------------------


BAD_CONFIGS = {
    "unknown-key": (
        "extensions:\n  sync:\n    registries:\n"
        "      - urls: ['http://127.0.0.1:1']\n        contnet: [{prefix: '**'}]\n",
        "extensions.sync.registries[0].contnet",
    ),
    "bad-regex": (
        "extensions:\n  sync:\n    registries:\n"
        "      - urls: ['http://127.0.0.1:1']\n"
        "        content: [{prefix: '**', tags: {regex: '(unclosed'}}]\n",
        "extensions.sync.registries[0].content[0].tags.regex",
    ),
    "bad-glob": (
        "extensions:\n  sync:\n    registries:\n"
        "      - urls: ['http://127.0.0.1:1']\n        content: [{prefix: 'a/[b'}]\n",
        "extensions.sync.registries[0].content[0].prefix",
    ),
    "bad-duration": (
        "extensions:\n  sync:\n    registries:\n"
        "      - urls: ['http://127.0.0.1:1']\n        pollInterval: 5 parsecs\n",
        "extensions.sync.registries[0].pollInterval",
    ),
    "missing-credentials-file": (
        "extensions:\n  sync:\n    credentialsFile: /nonexistent/creds.json\n"
        "    registries:\n      - urls: ['http://127.0.0.1:1']\n",
        "extensions.sync.credentialsFile",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_field(name: str, tmp_path: Path) -> None:
    text, field_path = BAD_CONFIGS[name]
    root = tmp_path / "never-created"
    config = tmp_path / "bad.yaml"
    config.write_text(f"storage: {{rootDirectory: {root}}}\n{text}", encoding="utf-8")
    run = run_sync(config)
    assert run.code == 2, run.output
    assert field_path in run.stderr, run.stderr
    assert not root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


# -- catalog pagination ---------------------------------------------------------------


@pytest.mark.timeout(120)
def test_catalog_whose_next_page_never_advances(upstream: HostileRegistry, tmp_path: Path) -> None:
    """Every page says there is a next one after the same name: the walk must end."""
    good = make_image("hostile-catalog-loop")
    upstream.serve_tags(GOOD_REPO, [GOOD_TAG])
    upstream.serve_image(GOOD_REPO, GOOD_TAG, good)
    link = f'</v2/_catalog?last={GOOD_REPO}&n=1000>; rel="next"'
    page = json_answer({"repositories": [GOOD_REPO]})
    upstream.route("GET", "/v2/_catalog", replace(page, headers={**page.headers, "Link": link}))
    root = tmp_path / "store"
    run = run_sync(write_sync_config(tmp_path, root, [{"urls": [upstream.url]}]))
    assert run.code == 1, run.output
    failures = _failure_lines(run.stdout)
    assert len(failures) == 1 and "(catalog)" in failures[0], failures
    assert re.search("loop|advance", failures[0]), failures
    assert mirrored_digest(root, GOOD_REPO, GOOD_TAG) == good.digest
    catalog_gets = [path for _, path in upstream.requests if path == "/v2/_catalog"]
    assert len(catalog_gets) == 2


# -- presigned redirects --------------------------------------------------------------


def test_presigned_blob_redirect_leaks_no_signature(
    upstream: HostileRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Registries on object storage redirect blob GETs to presigned URLs; the signature in
    the query is a credential and must not reach output or logs, even at DEBUG."""
    image = make_image("hostile-presigned")
    upstream.serve_tags(GOOD_REPO, [GOOD_TAG])
    upstream.serve_image(GOOD_REPO, GOOD_TAG, image)
    upstream.route("GET", "/v2/_catalog", json_answer({"repositories": [GOOD_REPO]}))
    signature = "c2lnbmF0dXJlLW5ldmVyLWxvZ2dlZA"
    for index, blob in enumerate(image.blobs):
        storage = f"/storage/{index}"
        query = f"X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature={signature}{index}"
        location = f"{upstream.url}{storage}?{query}"
        upstream.route(
            "GET", f"/v2/{GOOD_REPO}/blobs/{blob.digest}", Answer(307, b"", {"Location": location})
        )
        upstream.route(
            "GET", storage, Answer(200, blob.data, {"Content-Type": "application/octet-stream"})
        )
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "store"
    run = run_sync(write_sync_config(tmp_path, root, [{"urls": [upstream.url]}]))
    assert run.code == 0, run.output
    assert mirrored_digest(root, GOOD_REPO, GOOD_TAG) == image.digest
    assert any(path.startswith("/storage/") for _, path in upstream.requests)
    assert_no_secret([run.output, caplog.text], signature)


# -- limits: blob size and the repository deadline --------------------------------------


def test_a_blob_over_max_blob_size_fails_its_tag_unfetched(
    upstream: HostileRegistry, tmp_path: Path
) -> None:
    """A descriptor may claim any size: over ``maxBlobSize`` the tag fails before a GET,
    and nothing is allocated for it."""
    good = make_image("limits-good", layer_size=500)
    base = make_image("limits-huge", layer_size=500)
    huge = {**base.json["layers"][0], "size": 2**62}
    image = Manifest(
        canonical_json({**base.json, "layers": [huge]}), OCI_MANIFEST, blobs=base.blobs[:1]
    )
    upstream.serve_tags("limits/app", ["good", "huge"])
    upstream.serve_image("limits/app", "good", good)
    upstream.serve_image("limits/app", "huge", image)
    upstream.route("GET", "/v2/_catalog", json_answer({"repositories": ["limits/app"]}))
    root = tmp_path / "store"
    config = write_sync_config(
        tmp_path, root, [{"urls": [upstream.url]}], settings={"maxBlobSize": 100_000}
    )
    run = run_sync(config)
    assert run.code == 1, run.output
    [failure] = _failure_lines(run.stdout)
    assert "limits/app:huge: " in failure and "maxBlobSize" in failure, failure
    assert mirrored_digest(root, "limits/app", "good") == good.digest
    assert upstream.count("GET", f"/v2/limits/app/blobs/{huge['digest']}") == 0


@pytest.mark.timeout(120)
def test_a_trickling_blob_fails_its_repository_at_sync_timeout(
    upstream: HostileRegistry, tmp_path: Path
) -> None:
    """One byte every 0.2 s never trips a read timeout; zot's syncTimeout ends it."""
    slow, good = make_image("deadline-slow"), make_image("deadline-good")
    for repo, image in (("slow/app", slow), (GOOD_REPO, good)):
        upstream.serve_tags(repo, ["v1"])
        upstream.serve_image(repo, "v1", image)
    layer = slow.blobs[-1]
    upstream.route(
        "GET", f"/v2/slow/app/blobs/{layer.digest}", Answer(200, layer.data, trickle=0.2)
    )
    upstream.route("GET", "/v2/_catalog", json_answer({"repositories": ["slow/app", GOOD_REPO]}))
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, [{"urls": [upstream.url], "syncTimeout": "2s"}])
    run = run_sync(config)
    assert run.code == 1, run.output
    [failure] = _failure_lines(run.stdout)
    assert "slow/app:v1: " in failure and "syncTimeout" in failure, failure
    assert mirrored_digest(root, GOOD_REPO, GOOD_TAG) == good.digest
    assert upstream.count("GET", f"/v2/slow/app/blobs/{layer.digest}") == 1
