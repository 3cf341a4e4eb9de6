"""A programmable upstream on loopback that lies: wrong digests, oversized manifests,
names with ``..``, referrer cycles. Real registries refuse to store such content, so the
only way to serve it is to script the answers; everything else in the suite uses the real
``docker-registry``.

    upstream = HostileRegistry()
    upstream.route("GET", "/v2/_catalog", json_body({"repositories": ["a"]}))
    upstream.serve_manifest("a", "v1", manifest)          # HEAD and GET, tag and digest
    upstream.serve_blob("a", blob, body=b"other bytes")   # lie about a blob
    upstream.first("GET", path, Answer(503))             # then fail once before the route
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.images import Blob, Manifest
from tests.support.ports import LOOPBACK

__all__ = ["Answer", "HostileRegistry", "json_answer"]


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds between the body's bytes: a server that never stalls long enough for a
    #: read timeout, yet never finishes.
    trickle: float = 0.0


def json_answer(value: Any, status: int = 200, media_type: str = "application/json") -> Answer:
    return Answer(status, json.dumps(value).encode(), {"Content-Type": media_type})


class HostileRegistry:
    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Answer] = {("GET", "/v2/"): Answer(200, b"{}")}
        self._once: dict[tuple[str, str], list[Answer]] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def route(self, method: str, path: str, answer: Answer) -> None:
        self._routes[(method, path)] = answer
        if method == "GET":
            self._routes.setdefault(("HEAD", path), Answer(answer.status, b"", answer.headers))

    def first(self, method: str, path: str, *answers: Answer) -> None:
        """Answer the next requests to ``path`` with ``answers``, in order, before its
        route: a transient failure injected in front of a good answer."""
        with self._lock:
            self._once.setdefault((method, path), []).extend(answers)

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for seen in self.requests if seen == (method, path))

    def _next(self, method: str, path: str) -> Answer | None:
        with self._lock:
            self.requests.append((method, path))
            queued = self._once.get((method, path))
            if queued:
                return queued.pop(0)
        return self._routes.get((method, path))

    def serve_tags(self, repo: str, tags: list[str]) -> None:
        self.route("GET", f"/v2/{repo}/tags/list", json_answer({"name": repo, "tags": tags}))

    def serve_manifest(
        self, repo: str, ref: str | None, manifest: Manifest, *, body: bytes | None = None
    ) -> None:
        """Serve ``manifest`` by digest (and by ``ref``), announcing its real digest but
        sending ``body`` instead when given."""
        headers = {"Content-Type": manifest.media_type, "Docker-Content-Digest": manifest.digest}
        answer = Answer(200, manifest.raw if body is None else body, headers)
        for name in {manifest.digest, ref} - {None}:
            self.route("GET", f"/v2/{repo}/manifests/{name}", answer)
            head = Answer(200, b"", {**headers, "Content-Length": str(manifest.size)})
            self.route("HEAD", f"/v2/{repo}/manifests/{name}", head)

    def serve_blob(self, repo: str, blob: Blob, *, body: bytes | None = None) -> None:
        answer = Answer(
            200, blob.data if body is None else body, {"Content-Type": "application/octet-stream"}
        )
        self.route("GET", f"/v2/{repo}/blobs/{blob.digest}", answer)

    def serve_image(self, repo: str, tag: str, manifest: Manifest) -> None:
        for part in manifest.walk():
            self.serve_manifest(repo, tag if part is manifest else None, part)
            for blob in part.blobs:
                self.serve_blob(repo, blob)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                answer = registry._next(self.command, path)
                if answer is None:
                    answer = json_answer({"errors": [{"code": "NOT_FOUND"}]}, 404)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in answer.headers:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                # The client may give up half-way (a deadline): nothing to tell anyone.
                with contextlib.suppress(OSError):
                    self._write(answer)

            def _write(self, answer: Answer) -> None:
                if not answer.trickle:
                    self.wfile.write(answer.body)
                    return
                for index in range(len(answer.body)):
                    self.wfile.write(answer.body[index : index + 1])
                    self.wfile.flush()
                    time.sleep(answer.trickle)

            do_GET = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
