"""Where a client may connect besides its upstream, and where credentials may go.

Blob GETs are often redirected to object storage, and a bearer challenge names a token
realm: both are URLs the upstream chooses. A public upstream must not be able to point the
worker at an address inside our own network (``10.0.0.0/8`` services, loopback): that
would be a request forgery. An upstream that is itself private (a registry on the LAN, or
on loopback in tests) may name private addresses. Link-local and shared addresses, where
cloud metadata services answer (``169.254.169.254``; Alibaba's ``100.100.100.200`` in
``100.64.0.0/10``; AWS's ``fd00:ec2::254``), are refused whatever the upstream. The same
reasoning as go-containerregistry's ``transport.checkRedirect``.

The check resolves the name once; the caller then connects to exactly the address checked
(:mod:`syncworker.registry.pinning`), so DNS cannot answer differently in between.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = [
    "IPAddress",
    "Origin",
    "Origins",
    "is_forbidden_address",
    "is_internal_address",
    "origin",
    "resolve",
    "target_allowed",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# RFC 6598 shared address space: carrier NAT, and cloud metadata (100.100.100.200).
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_METADATA_V6 = ipaddress.ip_address("fd00:ec2::254")


Origin = tuple[str, str, int]


def origin(url: str) -> Origin:
    """(scheme, host, port): credentials are only sent where this matches a registry URL.

    A port that is not a number (a hostile Location or realm) gives port -1, which
    matches no registry URL and is refused as a target.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = -1
    return parts.scheme, (parts.hostname or "").lower(), port


class Origins:
    """The upstream's own origins (its URLs, failover ones included): the one answer to
    "is this the upstream itself?", which decides where credentials go, what its rate
    limit counts, and what needs no address check."""

    def __init__(self, urls: Iterable[str]) -> None:
        self._own = frozenset(origin(u) for u in urls)

    def of(self, url: str) -> Origin | None:
        """The origin of ``url`` if it is one of the upstream's own, else None."""
        key = origin(url)
        return key if key in self._own else None

    def own(self, url: str) -> bool:
        return origin(url) in self._own


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_internal_address(address: IPAddress) -> bool:
    """Private, loopback, link-local, shared, unspecified, reserved or multicast."""
    address = _unmapped(address)
    return (
        address.is_private
        or address.is_loopback
        or is_forbidden_address(address)
        or address.is_reserved
        or address.is_multicast
    )


def is_forbidden_address(address: IPAddress) -> bool:
    """Never a redirect target or token realm: link-local, shared (RFC 6598), metadata,
    unspecified or multicast."""
    address = _unmapped(address)
    return (
        address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address == _METADATA_V6
        or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)
    )


def target_allowed(
    target_url: str,
    upstream_addresses: Iterable[IPAddress],
    target_addresses: Iterable[IPAddress],
) -> bool:
    """Whether to connect to ``target_url`` on behalf of an upstream (pure: addresses
    resolved by the caller). Refused: schemes other than http(s), an unresolvable target,
    a forbidden address, and an internal one when no upstream address is internal. One
    bad address among several is enough: DNS may answer either."""
    scheme, _, port = origin(target_url)
    if scheme not in ("http", "https") or port < 0:
        return False
    targets = list(target_addresses)
    if not targets or any(is_forbidden_address(a) for a in targets):
        return False
    if any(is_internal_address(a) for a in upstream_addresses):
        return True
    return not any(is_internal_address(a) for a in targets)


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
