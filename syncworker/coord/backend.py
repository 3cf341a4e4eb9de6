"""The one place where redis-py exceptions become :class:`CoordError`, and the shared state.

Every Redis call of ``coord/`` runs inside :func:`redis_errors` (directly, or through the
:func:`translated` method decorator), so callers only ever see ``syncworker.errors``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar, cast

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from syncworker.coord.keys import Keys
from syncworker.errors import CoordError

__all__ = [
    "Backend",
    "LuaArg",
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

# userinfo in any URL (redis://user:pass@host, https://user:token@registry): keep the user.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*):[^/@\s]*@")
# Authorization header values and key=value secrets that a library may echo in a message.
_AUTH_VALUE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_SECRET_PARAM = re.compile(r"(?i)\b(password|passwd|token|secret|access_token)=[^&\s]+")


def redact(message: str) -> str:
    """Remove credentials that may appear in a free-form message."""
    message = _URL_USERINFO.sub(r"\g<scheme>\g<user>:***@", message)
    message = _AUTH_VALUE.sub(r"\1 ***", message)
    return _SECRET_PARAM.sub(r"\1=***", message)


def redact_url(url: str) -> str:
    """A Redis URL fit for messages: the password (if any) replaced by ``***``."""
    return redact(url)


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
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise CoordError(f"Redis at {where} is unreachable: {redact(str(exc))}") from exc
    except RedisError as exc:
        raise CoordError(f"Redis at {where} failed: {redact(str(exc))}") from exc


class Backend:
    """State shared by the Coordinator's parts: the client, the key schema, its description."""

    def __init__(self, client: redis.Redis, prefix: str, where: str | None = None) -> None:
        self._client = client
        self._keys = Keys(prefix)
        self._where = where if where is not None else describe_client(client)

    @property
    def where(self) -> str:
        """The Redis location (password redacted) that error messages name."""
        return self._where


def translated(method: Callable[P, R]) -> Callable[P, R]:
    """Decorator for :class:`Backend` methods: run the whole call under :func:`redis_errors`."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        backend = cast(Backend, args[0])
        with redis_errors(backend.where):
            return method(*args, **kwargs)

    return wrapper


def text(value: object) -> str | None:
    """Decode a reply, whether or not the client was built with ``decode_responses``."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
