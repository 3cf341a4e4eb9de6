"""What a command or a worker process opens from its configuration, once, and closes
together: the Coordinator (Redis, when configured), the store, and the Mirror over them.

The Coordinator is handed to each part that shares state through it: it is the Mirror's
locks and the upstreams' rate budgets, and the store's blob hints and destination claims.
Without Redis the locks are this process's own. Only what is asked for is opened, and only
what is opened is imported: Redis alone (``status``) loads neither the store, the engine
nor the HTTP client, and nothing of Redis is loaded when none is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from syncworker.config import Config

if TYPE_CHECKING:
    from syncworker.coord import Coordinator
    from syncworker.engine import Events, Locks, Mirror
    from syncworker.store import Store

__all__ = ["Part", "Runtime"]

#: How far :meth:`Runtime.open` goes, each part with those before it: Redis (when
#: configured), then the store, then the Mirror.
Part = Literal["redis", "store", "mirror"]


class Runtime:
    """The parts opened from ``config``; use :meth:`open`, and close it (or use it as a
    context manager). ``coord`` is the Coordinator, None without Redis."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.coord: Coordinator | None = None
        self._locks: Locks | None = None
        self._store: Store | None = None
        self._mirror: Mirror | None = None

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        upto: Part = "mirror",
        redis: str | None = None,
        events: Events | None = None,
    ) -> Runtime:
        """Open what ``config`` names, ``upto`` the part named: Redis when configured (a
        configured Redis that does not answer is a CoordError now, not minutes of
        reconnection attempts later), the store, the Mirror reporting to ``events`` (none
        when None). ``redis``: what needs Redis (e.g. ``"a Celery worker"``), named in the
        ConfigError when none is configured. A store or Mirror opened later
        (:meth:`open_store`, :meth:`open_mirror`) is closed with the rest."""
        settings = config.syncworker
        url = settings.require_redis_url(redis) if redis else settings.redis_url
        runtime = cls(config)
        try:
            if url:
                runtime.coord = _connect(url, settings.lock_ttl.total_seconds(), settings.runs_kept)
            if upto != "redis":
                runtime.open_store()
            if upto == "mirror":
                runtime.open_mirror(events)
        except BaseException:
            runtime.close()
            raise
        return runtime

    @property
    def coordinator(self) -> Coordinator:
        """The Coordinator of a runtime opened with ``redis``."""
        if self.coord is None:
            raise ValueError("this runtime was opened without Redis")
        return self.coord

    @property
    def locks(self) -> Locks:
        """Where repositories and blobs are locked: the Coordinator (every process), else
        this process's own locks (made once, so every user here shares them)."""
        if self._locks is None:
            if self.coord is not None:
                self._locks = self.coord
            else:
                from syncworker.engine import LocalLocks

                self._locks = LocalLocks()
        return self._locks

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ValueError("this runtime was opened without the store")
        return self._store

    @property
    def mirror(self) -> Mirror:
        if self._mirror is None:
            raise ValueError("this runtime was opened without the Mirror")
        return self._mirror

    @property
    def has_store(self) -> bool:
        return self._store is not None

    @property
    def has_mirror(self) -> bool:
        return self._mirror is not None

    def open_store(self) -> Store:
        """The store ``config`` names, sharing its blob hints and claims through the
        Coordinator when there is one: for a caller that opens Redis first and the store
        only when it needs it (a worker process)."""
        if self._store is not None:
            raise ValueError("the store is already open")
        self._store = _open_store(self.config, self.coord)
        return self._store

    def open_mirror(self, events: Events | None = None) -> Mirror:
        """The Mirror of every configured registry over the store, reporting to ``events``:
        for a caller whose events need the Coordinator (a worker's live counts), or that
        cleans the store before anything is copied."""
        if self._mirror is not None:
            raise ValueError("the Mirror is already open")
        from syncworker.config.mirrorbuild import build_mirror  # the engine and the HTTP client
        from syncworker.engine import NO_EVENTS

        self._mirror = build_mirror(
            self.config,
            self.store,
            self.locks,
            limiters=self.coord,
            events=NO_EVENTS if events is None else events,
        )
        return self._mirror

    def close(self) -> None:
        """Stop the Mirror's pools, close the store's connections, then disconnect from
        Redis."""
        mirror, self._mirror = self._mirror, None
        store, self._store = self._store, None
        coord, self.coord = self.coord, None
        try:
            if mirror is not None:
                mirror.close()
        finally:
            try:
                if store is not None:
                    store.close()
            finally:
                if coord is not None:
                    coord.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect(url: str, lock_ttl: float, runs_kept: int) -> Coordinator:
    from syncworker.coord import Coordinator  # redis-py: only when Redis is configured

    coord = Coordinator.from_url(url, lock_ttl=lock_ttl, runs_kept=runs_kept)
    try:
        coord.ping()
    except BaseException:
        coord.close()
        raise
    return coord


def _open_store(config: Config, coord: Coordinator | None) -> Store:
    from syncworker.config.storeopen import store_for

    # A registry destination shares with the other processes where blobs are (to mount
    # one instead of fetching it) and which source each of its repositories mirrors.
    return store_for(config, hints=coord, claims=coord)
