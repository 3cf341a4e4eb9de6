"""``syncworker.serve``: the read-only registry ``syncworker serve`` runs over the store
(its address, TLS, Basic auth, and how long a pull-through client waits)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from syncworker.config.modelbase import ConfigModel, PositiveDuration
from syncworker.errors import ConfigError

__all__ = ["DEFAULT_LISTEN", "ServeSettings", "ServeTls", "listen_address", "parse_listen"]

DEFAULT_LISTEN = "0.0.0.0:5000"


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; ValueError otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def listen_address(listen: str, key: str = "--listen") -> tuple[str, int]:
    """:func:`parse_listen` for a command's address; ConfigError naming ``key`` otherwise."""
    try:
        return parse_listen(listen)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


class ServeTls(ConfigModel):
    """A PEM certificate (with its chain) and its private key."""

    certificate: str = Field(min_length=1)
    """A PEM file: the certificate and its chain."""
    key: str = Field(min_length=1)
    """A PEM file: its private key."""


class ServeSettings(ConfigModel):
    listen: str = DEFAULT_LISTEN
    """``HOST:PORT`` to listen on (``--listen`` wins)."""
    tls: ServeTls | None = None
    """Serve HTTPS with this certificate; none: plain HTTP (behind a TLS proxy)."""
    htpasswd: str | None = None
    """An htpasswd file of bcrypt hashes (``htpasswd -B``), checked on every request;
    none: anonymous read."""
    on_demand_timeout: PositiveDuration = timedelta(seconds=60)
    """How long a pull of what an ``onDemand`` registry lacks waits for its copy; past it
    the client is answered 503 and retries, the copy going on."""
    redirect_expiry: PositiveDuration = timedelta(minutes=20)
    """How long a presigned S3 URL lives, when ``storage.redirect`` asks for redirects."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value
