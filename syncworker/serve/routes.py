"""Which route a request is for: the read-only subset of the distribution spec's
endpoints (spec.md "Endpoints"); every write method answers 405 UNSUPPORTED, whatever the
path, before anything is read."""

from __future__ import annotations

import re
from collections.abc import Callable

from syncworker.serve.apierrors import ApiError, unsupported
from syncworker.serve.blobroute import get_blob
from syncworker.serve.catalogroute import list_repositories
from syncworker.serve.context import Served, repository
from syncworker.serve.manifestroute import get_manifest
from syncworker.serve.messages import API_VERSION, Request, Response, json_response
from syncworker.serve.referrerroute import list_referrers
from syncworker.serve.tagroute import list_tags

__all__ = ["READ_METHODS", "ROUTES", "dispatch", "error_response", "route_of"]

READ_METHODS = frozenset({"GET", "HEAD"})
Route = Callable[[Served, Request, re.Match[str]], Response]


def _base(served: Served, request: Request, match: re.Match[str]) -> Response:
    return json_response({}, headers=API_VERSION)


def _catalog(served: Served, request: Request, match: re.Match[str]) -> Response:
    return list_repositories(served, request)


def _named(
    handler: Callable[[Served, Request, str, str], Response],
) -> Route:
    def route(served: Served, request: Request, match: re.Match[str]) -> Response:
        return handler(served, request, served.names(repository(match["name"])), match["ref"])

    return route


def _tags(served: Served, request: Request, match: re.Match[str]) -> Response:
    return list_tags(served, request, served.names(repository(match["name"])))


def _uploads(served: Served, request: Request, match: re.Match[str]) -> Response:
    raise unsupported(request.method)


# (metrics label, path pattern, route): the labels are distribution's handler names.
ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("base", re.compile(r"/v2/?"), _base),
    ("catalog", re.compile(r"/v2/_catalog"), _catalog),
    ("blob_upload", re.compile(r"/v2/(?P<name>.+)/blobs/uploads(?:/.*)?"), _uploads),
    ("tags", re.compile(r"/v2/(?P<name>.+)/tags/list"), _tags),
    ("manifest", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)"), _named(get_manifest)),
    ("blob", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<ref>[^/]+)"), _named(get_blob)),
    ("referrers", re.compile(r"/v2/(?P<name>.+)/referrers/(?P<ref>[^/]+)"), _named(list_referrers)),
]


def route_of(path: str) -> tuple[str, Route, re.Match[str]] | None:
    for label, pattern, route in ROUTES:
        match = pattern.fullmatch(path)
        if match is not None:
            return label, route, match
    return None


def dispatch(served: Served, request: Request) -> tuple[str, Response]:
    """The route's label (``unknown`` for no route) and its answer, an error of the spec's
    form included; only failures of the store itself are left to the caller."""
    found = route_of(request.path)
    label = "unknown" if found is None else found[0]
    try:
        if found is None:
            raise ApiError(404, "NOT_FOUND", "no such endpoint", {"path": request.path[:300]})
        if request.method not in READ_METHODS:
            raise unsupported(request.method)
        return label, found[1](served, request, found[2])
    except ApiError as exc:
        return label, error_response(exc)


def error_response(error: ApiError) -> Response:
    headers = {"Content-Type": "application/json", **API_VERSION, **error.headers}
    return Response(error.status, headers, error.body())
