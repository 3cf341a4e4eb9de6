"""The registry a configuration names: its store opened, its TLS and auth set up, and the
HTTP server built over them (``syncworker serve``)."""

from __future__ import annotations

import ssl
import threading

from syncworker.config import Config
from syncworker.config.serving import listen_address
from syncworker.errors import ConfigError
from syncworker.runtime import Runtime
from syncworker.serve.context import Filler, Served, ServedStore, stored_names
from syncworker.serve.copiers import in_process, through_workers
from syncworker.serve.htpasswd import Htpasswd
from syncworker.serve.ondemand import Counter, OnDemand
from syncworker.serve.server import Observer, RegistryHTTPServer

__all__ = ["build_server", "open_served", "tls_context"]


def open_served(runtime: Runtime, counter: Counter | None = None) -> Served:
    """The store of ``runtime`` (opened at least ``upto="store"``) to be served, with
    pull-through for its ``onDemand`` registries; ConfigError for a registry destination,
    which the registry it names serves itself."""
    config, store = runtime.config, runtime.store
    if not isinstance(store, ServedStore):
        raise ConfigError(
            "syncworker.destination",
            "serve reads an OCI-layout store (filesystem or S3); a registry destination is "
            "served by that registry",
        )
    redirect = config.storage.redirect
    expiry = config.syncworker.serve.redirect_expiry.total_seconds()
    wants = redirect is not None and not redirect.disable
    filler = _filler(runtime, counter)
    names = stored_names(config.registries)
    return Served(store, int(expiry) if wants else None, filler, names=names)


def _filler(runtime: Runtime, counter: Counter | None) -> Filler | None:
    """Pull-through for the ``onDemand`` registries (None without any): through the workers
    when Redis is configured, else by the runtime's Mirror in this process."""
    config = runtime.config
    if not any(entry.on_demand for entry in config.registries):
        return None
    stopping = threading.Event()
    coord = runtime.coord
    copy = in_process(runtime) if coord is None else through_workers(config, coord, stopping)
    wait = config.syncworker.serve.on_demand_timeout.total_seconds()
    return OnDemand(config.registries, copy, wait, counter, stopping)


def tls_context(config: Config) -> ssl.SSLContext | None:
    tls = config.syncworker.serve.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.certificate, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("syncworker.serve.tls", f"cannot load {tls.certificate}: {exc}") from None
    return context


def build_server(
    config: Config,
    served: Served,
    listen: str | None = None,
    observer: Observer | None = None,
) -> RegistryHTTPServer:
    """The server on ``listen`` (else ``syncworker.serve.listen``), bound and ready."""
    text = listen or config.syncworker.serve.listen
    # The error names where the address came from: the option, or the config's default.
    key = "--listen" if listen else "syncworker.serve.listen"
    address = listen_address(text, key)
    settings = config.syncworker.serve
    htpasswd = Htpasswd(settings.htpasswd) if settings.htpasswd else None
    try:
        return RegistryHTTPServer(
            address, served, htpasswd=htpasswd, tls=tls_context(config), observer=observer
        )
    except OSError as exc:
        raise ConfigError(key, f"cannot listen on {text}: {exc.strerror or exc}") from None
