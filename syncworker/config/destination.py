"""``syncworker.destination``: mirror into a registry instead of OCI layouts.

::

    syncworker:
      destination:
        url: https://registry.internal:5000   # or http://... for a local registry
        tlsVerify: true
        certDir: /etc/syncworker/certs/dest     # zot's certDir: ca.crt, client.cert/.key

Its login is looked up by ``host:port`` in ``credentialsFile``, then in docker's
config.json, exactly as an upstream's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import field_validator

from syncworker.config.modelbase import ConfigModel

if TYPE_CHECKING:
    from syncworker.config.syncextension import RegistryConfig
    from syncworker.registry.options import ClientOptions

__all__ = ["DestinationConfig", "destination_problems"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class DestinationConfig(ConfigModel):
    """The registry that mirrored repositories are pushed to."""

    url: str
    """The registry's ``http://`` or ``https://`` URL, without a path. Its login is looked
    up by ``host:port`` as an upstream's."""
    tls_verify: bool = True
    """Verify its TLS certificate."""
    cert_dir: str | None = None
    """zot's ``certDir`` for it: ``ca.crt``, ``client.cert``, ``client.key``."""

    @field_validator("url")
    @classmethod
    def _registry_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            # Not echoed: the URL holds a secret.
            raise ValueError("a URL must not hold credentials; use credentialsFile")
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
        if parts.path.strip("/") or parts.query or parts.fragment:
            # The distribution API lives at /v2/ of the host; a path cannot be honoured.
            raise ValueError(f"{url!r}: a registry URL has no path, query or fragment")
        return url.rstrip("/")

    @property
    def host(self) -> str:
        """``host[:port]`` as written: the key of its login in the credentials file."""
        return urlsplit(self.url).netloc

    def client_options(
        self, max_blob_size: int | None = None, threads: int | None = None
    ) -> ClientOptions:
        """Options for the registry client; ``max_blob_size`` None keeps the client's.
        ``threads``: how many threads share the client, the keep-alive pool's size."""
        from syncworker.registry.options import ClientOptions

        given: dict[str, Any] = {"tls_verify": self.tls_verify, "cert_dir": self.cert_dir}
        if threads is not None:
            given["pool_size"] = threads
        if max_blob_size is not None:
            given["max_blob_size"] = max_blob_size
        return ClientOptions(**given)


def destination_problems(
    dest: DestinationConfig | None, registries: Sequence[RegistryConfig]
) -> list[tuple[str, str]]:
    """A destination that is one of the upstreams would mirror a registry into itself."""
    if dest is None:
        return []
    here = _endpoint(dest.url)
    return [
        (
            "syncworker.destination.url",
            f"is the upstream registry {reg.name!r} itself; mirroring into it is refused",
        )
        for reg in registries
        if any(_endpoint(url) == here for url in reg.urls)
    ]


def _endpoint(url: str) -> tuple[str, int]:
    """Host and port, with the scheme's default port filled in: what is connected to."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    host = {"localhost": "127.0.0.1", "::1": "127.0.0.1"}.get(host, host)
    return host, parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
