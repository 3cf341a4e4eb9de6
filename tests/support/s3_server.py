"""Real S3 APIs on loopback, as subprocesses: ``moto_server`` (moto's server extra) and
s3rver (a second, independent S3 implementation on node; ``scripts/install-deps.sh``
installs it into ``tests/support/node_modules``).

``S3Server.start(kind)`` picks a free port, waits until the server answers, and gives the
endpoint, the credentials it accepts and a boto3 client; ``new_bucket()`` makes a fresh
bucket per test so tests never see each other's objects. The pytest fixtures ``s3_server``
(moto) and ``s3rver_server`` are session-scoped: import them into a test module to use
them. A server that cannot start fails the test, naming what is missing; nothing skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.ports import LOOPBACK, free_port, wait_until

__all__ = ["S3Server", "any_s3", "s3_server", "s3rver_server"]

# moto accepts any credentials; fixed ones keep the AWS credential chain out of the tests.
ACCESS_KEY = "syncworker-test"
SECRET_KEY = "syncworker-test-secret"
# s3rver checks signatures against its one built-in account.
S3RVER_KEY = "S3RVER"
REGION = "us-east-1"
START_TIMEOUT = 30.0  # seconds; moto imports every service model on start
S3RVER = Path(__file__).resolve().parent / "node_modules" / ".bin" / "s3rver"


def _moto(port: int, _data: Path) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]


def _s3rver(port: int, data: Path) -> list[str]:
    if not S3RVER.exists():
        raise RuntimeError(f"s3rver is not installed at {S3RVER}: run scripts/install-deps.sh")
    return [str(S3RVER), "-d", str(data), "-a", LOOPBACK, "-p", str(port), "-s"]


COMMANDS = {"moto": _moto, "s3rver": _s3rver}
KEYS = {"moto": (ACCESS_KEY, SECRET_KEY), "s3rver": (S3RVER_KEY, S3RVER_KEY)}


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    kind: str = "moto"
    data: Path | None = None
    buckets: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, kind: str = "moto") -> S3Server:
        for _ in range(3):  # the free port may be taken before the server binds it
            port = free_port()
            data = Path(tempfile.mkdtemp(prefix=f"{kind}-"))
            process = subprocess.Popen(
                COMMANDS[kind](port, data),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
            )
            server = cls(f"http://{LOOPBACK}:{port}", process, kind, data)
            if wait_until(server.answers, timeout=START_TIMEOUT, alive=server.alive):
                return server
            server.stop()
        raise RuntimeError(f"{kind} did not start")

    @property
    def keys(self) -> tuple[str, str]:
        return KEYS[self.kind]

    def alive(self) -> bool:
        return self.process.poll() is None

    def answers(self) -> bool:
        path = "/moto-api/" if self.kind == "moto" else "/"
        try:
            return requests.get(f"{self.endpoint}{path}", timeout=1).status_code < 500
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.keys[0],
            aws_secret_access_key=self.keys[1],
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def driver(self, bucket: str, root: str = "/mirror") -> dict[str, Any]:
        """A zot ``storageDriver`` section for ``bucket`` on this server."""
        return {
            "name": "s3",
            "rootdirectory": root,
            "region": REGION,
            "regionendpoint": self.endpoint,
            "bucket": bucket,
            "secure": False,
            "skipverify": False,
            "accesskey": self.keys[0],
            "secretkey": self.keys[1],
        }

    def drop(self, bucket: str) -> None:
        """Delete a bucket's objects (moto keeps them in memory: 200 MiB tests add up)."""
        client = self.client()
        if self.kind == "moto":
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for obj in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    client.delete_object(Bucket=bucket, Key=obj["Key"], VersionId=obj["VersionId"])
            for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        else:  # s3rver keeps no versions and cannot list uploads
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=bucket, Key=obj["Key"])
        with contextlib.suppress(ClientError):  # s3rver keeps parts of uncompleted uploads
            client.delete_bucket(Bucket=bucket)


@contextlib.contextmanager
def _running(kind: str) -> Iterator[S3Server]:
    server = S3Server.start(kind)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with _running("moto") as server:
        yield server


@pytest.fixture(scope="session")
def s3rver_server() -> Iterator[S3Server]:
    with _running("s3rver") as server:
        yield server


@pytest.fixture(params=["moto", "s3rver"])
def any_s3(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 implementation in turn (the session's servers)."""
    name = "s3_server" if request.param == "moto" else "s3rver_server"
    server: S3Server = request.getfixturevalue(name)
    return server
