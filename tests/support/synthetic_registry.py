"""A synthetic upstream registry: thousands of repositories generated from a seed, on the fly.

Nothing is stored: repository ``i`` is named ``{namespace}/r{i:06d}`` (zero-padded, so the
catalog's lexical order is the index order), each of its tags is one image of one gzip
layer, and every byte (layer, config, manifest) is derived from ``(seed, repo, tag)``, so
digests are real and a second server with the same seed serves the same content. It speaks
the parts of the distribution API a mirror reads, as distribution does:

- ``GET /v2/``, ``GET /v2/_catalog?n=&last=`` (at most 1000 per page, a ``Link: <...>;
  rel="next"`` header while more remain), ``GET /v2/<name>/tags/list?n=&last=``;
- ``GET``/``HEAD /v2/<name>/manifests/<tag or digest>`` (OCI image manifests);
- ``GET``/``HEAD /v2/<name>/blobs/<digest>``; everything else answers 404 with the spec's
  error body (a referrers request too: clients fall back to the tag schema).

It counts the requests it answers by kind (:attr:`SyntheticRegistry.requests`), so tests
and the bench measure traffic without reading any log. A threaded ``http.server`` with
HTTP/1.1 keep-alive serves a few thousand requests per second on loopback.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import KeptAliveHandler, LoopbackServer
from tests.support.ports import LoopbackAddress

__all__ = ["MAX_PAGE", "SyntheticImage", "SyntheticRegistry"]

# distribution answers at most this many names per catalog page (its default maxentries).
MAX_PAGE = 1000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_TAGS_PATH = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _noise(key: str, size: int) -> bytes:
    """``size`` bytes that do not compress, derived from ``key`` (SHAKE-256)."""
    return hashlib.shake_256(key.encode()).digest(size)


@dataclass(frozen=True, slots=True)
class SyntheticImage:
    """One tag's image: its manifest, and the config and layer it references."""

    manifest: bytes
    config: bytes
    layer: bytes

    @property
    def digest(self) -> str:
        return _digest(self.manifest)

    def blobs(self) -> dict[str, bytes]:
        return {_digest(self.config): self.config, _digest(self.layer): self.layer}


def _image(seed: int, repo: str, tag: str, layer_size: int) -> SyntheticImage:
    raw = _noise(f"{seed}/{repo}:{tag}", layer_size)
    layer = gzip.compress(raw, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    return SyntheticImage(manifest, config, layer)


class SyntheticRegistry(LoopbackServer, LoopbackAddress):
    """``repos`` repositories of ``tags`` tags each, served on 127.0.0.1 until :meth:`stop`."""

    def __init__(
        self,
        repos: int,
        *,
        tags: int = 1,
        layer_size: int = 4096,
        seed: int = 0,
        namespace: str = "synth",
    ) -> None:
        self.repos = [f"{namespace}/r{i:06d}" for i in range(repos)]
        self._known = frozenset(self.repos)
        self.tags = [f"v{j}" for j in range(tags)]
        self.seed, self.layer_size = seed, layer_size
        self.requests: Counter[str] = Counter()
        self._count_guard = threading.Lock()
        self.image = functools.lru_cache(maxsize=4096)(self._make_image)
        self._serve(_handler_for(self))

    def total_requests(self) -> int:
        with self._count_guard:
            return sum(self.requests.values())

    def count(self, kind: str) -> None:
        with self._count_guard:
            self.requests[kind] += 1

    def _make_image(self, repo: str, tag: str) -> SyntheticImage:
        return _image(self.seed, repo, tag, self.layer_size)

    def has_repo(self, repo: str) -> bool:
        return repo in self._known

    def page(self, names: list[str], last: str | None, n: int) -> tuple[list[str], bool]:
        """The ``n`` names after ``last`` in sorted ``names``, and whether more follow."""
        start = bisect.bisect_right(names, last) if last else 0
        return names[start : start + n], start + n < len(names)

    def manifest(self, repo: str, reference: str) -> SyntheticImage | None:
        if reference in self.tags:
            return self.image(repo, reference)
        for tag in self.tags:
            image = self.image(repo, tag)
            if image.digest == reference:
                return image
        return None

    def blob(self, repo: str, digest: str) -> bytes | None:
        for tag in self.tags:
            found = self.image(repo, tag).blobs().get(digest)
            if found is not None:
                return found
        return None


def _handler_for(registry: SyntheticRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.registry = registry
    return Handler


class _Handler(KeptAliveHandler):
    registry: SyntheticRegistry

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: thousands of requests per second would drown any log."""

    def do_GET(self) -> None:
        self._route(body=True)

    def do_HEAD(self) -> None:
        self._route(body=False)

    def _route(self, body: bool) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        method = "get" if body else "head"
        if path in ("/v2/", "/v2"):
            return self._reply(method, "base", 200, b"{}", "application/json", body)
        if path == "/v2/_catalog":
            return self._list(method, "catalog", self.registry.repos, query, body)
        for pattern, serve in (
            (_TAGS_PATH, self._tags),
            (_MANIFEST_PATH, self._manifest),
            (_BLOB_PATH, self._blob),
        ):
            match = pattern.match(path)
            if match and self.registry.has_repo(match["name"]):
                return serve(method, match, query, body)
        return self._unknown(method, "NAME_UNKNOWN", body)

    def _tags(self, method: str, match: re.Match[str], query: Any, body: bool) -> None:
        self._list(method, "tags", self.registry.tags, query, body, name=match["name"])

    def _list(
        self,
        method: str,
        kind: str,
        names: list[str],
        query: dict[str, list[str]],
        body: bool,
        name: str | None = None,
    ) -> None:
        n = int(query.get("n", [str(MAX_PAGE)])[0])
        if not 0 < n <= MAX_PAGE:
            return self._error(method, kind, 400, "PAGINATION_NUMBER_INVALID", body)
        page, more = self.registry.page(names, query.get("last", [None])[0], n)
        key = "repositories" if name is None else "tags"
        document: dict[str, Any] = {key: page} if name is None else {"name": name, key: page}
        headers = {}
        if more:
            path = "/v2/_catalog" if name is None else f"/v2/{name}/tags/list"
            headers["Link"] = f'<{path}?last={page[-1]}&n={n}>; rel="next"'
        data = json.dumps(document).encode()
        self._reply(method, kind, 200, data, "application/json", body, headers)

    def _manifest(self, method: str, match: re.Match[str], _: Any, body: bool) -> None:
        image = self.registry.manifest(match["name"], match["ref"])
        if image is None:
            return self._unknown(method, "MANIFEST_UNKNOWN", body)
        headers = {"Docker-Content-Digest": image.digest}
        self._reply(method, "manifest", 200, image.manifest, OCI_MANIFEST, body, headers)

    def _blob(self, method: str, match: re.Match[str], _: Any, body: bool) -> None:
        data = self.registry.blob(match["name"], match["digest"])
        if data is None:
            return self._unknown(method, "BLOB_UNKNOWN", body)
        headers = {"Docker-Content-Digest": match["digest"]}
        self._reply(method, "blob", 200, data, "application/octet-stream", body, headers)

    def _unknown(self, method: str, code: str, body: bool) -> None:
        self._error(method, "unknown", 404, code, body)

    def _error(self, method: str, kind: str, status: int, code: str, body: bool) -> None:
        data = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self._reply(method, kind, status, data, "application/json", body)

    def _reply(
        self,
        method: str,
        kind: str,
        status: int,
        data: bytes,
        content_type: str,
        body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.registry.count(f"{method} {kind}")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)
