"""Parts of ``syncworker serve`` driven in-process over a real filesystem store: what a
request costs the store, counted where the store is read."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from syncworker.serve.catalogroute import list_repositories
from syncworker.serve.context import CATALOG_SECONDS, Served
from syncworker.serve.messages import Request
from syncworker.store.fs import FsStore


class CountingStore(FsStore):
    """A filesystem store that counts its listings, the first one held until ``go``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listings = 0
        self.go = threading.Event()

    def repositories(self) -> list[str]:
        self.listings += 1
        self.go.wait(60)
        return super().repositories()


def add_repository(root: Path, name: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}))


def catalog(served: Served, query: dict[str, list[str]] | None = None) -> list[str]:
    request = Request("GET", "/v2/_catalog", query or {}, {})
    shown: list[str] = json.loads(list_repositories(served, request).body)["repositories"]
    return shown


def test_concurrent_catalogs_share_one_listing_kept_a_few_seconds(tmp_path: Path) -> None:
    """Every anonymous ``/v2/_catalog`` listing the store (on S3 the whole bucket) would
    let any client make it work without end: requests at once share one listing, and
    those within CATALOG_SECONDS reuse it."""
    for name in ("a", "b", "c"):
        add_repository(tmp_path, name)
    store, now = CountingStore(tmp_path), [1000.0]
    served = Served(store, clock=lambda: now[0])
    answers: list[list[str]] = []
    threads = [threading.Thread(target=lambda: answers.append(catalog(served))) for _ in range(8)]
    for thread in threads:
        thread.start()
    store.go.set()
    for thread in threads:
        thread.join(60)
    assert answers == [["a", "b", "c"]] * 8 and store.listings == 1
    add_repository(tmp_path, "d")
    assert catalog(served, {"n": ["2"], "last": ["a"]}) == ["b", "c"]
    now[0] += CATALOG_SECONDS
    assert catalog(served, {"n": ["2"], "last": ["b"]}) == ["c", "d"]
    assert store.listings == 2
