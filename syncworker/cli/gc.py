"""``syncworker gc -c FILE``: remove the blobs of the store that no ``index.json`` reaches."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from syncworker.cli.sync import locks_for
from syncworker.cli.units import human_size
from syncworker.config import Config, load_config
from syncworker.config.durations import parse_duration
from syncworker.config.stores import store_for
from syncworker.errors import ConfigError
from syncworker.store.gc import Removed, collect
from syncworker.store.layout import LayoutStore

__all__ = ["add_parser"]

# Blobs written this recently are spared: longer than any sync a large mirror runs, so a
# sync that has written blobs but not yet its index.json never loses them.
DEFAULT_GRACE = timedelta(hours=24)
# How long to wait for a sync holding a repository before leaving it for the next gc.
LOCK_WAIT_SECONDS = 60.0


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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    grace = _grace(config, args.grace)
    store = store_for(config)
    if not isinstance(store, LayoutStore):
        raise ConfigError(
            "syncworker.destination",
            "gc applies to OCI-layout stores (a directory or S3); a registry destination"
            " collects its own garbage",
        )
    locks = locks_for(config)
    verb = "would remove" if args.dry_run else "removed"

    def removed(item: Removed) -> None:
        if not args.quiet:
            print(f"{verb} {item.repo}@{item.digest} ({human_size(item.size)})", flush=True)

    done = collect(
        store,
        lambda repo: locks.repo_lock(repo, blocking_timeout=LOCK_WAIT_SECONDS),
        grace.total_seconds(),
        dry_run=args.dry_run,
        on_removed=removed,
    )
    repos = len({r.repo for r in done.removed})
    print(
        f"gc: {verb} {len(done.removed)} blobs ({human_size(done.bytes)}) of {repos}"
        f" repositories; {len(done.skipped)} repositories skipped"
    )
    for repo, reason in sorted(done.skipped.items()):
        print(f"  SKIPPED {repo}: {reason}")
    return 1 if done.skipped else 0


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
