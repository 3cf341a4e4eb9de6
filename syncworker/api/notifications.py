"""Push notifications read into the manifests they announce (pure: no I/O).

Two payloads are understood:

- CNCF distribution's notification envelope (``docs/notifications.md``, media type
  ``application/vnd.docker.distribution.events.v1+json``): ``{"events": [...]}``, each event
  with ``action``, ``target`` (``repository``, ``digest``, ``tag``, ``url``, ``mediaType``)
  and ``request.host`` (the host the pusher addressed). A manifest push has a ``target.url``
  under ``/v2/<name>/manifests/``; blob pushes, mounts, pulls and deletes are skipped.
- Harbor's webhook for ``PUSH_ARTIFACT``: ``event_data.repository.repo_full_name`` and one
  ``event_data.resources[]`` entry per tag (``digest``, ``tag``, ``resource_url`` =
  ``host/name:tag``), in Harbor's default payload format or its CloudEvents one
  (``type: harbor.artifact.pushed``, the same fields under ``data``).

Names are not validated here: :mod:`syncworker.api.dispatch` validates them as the engine does
and files what it refuses as skipped, so one odd event never makes a registry resend the
whole envelope forever.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from syncworker.errors import RequestError

__all__ = [
    "DISTRIBUTION_EVENTS_TYPE",
    "HARBOR_PUSH_TYPES",
    "Item",
    "Push",
    "Skipped",
    "distribution_pushes",
    "harbor_pushes",
    "normal_host",
]

DISTRIBUTION_EVENTS_TYPE = "application/vnd.docker.distribution.events.v1+json"
# Harbor's default format, then its CloudEvents format.
HARBOR_PUSH_TYPES = ("PUSH_ARTIFACT", "harbor.artifact.pushed")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True, slots=True)
class Push:
    """One manifest pushed upstream: the hosts that name the upstream (lower case,
    ``host[:port]``), the repository, and its tag and/or digest (at least one)."""

    hosts: tuple[str, ...]
    repo: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What to sync: the tag when there is one (its digest may move on), else the digest."""
        return self.tag or self.digest or ""


@dataclass(frozen=True, slots=True)
class Skipped:
    """An event or resource that asks for nothing, and why."""

    what: str
    reason: str


#: What one event (or Harbor resource) of a notification reads as.
Item = Push | Skipped


def normal_host(netloc: str, scheme: str | None = None) -> str:
    """``host[:port]`` in lower case, without the scheme's default port (so that
    ``registry.example.com:443`` and ``https://registry.example.com`` are one upstream)."""
    host = netloc.strip().lower().rsplit("@", 1)[-1]
    for name, port in _DEFAULT_PORTS.items():
        if (scheme is None or scheme == name) and host.endswith(f":{port}"):
            return host[: -len(port) - 1]
    return host


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RequestError(f"{what} must be a JSON object")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- CNCF distribution ------------------------------------------------------------------------


def distribution_pushes(body: Any) -> list[Item]:
    """Each event of a distribution envelope as a :class:`Push` or a :class:`Skipped`."""
    events = _object(body, "the envelope").get("events")
    if not isinstance(events, list):
        raise RequestError('the envelope must hold an "events" list')
    return [_distribution_event(event) for event in events]


def _distribution_event(raw: Any) -> Item:
    if not isinstance(raw, Mapping):
        return Skipped("(event)", "not a JSON object")
    target = _mapping(raw.get("target"))
    repo = _text(target.get("repository"))
    what = str(_text(raw.get("id")) or repo or "(event)")[:200]
    if raw.get("action") != "push":
        return Skipped(what, f"action {str(raw.get('action'))[:20]!r}, not a push")
    url = urlsplit(_text(target.get("url")) or "")
    if "/manifests/" not in url.path:
        return Skipped(what, "not a manifest (a blob or a mount)")
    digest, tag = _text(target.get("digest")), _text(target.get("tag"))
    if repo is None or (digest is None and tag is None):
        return Skipped(what, "no repository, tag or digest")
    return Push(tuple(_distribution_hosts(raw, url.scheme, url.netloc)), repo, tag, digest)


def _distribution_hosts(raw: Mapping[str, Any], scheme: str, netloc: str) -> Iterator[str]:
    """``target.url``'s host (built from the registry's configured ``http.host`` when set),
    then ``request.host`` (the Host header of the push)."""
    if netloc:
        yield normal_host(netloc, scheme)
    host = _text(_mapping(raw.get("request")).get("host"))
    if host:
        yield normal_host(host)


# -- Harbor ------------------------------------------------------------------------------------


def harbor_pushes(body: Any) -> list[Item]:
    """The artifacts of a Harbor ``PUSH_ARTIFACT`` webhook (other event types: skipped)."""
    payload = _object(body, "the payload")
    kind = _text(payload.get("type")) or "?"
    data = payload.get("data") if "specversion" in payload else payload.get("event_data")
    if kind not in HARBOR_PUSH_TYPES:
        return [Skipped(kind[:100], "not a push (PUSH_ARTIFACT)")]
    data = _object(data, "event_data")
    repo = _text(_mapping(data.get("repository")).get("repo_full_name"))
    resources = data.get("resources")
    if repo is None or not isinstance(resources, list):
        raise RequestError("a PUSH_ARTIFACT payload needs repository.repo_full_name and resources")
    return [_harbor_resource(repo, resource) for resource in resources]


def _harbor_resource(repo: str, raw: Any) -> Item:
    if not isinstance(raw, Mapping):
        return Skipped(repo, "a resource that is not a JSON object")
    digest, tag = _text(raw.get("digest")), _text(raw.get("tag"))
    # resource_url is "host[:port]/name:tag" or "host[:port]/name@digest", without scheme.
    host = (_text(raw.get("resource_url")) or "").split("/", 1)[0]
    if not host or (digest is None and tag is None):
        return Skipped(repo, "no resource_url host, tag or digest")
    return Push((normal_host(host),), repo, tag, digest)
