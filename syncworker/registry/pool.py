"""The connection pool: the handler at the bottom of the stack, one request on urllib3.

Keep-alive connections per host (the upstream's URLs, a redirect target or token realm or
two), shared by every thread; TLS as the upstream's options say (``certDir``'s CA and
client certificate, or no verification); each request bounded by the options' timeout and
what is left of its deadline. urllib3's exceptions while sending become
:class:`~syncworker.errors.TransportError` (:mod:`.http` translates them).

It also judges where a client may connect besides its upstream (:meth:`Pool.admit`, for
redirect targets and token realms: :mod:`.addresses`) and pins the connection to the
address judged (:mod:`.pinning`).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.connection import HTTPConnection

from syncworker.registry import addresses
from syncworker.registry.http import HTTP_ERRORS, Request, Response, timed_out, transport_error
from syncworker.registry.options import ClientOptions
from syncworker.registry.pinning import Pins, pinned_pools
from syncworker.registry.stats import ClientStats

__all__ = ["POOL_HOSTS", "Pool"]

# Hosts whose pools are kept: the upstream's URLs plus a redirect target or two.
POOL_HOSTS = 8
# Bounds of the receive buffer under a download rate cap: below a few TCP segments a
# connection crawls; above a few MiB the buffer stops holding anything back.
MIN_RECEIVE_BUFFER = 16 * 1024
MAX_RECEIVE_BUFFER = 4 * 1024 * 1024


class Pool:
    """Thread-safe: urllib3's pools are. ``options.pool_size`` connections are kept per
    host; size it to the threads that share the client, or connections are dropped."""

    def __init__(self, origins: addresses.Origins, options: ClientOptions, stats: ClientStats):
        self._origins = origins
        self._options = options
        self._stats = stats
        self._pins = Pins()
        self._manager = pinned_pools(
            urllib3.PoolManager(
                num_pools=POOL_HOSTS,
                maxsize=options.pool_size,
                headers={"User-Agent": options.user_agent},
                **_tls(options),
                **_receive_buffer(options),
            ),
            self._pins,
        )
        self._upstream_addresses: dict[str, list[addresses.IPAddress]] = {}
        self._lock = threading.Lock()

    def send(self, request: Request) -> Response:
        timeout = self._options.timeout
        if request.deadline is not None:  # one reading: it may end between two
            timeout = min(timeout, request.deadline.check(request))
        url = request.url
        if request.params:
            url += ("&" if "?" in url else "?") + urlencode(list(request.params))
        self._stats.add(requests=1)
        hook = self._stats.hook
        try:
            # The host's pool, then the request on it: PoolManager.urlopen would parse the
            # whole URL once more, which costs more than the rest of a HEAD's Python.
            scheme, host, port = addresses.origin(url)
            parts = urlsplit(url)
            pool = self._manager.connection_from_host(host, port, scheme)
            raw = pool.urlopen(
                request.method,
                parts.path + ("?" + parts.query if parts.query else "") or "/",
                body=request.body,
                headers={**self._manager.headers, **request.headers},
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                chunked=request.streamed and "Content-Length" not in request.headers,
            )
        except HTTP_ERRORS as exc:
            if hook is not None:
                hook.response(request.method, "timeout" if timed_out(exc) else "error")
            raise transport_error(request.method, url, exc) from None
        if hook is not None:
            hook.response(request.method, str(raw.status))
        return Response(request, url, raw, self._stats)

    def admit(self, url: str, upstream: str) -> bool:
        """Whether ``url`` (a redirect target, a token realm) may be connected to on
        behalf of the upstream URL ``upstream``; if it may, its connections are pinned to
        the address judged. The registry's own URLs are the user's choice and always may."""
        if self._origins.own(url):
            return True
        host = addresses.origin(url)[1]
        found = addresses.resolve(host)
        if not addresses.target_allowed(url, self._addresses_of(upstream), found):
            return False
        self._pins.pin(host, str(found[0]))
        return True

    def close(self) -> None:
        self._manager.clear()

    def _addresses_of(self, url: str) -> list[addresses.IPAddress]:
        host = addresses.origin(url)[1]
        with self._lock:
            cached = self._upstream_addresses.get(host)
        if cached is None:
            cached = addresses.resolve(host)
            with self._lock:
                self._upstream_addresses[host] = cached
        return cached


def _receive_buffer(options: ClientOptions) -> dict[str, Any]:
    """With a download rate cap, a receive buffer of an eighth of a second at the cap, so
    that TCP's flow control holds the sender to the rate the reader keeps (the kernel's
    own buffers would otherwise take megabytes ahead of it); none otherwise."""
    if options.download_rate is None:
        return {}
    size = min(max(options.download_rate // 8, MIN_RECEIVE_BUFFER), MAX_RECEIVE_BUFFER)
    return {
        "socket_options": [
            *HTTPConnection.default_socket_options,
            (socket.SOL_SOCKET, socket.SO_RCVBUF, size),
        ]
    }


def _tls(options: ClientOptions) -> dict[str, Any]:
    """urllib3's TLS settings for ``options``: the system's trust unless ``certDir`` has a
    ``ca.crt``; a client certificate when it has both ``client.cert`` and ``client.key``."""
    settings: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    if not options.tls_verify:
        # The user asked for no verification (zot's tlsVerify: false); not a warning per
        # request. CERT_NONE alone turns the hostname check off too; assert_hostname is not
        # set, as the pool manager would hand it to plain-HTTP pools, which refuse it.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        settings = {"cert_reqs": "CERT_NONE"}
    if options.cert_dir:
        ca = Path(options.cert_dir, "ca.crt")
        if options.tls_verify and ca.is_file():
            settings["ca_certs"] = str(ca)
        cert, key = Path(options.cert_dir, "client.cert"), Path(options.cert_dir, "client.key")
        if cert.is_file() and key.is_file():
            settings["cert_file"], settings["key_file"] = str(cert), str(key)
    return settings
