"""What a store remembers to save a request, bounded: a run over a catalog of millions
holds no more of it than a run over a thousand.

:class:`Recent` keeps the most recently used entries of a map (a name checked, a layout
written, where a blob lives); forgetting one costs a request again, never correctness.
:class:`KeyedLocks` holds a lock per key only while a thread holds or waits for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

__all__ = ["DIGESTS_KEPT", "REPOS_KEPT", "KeyedLocks", "Recent"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Per-repository entries are used while that repository syncs (a few per thread at once);
# per-digest entries also across repositories (a base layer many images share).
REPOS_KEPT = 256
DIGESTS_KEPT = 4096


class Recent(Generic[K, V]):
    """A map of at most ``size`` entries, thread-safe; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._guard = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._guard:
            if key not in self._entries:
                return False
            self._entries.move_to_end(key)  # type: ignore[arg-type]
            return True

    def get(self, key: K) -> V | None:
        with self._guard:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._guard:
            self._entries[key] = value
            self._entries.move_to_end(key)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        with self._guard:
            self._entries.pop(key, None)


class _Held:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class KeyedLocks:
    """A ``threading.Lock`` per key, made on first use and dropped when its last user
    leaves, so the map never outgrows what is in flight."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[Hashable, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = _Held()
            held.users += 1
        try:
            with held.lock:
                yield
        finally:
            with self._guard:
                held.users -= 1
                if held.users == 0:
                    del self._held[key]
