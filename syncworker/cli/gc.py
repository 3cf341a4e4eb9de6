"""``syncworker gc -c FILE``: remove the blobs of the store that no kept manifest reaches.

Each repository is collected holding what every sync of it holds: the Redis lock when
Redis is configured, and the store's own lock file on a directory. On S3 without Redis
nothing keeps a ``syncworker sync`` of another process out, so gc refuses to run unless
told with ``--force`` that no sync is running."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from syncworker.cli.units import REPOSITORIES, counted, human_size
from syncworker.config import Config, load_config
from syncworker.config.durations import parse_duration
from syncworker.engine import Mirror
from syncworker.engine.locks import RepoHold
from syncworker.engine.treecheck import expected_children
from syncworker.errors import ConfigError
from syncworker.runtime import Runtime
from syncworker.store import RepoHolder, held
from syncworker.store.collect import Collected, Expected, Removed, collect
from syncworker.store.layout import LayoutStore
from syncworker.waits import GC_REPO_WAIT

__all__ = ["add_parser"]

# Blobs written this recently are spared: longer than any sync a large mirror runs, so a
# sync that has written blobs but not yet its index.json never loses them.
DEFAULT_GRACE = timedelta(hours=24)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("gc", help="remove blobs that no index.json reaches")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON (a zot config works)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would go; remove nothing"
    )
    parser.add_argument(
        "--grace",
        help="spare blobs younger than this Go duration (default 24h, and never less than"
        " the longest syncTimeout)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--force",
        action="store_true",
        help="collect although nothing can keep syncs of other processes out (S3 without"
        " Redis): only when no sync runs",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    grace = _grace(config, args.grace)
    if config.syncworker.destination is not None:
        raise _not_a_layout()
    with Runtime.open(config) as runtime:
        done = _collect(args, runtime, grace)
    verb = "would remove" if args.dry_run else "removed"
    repos = len({r.repo for r in done.removed})
    print(
        f"gc: {verb} {counted(len(done.removed), 'blob')} ({human_size(done.bytes)}) of"
        f" {counted(repos, *REPOSITORIES)}; {counted(len(done.skipped), *REPOSITORIES)} skipped"
        + _spared(done.spared)
    )
    for repo, reason in sorted(done.skipped.items()):
        print(f"  SKIPPED {repo}: {reason}")
    return 1 if done.skipped else 0


def _spared(spared: list[Removed]) -> str:
    """The blobs no index.json reaches that --grace kept: why a gc right after a prune
    frees less than the prune reported."""
    if not spared:
        return ""
    size = human_size(sum(r.size for r in spared))
    return f"; {counted(len(spared), 'blob')} ({size}) that no index.json reaches kept for --grace"


def _collect(args: argparse.Namespace, runtime: Runtime, grace: timedelta) -> Collected:
    """Collect every repository of the store, each held as a sync of it holds it."""
    store, locks = runtime.store, runtime.locks
    if not isinstance(store, LayoutStore):
        raise _not_a_layout()
    if not args.dry_run and not args.force and not _excludes_syncs(store, runtime):
        raise ConfigError(
            "syncworker.redis",
            "gc on S3 without Redis cannot keep a `syncworker sync` of another process out"
            " of the repository it collects (that sync may link a blob gc is deleting):"
            " configure Redis, or stop every sync and pass --force",
        )
    verb = "would remove" if args.dry_run else "removed"

    def removed(item: Removed) -> None:
        if not args.quiet:
            print(f"{verb} {item.repo}@{item.digest} ({human_size(item.size)})", flush=True)

    @contextmanager
    def hold(repo: str) -> Iterator[RepoHold]:
        with (
            locks.repo_lock(repo, blocking_timeout=GC_REPO_WAIT) as lock,
            held(store, repo, GC_REPO_WAIT),
        ):
            yield lock

    done = collect(
        store,
        hold,
        grace.total_seconds(),
        expected=_expected(runtime.mirror),
        dry_run=args.dry_run,
        on_removed=removed,
    )
    if isinstance(store, RepoHolder) and not args.dry_run:
        store.drop_unused_locks()  # of repositories deleted by hand, which no sync holds again
    return done


def _expected(mirror: Mirror) -> Expected:
    """The children of an index a repository holds: those the platforms of its source
    keep (the others were never copied, so their absence is no reason to skip)."""
    return lambda repo, index: expected_children(index, mirror.platforms_of(repo))


def _not_a_layout() -> ConfigError:
    return ConfigError(
        "syncworker.destination",
        "gc applies to OCI-layout stores (a directory or S3); a registry destination"
        " collects its own garbage",
    )


def _excludes_syncs(store: LayoutStore, runtime: Runtime) -> bool:
    """Whether a sync in another process is kept out of a repository gc holds: Redis
    when configured, else the store's own lock (a directory has one, S3 none)."""
    return runtime.coord is not None or isinstance(store, RepoHolder)


def _grace(config: Config, text: str | None) -> timedelta:
    """``--grace``, or the default; refused when shorter than a sync may take."""
    timeouts = [r.sync_timeout for r in config.registries if r.sync_timeout is not None]
    longest = max(timeouts, default=timedelta(0))
    if text is None:
        return max(DEFAULT_GRACE, longest)
    try:
        grace = parse_duration(text)
    except ValueError as exc:
        raise ConfigError("--grace", str(exc)) from None
    if grace < longest:
        raise ConfigError(
            "--grace",
            f"{text} is shorter than the longest syncTimeout ({longest}): a sync still"
            " running could lose the blobs it has written",
        )
    return grace
