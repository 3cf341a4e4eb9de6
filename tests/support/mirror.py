"""Run ``syncworker sync`` from tests and read back, with skopeo, what it left in a store.

    config = write_sync_config(tmp_path, root, [{"urls": [server.url]}], credentials=...)
    run = run_sync(config)                          # in-process: exit code, stdout, stderr
    assert mirrored_digest(root, "team/app", "v1") == image.digest     # read by skopeo
    reachable = check_store(root)                   # every index.json -> complete, verified
    assert_no_secret([run.stdout, run.stderr, caplog.text], password)

``check_store`` is the invariant of the store (docs/ARCHITECTURE.md "Crash safety"): every
manifest present, listed in an ``index.json`` or not, has its whole tree present, each blob
hashing to its digest; children a ``platforms`` filter leaves out are the only absences.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from syncworker.cli import main

__all__ = [
    "SKOPEO_READABLE",
    "SyncRun",
    "assert_no_secret",
    "check_store",
    "layout_tags",
    "mirrored_digest",
    "run_sync",
    "skopeo_raw",
    "sync_in_subprocess",
    "temporaries",
    "write_sync_config",
]

# Manifest media types whose children are manifests, not blobs (image-spec image-index.md).
_INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
REF_NAME = "org.opencontainers.image.ref.name"
# Fast test retries: a refused connection or TLS failure should not cost seconds.
TEST_RETRY = {"maxRetries": 1, "retryDelay": "10ms"}
SKOPEO_TIMEOUT = 60.0
SUBPROCESS_SYNC_TIMEOUT = 300.0
ROOT = Path(__file__).resolve().parents[2]
# Blobs up to this size are returned for parsing (manifests are far smaller).
MANIFEST_LIMIT = 4 << 20


@dataclass(frozen=True)
class SyncRun:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


#: ``syncworker`` settings whose layouts skopeo 1.9 reads whole: it skips index.json entries
#: of Docker media types, so tests that read Docker images back list them as their OCI twins.
SKOPEO_READABLE = {"layoutMediaTypes": "oci"}


def write_sync_config(
    directory: Path,
    root: Path,
    registries: Sequence[Mapping[str, Any]],
    *,
    credentials: Mapping[str, Mapping[str, str]] | None = None,
    settings: Mapping[str, Any] | None = None,
    sync: Mapping[str, Any] | None = None,
    storage_driver: Mapping[str, Any] | None = None,
) -> Path:
    """A zot-style config mirroring ``registries`` (content ``**`` unless given) into
    ``root``; ``credentials`` are written to a zot credentials file beside it;
    ``settings`` is our own top-level ``syncworker`` section; ``sync`` adds keys to
    ``extensions.sync``; ``storage_driver`` puts ``root`` in a bucket
    (``S3Server.driver``)."""
    block: dict[str, Any] = {"enable": True, "registries": [], **(sync or {})}
    for entry in registries:
        block["registries"].append({"content": [{"prefix": "**"}], **TEST_RETRY, **entry})
    if credentials is not None:
        creds = directory / "credentials.json"
        creds.write_text(json.dumps(credentials), encoding="utf-8")
        block["credentialsFile"] = str(creds)
    config = directory / "sync.yaml"
    doc: dict[str, Any] = {"storage": {"rootDirectory": str(root)}, "extensions": {"sync": block}}
    if storage_driver is not None:
        doc["storage"]["storageDriver"] = dict(storage_driver)
    if settings is not None:
        doc["syncworker"] = dict(settings)
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return config


def run_sync(config: Path, *extra: str) -> SyncRun:
    """``syncworker -vv sync -c config`` in this process, output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-vv", "sync", "-c", str(config), *extra])
    return SyncRun(code, out.getvalue(), err.getvalue())


def sync_in_subprocess(config: Path, *options: str) -> str:
    """``syncworker OPTIONS sync -c config`` in its own process, as a deployment runs it
    (its own logging set-up): the output of a run that must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "syncworker", *options, "sync", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SYNC_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def skopeo_raw(root: Path, repo: str, tag: str) -> bytes:
    """The manifest bytes skopeo reads for ``oci:<root>/<repo>:<tag>``."""
    done = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{root}/{repo}:{tag}"],
        capture_output=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"skopeo cannot read {repo}:{tag}: {done.stderr.decode()}"
    return done.stdout


def mirrored_digest(root: Path, repo: str, tag: str) -> str:
    return "sha256:" + hashlib.sha256(skopeo_raw(root, repo, tag)).hexdigest()


def assert_no_secret(texts: Iterable[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, "a secret appears in the output or logs"


def layout_tags(root: Path) -> dict[str, dict[str, str]]:
    """Every tag of every OCI layout under ``root``, read from the index.json files."""
    found: dict[str, dict[str, str]] = {}
    for index in _index_files(root):
        repo = index.parent.relative_to(root).as_posix()
        for entry in json.loads(index.read_text())["manifests"]:
            tag = entry.get("annotations", {}).get(REF_NAME)
            if tag:
                found.setdefault(repo, {})[tag] = entry["digest"]
    return found


def temporaries(root: Path) -> list[Path]:
    """What a writer left in the store's scratch directory (syncworker/store/fs.py)."""
    tmp = root / ".tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


def _index_files(root: Path) -> list[Path]:
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "blobs"]
        if "index.json" in files:
            found.append(Path(top) / "index.json")
    return found


def _verified(repo_dir: Path, digest: str) -> bytes:
    algorithm, _, hex_ = digest.partition(":")
    assert algorithm == "sha256", f"{repo_dir}: unexpected algorithm in {digest}"
    path = repo_dir / "blobs" / algorithm / hex_
    assert path.is_file(), f"{repo_dir}: {digest} is referenced but absent"
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    assert sha.hexdigest() == hex_, f"{repo_dir}: {digest} does not hash to its name"
    return path.read_bytes() if path.stat().st_size <= MANIFEST_LIMIT else b""


def _expected(child: Mapping[str, Any], platforms: Sequence[str]) -> bool:
    """Whether a child of an index is stored under ``platforms`` ("os/arch"): the rule of
    the ``platforms`` setting, written out again here so the check does not trust it."""
    platform = child.get("platform")
    if not platforms or not platform or platform.get("os") == "unknown":
        return True
    return f"{platform.get('os')}/{platform.get('architecture')}" in platforms


def _walk(
    repo_dir: Path, desc: Mapping[str, Any], seen: set[str], platforms: Sequence[str]
) -> None:
    digest = str(desc["digest"])
    if digest in seen:
        return
    seen.add(digest)
    doc = json.loads(_verified(repo_dir, digest))
    if desc.get("mediaType") in _INDEX_TYPES or doc.get("mediaType") in _INDEX_TYPES:
        for child in doc.get("manifests", []):
            if _expected(child, platforms):
                _walk(repo_dir, child, seen, platforms)
        return
    for blob in [doc["config"], *doc.get("layers", [])]:
        if blob.get("urls"):  # non-distributable: never fetched (image-spec layer.md)
            continue
        if blob["digest"] not in seen:
            seen.add(blob["digest"])
            _verified(repo_dir, blob["digest"])


def _stored_manifests(repo_dir: Path) -> list[dict[str, str]]:
    """Every blob of the repository that is a manifest (listed or not), as a descriptor."""
    found = []
    blobs = repo_dir / "blobs" / "sha256"
    for path in sorted(blobs.iterdir()) if blobs.is_dir() else []:
        if path.stat().st_size > MANIFEST_LIMIT:
            continue
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            continue
        if (
            isinstance(doc, dict)
            and doc.get("schemaVersion") == 2
            and ("layers" in doc or "manifests" in doc)
        ):
            found.append({"digest": f"sha256:{path.name}", "mediaType": doc.get("mediaType", "")})
    return found


def check_store(root: Path, platforms: Sequence[str] = ()) -> dict[str, set[str]]:
    """Every repository's reachable digests, after checking each is present and verified:
    every index.json entry, every child of an index (but those ``platforms``, as
    configured, leaves out), every config and layer; and the same of every manifest
    stored, even one no index.json lists (a sync may trust any manifest it finds)."""
    reachable: dict[str, set[str]] = {}
    for index in _index_files(root):
        repo_dir = index.parent
        seen: set[str] = set()
        for entry in json.loads(index.read_bytes())["manifests"]:
            _walk(repo_dir, entry, seen, platforms)
        reachable[repo_dir.relative_to(root).as_posix()] = set(seen)
        for stored in _stored_manifests(repo_dir):
            _walk(repo_dir, stored, seen, platforms)
    return reachable
