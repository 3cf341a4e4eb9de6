"""Drive ``syncworker sync`` from tests and read its store back with tools we did not write.

    cfg = write_config(tmp_path, [upstream.url], root, content=[{"prefix": "**"}])
    result = run_sync(cfg)                      # in-process CLI: exit code, stdout, stderr
    tags = layout_tags(root)                    # {repo: {tag: digest}} from every index.json
    assert skopeo_raw_digest(root, repo, tag) == upstream_digest
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from syncworker.cli import main

__all__ = ["SyncRun", "layout_tags", "run_sync", "skopeo_raw_digest", "write_config"]

REF_NAME = "org.opencontainers.image.ref.name"


def write_config(
    directory: Path,
    urls: Sequence[str],
    root: Path,
    *,
    sync: dict[str, Any] | None = None,
    syncworker: dict[str, Any] | None = None,
    **registry: Any,
) -> Path:
    """A zot-style config with one upstream; ``registry`` adds keys to its entry."""
    entry = {"urls": list(urls), "tlsVerify": False, "content": [{"prefix": "**"}], **registry}
    doc: dict[str, Any] = {
        "storage": {"rootDirectory": str(root)},
        "extensions": {"sync": {"enable": True, "registries": [entry], **(sync or {})}},
    }
    if syncworker:
        doc["syncworker"] = syncworker
    path = directory / "syncworker.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass(frozen=True)
class SyncRun:
    code: int
    out: str
    err: str


def run_sync(config: Path, *extra: str) -> SyncRun:
    """``syncworker sync -c config`` in this process, output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sync", "-c", str(config), *extra])
    return SyncRun(code, out.getvalue(), err.getvalue())


def layout_tags(root: Path) -> dict[str, dict[str, str]]:
    """Every tag of every OCI layout under ``root``, read from the index.json files."""
    found: dict[str, dict[str, str]] = {}
    for index in sorted(root.rglob("index.json")):
        repo = index.parent.relative_to(root).as_posix()
        for entry in json.loads(index.read_text())["manifests"]:
            tag = entry.get("annotations", {}).get(REF_NAME)
            if tag:
                found.setdefault(repo, {})[tag] = entry["digest"]
    return found


def skopeo_raw_digest(root: Path, repo: str, tag: str) -> str:
    """The digest of the manifest bytes skopeo reads from ``oci:<root>/<repo>:<tag>``."""
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{root}/{repo}:{tag}"],
        check=True,
        capture_output=True,
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()
