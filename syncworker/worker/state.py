"""What a worker process opens once and every task reuses: its :class:`Runtime` (the
Coordinator, the store, the Mirror) and its live counts.

Created lazily on the first task of a process (so a prefork child never inherits its
parent's Redis connections or thread pools), and again after ``worker_process_init``.
Redis is opened with the state; the store and the Mirror when a task's work first asks
(:meth:`WorkerState.open`): a task's give-up can run in the worker's main process (Celery
calls it there on a hard time limit), which syncs nothing and needs Redis alone, not a
sweep of the store's leftovers (minutes on a large bucket, while the process takes no
message) nor the Mirror's pools.
Thread pools (``-P threads``) share one state: Mirror and Coordinator are thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from syncworker.config import Config, load_config
from syncworker.coord import Coordinator
from syncworker.engine import Mirror
from syncworker.errors import ConfigError, StoreError
from syncworker.observe.exporter import worker_events
from syncworker.observe.live import LiveCounts
from syncworker.registry.catalog import MAX_PAGE_SIZE
from syncworker.runtime import Runtime
from syncworker.store import Store
from syncworker.worker.tasknames import CONFIG_ENV

__all__ = [
    "PAGE_SIZE_ENV",
    "WorkerState",
    "close_state",
    "config_of",
    "env_config",
    "worker_state",
]

log = logging.getLogger(__name__)

# Catalog entries per walk_catalog execution. The engine's default (MAX_PAGE_SIZE, the most
# any registry allows) suits production; tests and slow upstreams set it lower.
PAGE_SIZE_ENV = "SYNCWORKER_CATALOG_PAGE_SIZE"


@dataclass
class WorkerState:
    runtime: Runtime
    page_size: int | None
    live: LiveCounts  # the images of repositories in flight, counted into their runs
    _opening: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def config(self) -> Config:
        return self.runtime.config

    @property
    def coord(self) -> Coordinator:
        return self.runtime.coordinator

    @property
    def mirror(self) -> Mirror:
        """The Mirror (:meth:`open` first)."""
        return self.runtime.mirror

    def open(self) -> None:
        """Open the store, cleaning its leftovers before anything is copied, then the Mirror;
        what is open already is kept, so a part that failed to open is tried again on the
        next call."""
        with self._opening:
            if not self.runtime.has_store:
                _clean(self.runtime.open_store())
            if not self.runtime.has_mirror:
                self.runtime.open_mirror(worker_events(self.live))

    def close(self) -> None:
        with self._opening:
            self.runtime.close()


_state: WorkerState | None = None
_guard = threading.Lock()


def _page_size() -> int | None:
    raw = os.environ.get(PAGE_SIZE_ENV)
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        message = f"must be an integer from 1 to {MAX_PAGE_SIZE}, got {raw!r}"
        raise ConfigError(PAGE_SIZE_ENV, message)
    return int(raw)


def _clean(store: Store) -> None:
    """Remove what writers killed mid-copy left behind (a SIGKILLed worker's temporaries);
    the store removes only abandoned ones, never those of a live worker."""
    try:
        removed = store.clean_leftovers()
    except StoreError as exc:
        log.warning("could not clean the store's leftovers: %s", exc)
        return
    if removed:
        log.info("removed %d leftover temporaries from the store", removed)


def _build(config: Config) -> WorkerState:
    page_size = _page_size()
    runtime = Runtime.open(config, redis="a Celery worker", upto="redis")
    return WorkerState(runtime, page_size, LiveCounts(runtime.coordinator))


def worker_state(config: Config) -> WorkerState:
    """This process's state for ``config`` (built on first use)."""
    global _state
    with _guard:
        if _state is None or _state.config is not config:
            if _state is not None:
                _state.close()
            _state = _build(config)
        return _state


def close_state() -> None:
    """Release this process's connections and pools (worker shutdown, tests)."""
    global _state
    with _guard:
        state, _state = _state, None
    if state is not None:
        state.close()


def config_of(app: Celery) -> Config:
    """The syncworker configuration ``app`` was built from."""
    config = getattr(app, "syncworker_config", None)
    if config is None:  # an app not made by create_app (e.g. the default app)
        return env_config()
    assert isinstance(config, Config)
    return config


def env_config() -> Config:
    """The configuration in the file named by ``SYNCWORKER_CONFIG``."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(
            CONFIG_ENV,
            "not set: name the config file (`SYNCWORKER_CONFIG=FILE celery -A "
            "syncworker.celeryapp ...`), or use `syncworker inspect -c FILE`",
        )
    return load_config(path)


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _forget_parent_state(**_: Any) -> None:
    """A forked child must not use its parent's sockets: build its own on first use."""
    global _state
    _state = None


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_on_shutdown(**_: Any) -> None:
    close_state()
