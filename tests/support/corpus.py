"""Known content pushed into a test registry, described so tests can compare.

`seed_standard(registry)` pushes the corpus below and returns a `Corpus`; every repository,
tag and digest it pushed is listed there (including the referrers tag-schema tags the pusher
maintains). `seed_many(...)` pushes a large uniform corpus for scale tests and benchmarks.

Standard corpus (all images deterministic: the same digests on every run):

    library/alpine    3.18 3.19 3.20 latest(=3.20) 1.0.0 1.2.0 2.0.0 dev-xyz   OCI images
                      sha256-<3.19>.sig        cosign signature of 3.19
                      (untagged) sbom          SPDX artifact, subject = 3.19
                      (untagged) sbom-sig      notation-style signature, subject = sbom
                      sha256-<3.19>, sha256-<sbom>   referrers tag-schema indexes
    library/busybox   1.36                     OCI image sharing alpine's base layer
    team/sub/app      v1 v2                    nested name; shares the base layer
    docker/hello      latest                   Docker schema 2 image
    multi/oci         latest                   OCI index, linux/amd64 + linux/arm64/v8
    multi/docker      latest                   Docker manifest list, same platforms
    windows/foreign   ltsc2022                 Docker schema 2 with a foreign layer (`urls`)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import requests

from tests.support.client import Credentials, registry_session
from tests.support.images import (
    Blob,
    Manifest,
    cosign_signature_tag,
    make_artifact,
    make_cosign_signature,
    make_foreign_layer_image,
    make_image,
    make_index,
    make_layer,
    referrers_tag,
)
from tests.support.push import push_image

__all__ = ["Corpus", "Pushed", "RegistryLike", "seed_many", "seed_standard"]

ALPINE = "library/alpine"
ALPINE_TAGS = ("3.18", "3.19", "3.20", "1.0.0", "1.2.0", "2.0.0", "dev-xyz")
SBOM_TYPE = "application/spdx+json"
SIGNATURE_TYPE = "application/vnd.cncf.notary.signature"
# Enough for many pushes in flight on a 2-core CI box without overloading the registry.
PUSH_WORKERS = 8


class RegistryLike(Protocol):
    """What seeding needs of a registry (RegistryServer satisfies it)."""

    @property
    def url(self) -> str: ...

    @property
    def host(self) -> str: ...


@dataclass(frozen=True)
class Pushed:
    """One manifest pushed: where, under which tag (None: by digest only), and what."""

    repo: str
    tag: str | None
    manifest: Manifest = field(repr=False)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def media_type(self) -> str:
        return self.manifest.media_type


@dataclass
class Corpus:
    """Everything a seeding pushed. `items` names notable manifests (see module docstring)."""

    items: dict[str, Pushed] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> tag -> digest
    manifests: dict[str, set[str]] = field(default_factory=dict)  # repo -> every digest
    blobs: dict[str, set[str]] = field(default_factory=dict)  # repo -> blob digests
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def repositories(self) -> list[str]:
        """Sorted, as /v2/_catalog lists them."""
        return sorted(self.manifests)

    def digest(self, repo: str, tag: str) -> str:
        return self.tags[repo][tag]

    def __getitem__(self, name: str) -> Pushed:
        return self.items[name]

    def record(self, repo: str, tag: str | None, manifest: Manifest, name: str = "") -> Pushed:
        pushed = Pushed(repo, tag, manifest)
        with self._lock:
            if name:
                self.items[name] = pushed
            repo_tags = self.tags.setdefault(repo, {})
            if tag:
                repo_tags[tag] = manifest.digest
            self.manifests.setdefault(repo, set()).update(m.digest for m in manifest.walk())
            self.blobs.setdefault(repo, set()).update(manifest.all_blob_digests())
        return pushed

    def record_referrers_tag(self, repo: str, subject_digest: str, index_digest: str) -> None:
        with self._lock:
            self.tags[repo][referrers_tag(subject_digest)] = index_digest
            self.manifests[repo].add(index_digest)


class _Seeder:
    """Pushes and records in one step, so the corpus cannot drift from the registry."""

    def __init__(self, registry: RegistryLike, auth: Credentials | None, verify: bool | str):
        self.registry, self.auth, self.verify = registry, auth, verify
        self.corpus = Corpus()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def session(self) -> requests.Session:
        # One session per thread: requests.Session is not documented as thread-safe.
        if not hasattr(self._local, "session"):
            session = registry_session(self.auth, verify=self.verify)
            with self._lock:
                self._sessions.append(session)
            self._local.session = session
        current: requests.Session = self._local.session
        return current

    def __enter__(self) -> _Seeder:
        return self

    def __exit__(self, *exc: object) -> None:
        # Closed explicitly: a session dropped with its thread leaks sockets, and the
        # ResourceWarning fails whichever test is running when it is collected.
        for session in self._sessions:
            session.close()

    def push(self, repo: str, tag: str | None, manifest: Manifest, name: str = "") -> Pushed:
        push_image(self.registry.url, repo, tag, manifest, session=self.session())
        if manifest.subject:
            self._record_referrers(repo, manifest.subject["digest"])
        return self.corpus.record(repo, tag, manifest, name)

    def _record_referrers(self, repo: str, subject_digest: str) -> None:
        url = f"{self.registry.url}/v2/{repo}/manifests/{referrers_tag(subject_digest)}"
        response = self.session().head(
            url, headers={"Accept": "application/vnd.oci.image.index.v1+json"}, timeout=30
        )
        response.raise_for_status()
        self.corpus.record_referrers_tag(
            repo, subject_digest, response.headers["Docker-Content-Digest"]
        )


def seed_standard(
    registry: RegistryLike, *, auth: Credentials | None = None, verify: bool | str = True
) -> Corpus:
    """Push the standard corpus (module docstring) and describe it."""
    with _Seeder(registry, auth, verify) as seeder:
        base = make_layer("standard-base")
        _seed_alpine(seeder, base)
        busybox = make_image("busybox-1.36", base=[base])
        seeder.push("library/busybox", "1.36", busybox, "busybox")
        for version in ("v1", "v2"):
            image = make_image(("team-app", version), base=[base])
            seeder.push("team/sub/app", version, image, f"app_{version}")
        seeder.push("docker/hello", "latest", make_image("hello", fmt="docker"), "docker_image")
        seeder.push("multi/oci", "latest", make_index("multi-oci"), "oci_index")
        docker_list = make_index("multi-docker", fmt="docker")
        seeder.push("multi/docker", "latest", docker_list, "docker_list")
        seeder.push("windows/foreign", "ltsc2022", make_foreign_layer_image("win"), "foreign")
        return seeder.corpus


def _seed_alpine(seeder: _Seeder, base: Blob) -> None:
    for tag in ALPINE_TAGS:
        seeder.push(ALPINE, tag, make_image(("alpine", tag), base=[base]), f"alpine_{tag}")
    seeder.push(ALPINE, "latest", seeder.corpus["alpine_3.20"].manifest, "alpine_latest")
    signed = seeder.corpus["alpine_3.19"].manifest
    signature = make_cosign_signature(signed, reference=f"{seeder.registry.host}/{ALPINE}")
    seeder.push(ALPINE, cosign_signature_tag(signed.digest), signature, "cosign_signature")
    sbom = make_artifact(
        signed,
        artifact_type=SBOM_TYPE,
        payload=b'{"spdxVersion":"SPDX-2.3","name":"alpine-3.19"}',
        payload_media_type=SBOM_TYPE,
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )
    seeder.push(ALPINE, None, sbom, "sbom")
    sbom_signature = make_artifact(
        sbom, artifact_type=SIGNATURE_TYPE, payload=b"not-a-real-signature"
    )
    seeder.push(ALPINE, None, sbom_signature, "sbom_signature")


def seed_many(
    registry: RegistryLike,
    *,
    repos: int = 50,
    tags: int = 5,
    layers: int = 3,
    layer_size: int = 4096,
    shared_layers: int = 4,
    prefix: str = "scale",
    index_every: int = 0,
    auth: Credentials | None = None,
    verify: bool | str = True,
    workers: int = PUSH_WORKERS,
) -> Corpus:
    """`repos` repositories `<prefix>/repo-NNN`, each with `tags` OCI images `t0..`.

    Every image starts with one layer from a pool of `shared_layers` (so blobs repeat across
    repositories, as base images do), then `layers - 1` layers of its own. With
    `index_every=3`, every third tag (t2, t5, ...) is a two-platform OCI index instead.
    """
    pool = [make_layer(("pool", prefix, i), size=layer_size) for i in range(max(shared_layers, 1))]
    with _Seeder(registry, auth, verify) as seeder:

        def push_repo(index: int) -> None:
            repo = f"{prefix}/repo-{index:03d}"
            for tag_index in range(tags):
                multi = index_every > 0 and (tag_index + 1) % index_every == 0
                image = (make_index if multi else make_image)(
                    (prefix, index, tag_index),
                    base=[pool[(index + tag_index) % len(pool)]],
                    layers=max(layers - 1, 0),
                    layer_size=layer_size,
                )
                seeder.push(repo, f"t{tag_index}", image)

        _run_all(push_repo, range(repos), workers)
        return seeder.corpus


def _run_all(job: Callable[[int], None], items: Iterable[int], workers: int) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(job, item) for item in items]:
            future.result()  # re-raise the first failure
