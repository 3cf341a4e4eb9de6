"""The one place where redis-py exceptions become :class:`CoordError`, and the state that
the Coordinator's parts share (:class:`Part`: client, key schema, location).

Every Redis call of ``coord/`` runs inside :func:`redis_errors` (directly, or through the
:func:`translated` method decorator), so callers only ever see ``syncworker.errors``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar, cast

import redis
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from syncworker.coord.keys import Keys
from syncworker.errors import CoordError
from syncworker.redact import redact_redis_url, redact_text

__all__ = [
    "LuaArg",
    "Part",
    "describe_client",
    "redact",
    "redact_url",
    "redis_errors",
    "text",
    "translated",
]

P = ParamSpec("P")
#: What a Lua script argument may be (redis-py encodes each).
LuaArg = str | int | float
R = TypeVar("R")

# Redaction is one module for the whole package; these names are what coord/ calls.
redact = redact_text
redact_url = redact_redis_url


def describe_client(client: redis.Redis) -> str:
    """Where ``client`` points, without its password, for error messages."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "?"), kwargs.get("port", "?"), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"


@contextmanager
def redis_errors(where: str) -> Iterator[None]:
    """Translate redis-py exceptions raised inside into :class:`CoordError` naming ``where``."""
    try:
        yield
    except RedisAuthenticationError as exc:  # a ConnectionError to redis-py; not one to a user
        raise CoordError(f"Redis at {where} refused the login: {redact(str(exc))}") from exc
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise CoordError(f"Redis at {where} is unreachable: {redact(str(exc))}") from exc
    except RedisError as exc:
        raise CoordError(f"Redis at {where} failed: {redact(str(exc))}") from exc


class Part:
    """One part of the Coordinator (locks, runs, catalog walks, ...): the client, the key
    schema, and where Redis is (password redacted) for error messages."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str) -> None:
        self._client = client
        self._keys = keys
        self._where = where


def translated(method: Callable[P, R]) -> Callable[P, R]:
    """Decorator for :class:`Part` methods: run the whole call under :func:`redis_errors`."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        part = cast(Part, args[0])
        with redis_errors(part._where):
            return method(*args, **kwargs)

    return wrapper


def text(value: object) -> str | None:
    """Decode a reply, whether or not the client was built with ``decode_responses``."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
