"""How many starts of a work never ended: a task message, or every message of one run's
repository. A count above one means a worker died under it (or another start of it runs),
and the worker's policy gives the work up past ``MAX_DELIVERIES``."""

from __future__ import annotations

import redis

from syncworker.coord.keys import DELIVERY_TTL, Keys
from syncworker.coord.redisclient import Part, translated
from syncworker.coord.scripts import register

__all__ = ["Deliveries"]


class Deliveries(Part):
    """The starts of each work that did not end."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str) -> None:
        super().__init__(client, keys, where)
        self._lua_end = register(self._client, "delivery_end")

    @translated
    def delivery_started(self, message_id: str) -> int:
        """Count a start of the work ``message_id`` (a task message, or all the messages of
        one run's repository): how many of its starts have not ended
        (:meth:`delivery_ended`), this one included; more than one means a worker died
        under it before, or another start of it is running."""
        key = self._keys.delivery(message_id)
        # One round trip, no MULTI/EXEC: both commands arrive in one write.
        pipe = self._client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, int(DELIVERY_TTL))
        count, _ = pipe.execute()
        return int(count)

    @translated
    def delivery_ended(self, message_id: str) -> None:
        """One start of ``message_id`` ended (whatever its outcome): it no longer counts.
        Several messages may share a name (a run's repository: its resends and retries),
        so each end takes off its own start only."""
        self._lua_end(keys=[self._keys.delivery(message_id)], args=[int(DELIVERY_TTL)])
