"""One source per destination repository, as a sync sees it: the claim it takes before it
writes (the store's ``<repo>/.claim``, or a Redis key for a registry destination) and gives
back when it wrote nothing there.

A claim taken binds only if the sync lists something in the destination: a first sync
that copied nothing and found nothing already present (its upstream's host does not
resolve, or answers 401) gives it back, so the source configured next (the fix) is not
refused. Only a sync killed before it could give it back leaves such a claim (delete
``<repo>/.claim``, or the Redis key, to move the destination).
"""

from __future__ import annotations

import logging

from syncworker.engine.locks import RepoHold
from syncworker.engine.results import RepoResult
from syncworker.errors import ClaimError, SyncworkerError
from syncworker.store import Source, Store

__all__ = ["check_claim", "give_back", "take_claim"]

log = logging.getLogger(__name__)


def check_claim(store: Store, dest_repo: str, source: Source) -> None:
    """ClaimError if another source holds ``dest_repo``."""
    held = store.claimant(dest_repo)
    if held not in (None, source):
        raise ClaimError(dest_repo, str(held), str(source))


def take_claim(store: Store, dest_repo: str, source: Source) -> bool:
    """Hold ``dest_repo`` for ``source`` (its lock held, nothing written yet); True if this
    call took the claim, ClaimError if another source holds it."""
    held = store.claimant(dest_repo)
    taken = held is None
    if taken:
        held = store.claim(dest_repo, source)
    if held != source:
        raise ClaimError(dest_repo, str(held), str(source))
    return taken


def give_back(
    store: Store, dest_repo: str, source: Source, hold: RepoHold, result: RepoResult
) -> None:
    """The claim this sync took, given back if ``result`` lists nothing in ``dest_repo``;
    only while the lock still holds: one lost meanwhile may have let another sync of this
    source write there, whose claim it is now."""
    if result.copied or result.skipped:
        return
    try:
        hold.ensure()
        store.release_claim(dest_repo, source)
    except SyncworkerError as exc:  # the claim stays: the next sync of it gives it back
        log.warning("%s: claim of %s not withdrawn: %s", dest_repo, source, exc)
