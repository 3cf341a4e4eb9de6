"""A real S3 API on loopback: ``moto_server`` (moto's server extra) as a subprocess.

``S3Server.start()`` picks a free port, waits until the server answers, and gives the
endpoint, fixed test credentials and a boto3 client; ``new_bucket()`` makes a fresh bucket
per test so tests never see each other's objects. The pytest fixture ``s3_server`` is
session-scoped: import it into a test module to use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from tests.support.ports import LOOPBACK, free_port, wait_until

__all__ = ["S3Server", "s3_server"]

# moto accepts any credentials; fixed ones keep the AWS credential chain out of the tests.
ACCESS_KEY = "syncworker-test"
SECRET_KEY = "syncworker-test-secret"
REGION = "us-east-1"
START_TIMEOUT = 30.0  # seconds; moto imports every service model on start


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    buckets: list[str] = field(default_factory=list)

    @classmethod
    def start(cls) -> S3Server:
        for _ in range(3):  # the free port may be taken before moto binds it
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
            )
            server = cls(f"http://{LOOPBACK}:{port}", process)
            if wait_until(server.answers, timeout=START_TIMEOUT, alive=server.alive):
                return server
            server.stop()
        raise RuntimeError("moto_server did not start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.endpoint}/moto-api/", timeout=1).status_code < 500
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

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
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
            "accesskey": ACCESS_KEY,
            "secretkey": SECRET_KEY,
        }

    def drop(self, bucket: str) -> None:
        """Delete a bucket's objects (moto keeps them in memory: 200 MiB tests add up)."""
        client = self.client()
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for obj in page.get("Versions", []) + page.get("DeleteMarkers", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"], VersionId=obj["VersionId"])
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()
