"""``-vv`` shows the requests: one line per HTTP request of ours (method, redacted URL,
status, bytes, milliseconds), the auth challenges and retries, and one per S3 operation,
with no secret among them: not the password, the bearer tokens, the AWS secret key or a
signature."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from syncworker.registry import ClientOptions, ClientStats
from syncworker.registry.auth import Credentials
from syncworker.registry.requestlog import LOGGER
from syncworker.registry.stack import Stack
from tests.support.images import make_image
from tests.support.loopback import LoopbackServer
from tests.support.mirror import assert_no_secret, sync_in_subprocess, write_sync_config
from tests.support.ports import LOOPBACK
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import SECRET_KEY, S3Server, s3_server
from tests.support.token_issuer import TokenIssuer

__all__ = ["s3_server"]  # the session fixture, imported for pytest

USER, PASSWORD = "vv-bot", "vv-pa55-never-printed"
# What a signed S3 request or a presigned URL carries; none of it may be printed.
SIGNATURE_MARKS = ("X-Amz-Signature", "AWS4-HMAC-SHA256", "Signature=", "X-Amz-Credential")


def test_vv_prints_each_request_and_no_secret(
    make_token_issuer: Callable[..., TokenIssuer],
    make_registry: Callable[..., RegistryServer],
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    issuer = make_token_issuer(users={USER: PASSWORD}, anonymous_pull=False)
    server = make_registry(token_auth=issuer)
    push_image(server.url, "team/app", "v1", make_image(("vv", 1)), auth=(USER, PASSWORD))
    pushed = issuer.tokens_issued
    bucket = s3_server.new_bucket()
    output = _sync_vv(tmp_path, server, s3_server, bucket)
    base = re.escape(server.url)
    ref = r"(v1|sha256:[0-9a-f]{64})"
    lines = {
        # By digest after a HEAD until an answer shows the upstream counts no pulls.
        "manifest GET": rf"GET {base}/v2/team/app/manifests/{ref}: 200, \d+ bytes, \d+ ms",
        "blob GET": rf"GET {base}/v2/team/app/blobs/sha256:[0-9a-f]{{64}}: 200, \d+ bytes",
        "challenge": rf"{base}/v2/\S*: 401, challenged \(bearer, realm {re.escape(issuer.realm)}\)",
        "token GET": rf"GET {re.escape(issuer.realm)}\?service=[^ ]*scope=[^ ]*: 200, \d+ bytes",
        "S3 put": rf"S3 PutObject bucket={bucket} key=mirror/team/app/\S+: 200, \d+ ms",
        "S3 missing": rf"S3 GetObject bucket={bucket} key=mirror/\S+: 404, \d+ ms",
    }
    missing = [name for name, line in lines.items() if not re.search(line, output)]
    assert not missing, output[-4000:]
    tokens = issuer.tokens[pushed:]
    assert tokens, "the token issuer was never asked"
    signatures = [token.rsplit(".", 1)[1] for token in tokens]
    secrets = [PASSWORD, SECRET_KEY, *tokens, *signatures, *SIGNATURE_MARKS]
    assert_no_secret([output], *secrets)


def _sync_vv(tmp_path: Path, server: RegistryServer, s3: S3Server, bucket: str) -> str:
    credentials = {server.host: {"username": USER, "password": PASSWORD}}
    driver = s3.driver(bucket, "/mirror")
    config = write_sync_config(
        tmp_path, Path("/mirror"), [{"urls": [server.url]}], credentials=credentials,
        storage_driver=driver,
    )  # fmt: skip
    return sync_in_subprocess(config, "-vv")


def test_retries_and_failed_requests_are_lines_too(
    make_registry: Callable[..., RegistryServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A request that gets no answer is a line naming why, and its retry another."""
    server = make_registry(htpasswd=(USER, PASSWORD))
    url = server.url
    server.stop()
    options = ClientOptions(max_retries=1, retry_delay=0.01)
    stack = Stack([url], Credentials(USER, PASSWORD), options, ClientStats())
    caplog.set_level(logging.DEBUG, LOGGER)
    with pytest.raises(Exception, match="Connection|refused"):
        stack.fetch("GET", "/v2/", scope=None, cap=1024)
    stack.close()
    text = caplog.text
    assert re.search(rf"GET {re.escape(url)}/v2/: .*refused.* after \d+ ms", text), text
    assert re.search(rf"GET {re.escape(url)}/v2/: retry in [\d.]+ s after ", text), text


def test_nothing_is_logged_below_debug(
    make_registry: Callable[..., RegistryServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_registry()
    stack = Stack([server.url], None, ClientOptions(), ClientStats())
    caplog.set_level(logging.INFO, LOGGER)
    with stack.fetch("GET", "/v2/", scope=None, cap=1024) as response:
        assert response.status == 200
    stack.close()
    assert not [r for r in caplog.records if r.name == LOGGER]


# What object storage puts in a presigned blob URL: none of its values may be logged.
PRESIGNED = "X-Amz-Credential=AKIDLEAK%2F20261207&X-Amz-Signature=5ec2e7519a7beef&X-Amz-Expires=900"


class _PresigningUpstream(LoopbackServer):
    """Answers a blob GET as a registry on S3 does: 307 to a presigned URL, whose body is
    ``blob``."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path.startswith("/v2/"):
                    self.send_response(307)
                    self.send_header("Location", f"/bucket/blob?{PRESIGNED}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"blob")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._serve(Handler)


def test_a_presigned_redirect_is_logged_without_its_signature(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with _PresigningUpstream() as upstream:
        url = f"http://{LOOPBACK}:{upstream.port}"
        stack = Stack([url], None, ClientOptions(), ClientStats())
        caplog.set_level(logging.DEBUG, LOGGER)
        with stack.fetch("GET", "/v2/a/blobs/sha256:00", scope=None, cap=1024) as response:
            assert response.body == b"blob"
        stack.close()
    text = caplog.text
    # REDACTED by the URL's own redaction; *** when a handler's filter redacts the line
    # again (an earlier in-process run installed it on the root logger).
    hidden = r"(?:REDACTED|\*\*\*)"
    target = rf"{re.escape(url)}/bucket/blob\?X-Amz-Credential={hidden}&X-Amz-Signature={hidden}"
    assert re.search(
        rf"GET {re.escape(url)}/v2/a/blobs/sha256:00: 307, following to {target}", text
    )
    assert re.search(rf"GET {target}&X-Amz-Expires={hidden}: 200, 4 bytes, \d+ ms", text), text
    assert_no_secret([text], "AKIDLEAK", "5ec2e7519a7beef")
