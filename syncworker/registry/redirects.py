"""Which redirects a client may follow, and where credentials may go.

Blob GETs are often redirected to object storage, so redirects are followed; but a
public upstream must not be able to point the worker at an address inside our own network
(``169.254.169.254`` cloud metadata, ``10.0.0.0/8`` services): that would be a request
forgery. An upstream that is itself private (a registry on the LAN, or on loopback in
tests) may redirect anywhere. The same reasoning as go-containerregistry's
``transport.checkRedirect``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = [
    "MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "is_internal_address",
    "origin",
    "redirect_allowed",
    "resolve",
]

# requests' own default; a chain longer than this is a loop or an attack.
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port): credentials are only sent where this matches a registry URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def is_internal_address(address: IPAddress) -> bool:
    """Private, loopback, link-local, unspecified, reserved or multicast."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


def redirect_allowed(
    target_url: str,
    upstream_addresses: Iterable[IPAddress],
    target_addresses: Iterable[IPAddress],
) -> bool:
    """Whether to follow a redirect to ``target_url`` (pure; addresses resolved by the caller).

    Refused: schemes other than http(s), and internal targets when no upstream address is
    internal. An unresolvable target is refused too (it has no address to judge).
    """
    if urlsplit(target_url).scheme not in ("http", "https"):
        return False
    if any(is_internal_address(a) for a in upstream_addresses):
        return True
    targets = list(target_addresses)
    return bool(targets) and not any(is_internal_address(a) for a in targets)


def resolve(host: str) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal is returned as is); [] on failure."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
