"""How many runs Redis keeps per registry (``syncworker.runsKept``): the one going on and
the most recent finished ones. A run that starts forgets the older finished runs of its
registry, their keys and their place in the runs index; whatever is left still expires
``RUN_RETENTION`` after it finished."""

from __future__ import annotations

from collections.abc import Set

import redis

from syncworker.coord.keys import Keys
from syncworker.coord.redisclient import text

__all__ = ["forget_finished"]


def forget_finished(
    client: redis.Redis, keys: Keys, registry: str, started: str, kept: int, ended: Set[str]
) -> None:
    """Delete the finished runs (in a state of ``ended``) of ``registry`` beyond its most
    recent ``kept`` - 1, so that once ``started`` (its new run) finishes too it keeps
    ``kept``. Each run of the index is read by its hash: the index holds the kept runs of every
    registry, and the ones going on."""
    ids = [str(text(i)) for i in client.zrevrange(keys.runs(), 0, -1)]
    ids = [run_id for run_id in ids if run_id != started]
    with client.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hmget(keys.run(run_id), "registry", "state")
        metas = pipe.execute()
    finished = [
        run_id
        for run_id, (owner, state) in zip(ids, metas, strict=True)
        if text(owner) == registry and text(state) in ended
    ]
    old = finished[kept - 1 :]
    if old:
        with client.pipeline(transaction=True) as pipe:
            for run_id in old:
                pipe.delete(*keys.run_keys(run_id))
            pipe.zrem(keys.runs(), *old)
            pipe.execute()
