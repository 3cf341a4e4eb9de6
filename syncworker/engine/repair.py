"""Make broken trees whole again from their upstream: ``syncworker check --repair``.

Under the repository's lock (no sync or gc of it runs meanwhile): each blob found corrupt
whose bytes still do not hash to its name is removed (a store keeps an existing blob, its
name being its content), then each broken tree is copied again by digest with nothing
present trusted but what this repair wrote: every manifest of it is fetched and walked
even where one is stored (once, however many trees share it), and missing blobs are
fetched from the upstream, never linked from another repository (on a filesystem that
may be the same damaged file). Children are written before their parents, as in a sync,
and the entries in ``index.json`` are left as they are: they already name this digest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from syncworker.engine.images import TreeWalker
from syncworker.engine.plan import as_of_bytes
from syncworker.engine.results import Failure, RepoResult
from syncworker.engine.treecheck import BrokenTree, hashes_to_its_name
from syncworker.errors import NotFoundError, StoreError, SyncworkerError
from syncworker.store import Store
from syncworker.store.protocol import Readable, Repairable

__all__ = ["TreeRepair"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TreeRepair:
    """Repairs trees of ``dest_repo`` from ``upstream_repo`` on ``registry``; ``images``
    walks into a sink that trusts nothing present. The caller holds the repository's lock."""

    store: Store
    images: TreeWalker
    registry: str
    upstream_repo: str
    dest_repo: str

    def repair(self, broken: Sequence[BrokenTree]) -> RepoResult:
        result = RepoResult(self.registry, self.upstream_repo, self.dest_repo)
        for tree in broken:
            try:
                self._repair(tree, result)
            except SyncworkerError as exc:
                reason = f"{tree.name}: not repaired: {_cause(exc, self.upstream_repo)}"
                log.warning("%s", reason)
                name = tree.tag_field or str(tree.descriptor.digest)
                result.failures.append(Failure(self.registry, self.upstream_repo, name, reason))
        return result

    def _repair(self, tree: BrokenTree, result: RepoResult) -> None:
        self._drop_corrupt(tree)
        desc = as_of_bytes(tree.descriptor)
        copied = self.images.walk(self.dest_repo, desc)
        result.copied.append(tree.name)
        result.bytes_copied += copied.stats.bytes
        result.blobs_fetched += copied.stats.fetched
        log.info("%s: repaired from %s/%s", tree.name, self.registry, self.upstream_repo)

    def _drop_corrupt(self, tree: BrokenTree) -> None:
        corrupt = [d.digest for d in tree.damage if d.problem == "corrupt"]
        if not corrupt:
            return
        if not isinstance(self.store, Repairable):
            raise StoreError(
                f"{self.store!r} cannot remove the corrupt"
                f" {', '.join(map(str, corrupt))}; remove it there and run the repair again"
            )
        for digest in corrupt:
            # The check looked without the lock: another repair (a redelivered task, a
            # second command) may have made it whole since, and then deleting it would
            # break every tree naming it if the upstream no longer serves it.
            store = self.store
            if isinstance(store, Readable) and hashes_to_its_name(store, self.dest_repo, digest):
                continue
            store.delete_blob(self.dest_repo, digest)


def _cause(exc: SyncworkerError, upstream_repo: str) -> str:
    if isinstance(exc, NotFoundError):
        return (
            f"the upstream {upstream_repo} no longer has it ({exc}); `syncworker sync` mirrors"
            " what the tag names now"
        )
    return str(exc)
