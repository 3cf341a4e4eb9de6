"""What the chaos tests check and report: a store verified tag by tag, and their figures.

    tags = verified_tags(root, corpus_tags)        # check_store + upstream digests + skopeo
    report(capsys, "sync at 30% faults", faults=proxy.injected(), blob_gets=61)

"Verified" means every index.json entry's tree is complete in the store (manifests and blobs
present, each hashing to its digest: tests/support/mirror.py ``check_store``), every tag
points at the upstream's digest, and skopeo reads each of them back with that digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support.mirror import check_store, layout_tags, mirrored_digest

__all__ = ["report", "verified_tags"]


def verified_tags(
    root: Path, upstream: Mapping[str, Mapping[str, str]], *, skopeo: bool = True
) -> int:
    """How many tags the store holds, after checking all of it (nothing corrupt or
    half-written reachable; no tag at a digest the upstream does not give it)."""
    check_store(root)
    count = 0
    for repo, tags in layout_tags(root).items():
        for tag, digest in tags.items():
            assert upstream.get(repo, {}).get(tag) == digest, f"{repo}:{tag} is {digest}"
            if skopeo:
                assert mirrored_digest(root, repo, tag) == digest, f"{repo}:{tag}"
            count += 1
    return count


def report(capsys: pytest.CaptureFixture[str], title: str, **figures: object) -> None:
    """One line of figures on the terminal, captured or not (CI logs keep them)."""
    with capsys.disabled():
        print(f"\n[chaos] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
