"""Pure OCI values: digests, verifying reader, names, references, platforms, manifests."""

from __future__ import annotations

import hashlib
import json

import pytest

from syncworker.errors import (
    ContentError,
    DigestMismatchError,
    InvalidNameError,
    SizeLimitError,
    UnsupportedDigestError,
)
from syncworker.oci import (
    MAX_MANIFEST_BYTES,
    Digest,
    Platform,
    Reference,
    VerifyingReader,
    parse_manifest,
    validate_repository,
    validate_tag,
)
from syncworker.oci.mediatypes import DOCKER_FOREIGN_LAYER, OCI_INDEX, OCI_MANIFEST

HELLO = Digest.of(b"hello")


def test_digest_round_trip() -> None:
    text = "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert str(Digest.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("md5:" + "a" * 32, UnsupportedDigestError),
        ("sha256:" + "a" * 63, ContentError),
        ("sha256:" + "A" * 64, ContentError),
        ("sha256:../../etc/passwd", ContentError),
        ("nocolon", ContentError),
    ],
)
def test_bad_digests_refused(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        Digest.parse(text)


def test_verifying_reader_passes_good_content() -> None:
    assert b"".join(VerifyingReader([b"hel", b"lo"], HELLO, 5)) == b"hello"


def test_verifying_reader_withholds_last_chunk_on_mismatch() -> None:
    out: list[bytes] = []
    with pytest.raises(DigestMismatchError):
        for chunk in VerifyingReader([b"hel", b"LO"], HELLO, 5):
            out.append(chunk)
    assert out == [b"hel"]  # the consumer never saw the whole (bad) blob


@pytest.mark.parametrize("chunks", [[b"hello", b"!"], [b"hell"]])
def test_verifying_reader_checks_declared_size(chunks: list[bytes]) -> None:
    with pytest.raises(SizeLimitError):
        list(VerifyingReader(chunks, HELLO, 5))


@pytest.mark.parametrize("name", ["library/alpine", "a", "team/sub-1/app_x", "a.b/c__d"])
def test_valid_repository_names(name: str) -> None:
    assert validate_repository(name) == name


@pytest.mark.parametrize(
    "name", ["../etc", "a/../b", "/abs", "a//b", "Upper", "a/", "", "a/.", "x" * 300, "a/b\n"]
)
def test_invalid_repository_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_repository(name)


@pytest.mark.parametrize("tag", ["..", ".hidden", "-x", "a" * 129, "a/b", "", "v1\n", "v1\nv2"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_tag(tag)


def test_a_digest_is_validated_as_a_whole_string() -> None:
    with pytest.raises(ContentError):
        Digest.parse(f"{HELLO}\n")


def test_references() -> None:
    assert Reference.parse("127.0.0.1/x") == Reference("127.0.0.1/x", "latest")
    assert Reference.parse("a/b:1.0").tag == "1.0"
    ref = Reference.parse(f"a@{HELLO}")
    assert (ref.digest, ref.ref) == (HELLO, str(HELLO))


def test_platform_matching() -> None:
    want = Platform.parse("linux/arm64")
    assert want.matches(Platform("linux", "arm64", "v8"))
    assert not Platform.parse("linux/arm64/v7").matches(Platform("linux", "arm64", "v8"))
    assert not want.matches(Platform("linux", "amd64"))
    with pytest.raises(ValueError):
        Platform.parse("linux")


def _manifest(**extra: object) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": str(HELLO),
            "size": 5,
        },
        "layers": [
            {
                "mediaType": DOCKER_FOREIGN_LAYER,
                "digest": str(HELLO),
                "size": 5,
                "urls": ["https://example.invalid/x"],
            }
        ],
    }
    body.update(extra)
    return json.dumps(body).encode()


def test_parse_manifest_blobs_and_foreign_layers() -> None:
    manifest = parse_manifest(_manifest(), None)
    assert [b.is_distributable for b in manifest.blobs] == [True, False]
    assert not manifest.is_index


def test_parse_index_children_with_platform() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": str(HELLO),
                    "size": 5,
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    index = parse_manifest(raw, OCI_INDEX)
    assert index.is_index and index.children[0].platform == Platform("linux", "amd64")


def test_parse_manifest_refuses_wrong_digest_and_oversize() -> None:
    with pytest.raises(DigestMismatchError):
        parse_manifest(_manifest(), None, HELLO)
    with pytest.raises(SizeLimitError):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1), None)


@pytest.mark.parametrize(
    "raw", [b"[]", b"not json", b'{"schemaVersion": 1}', b'{"schemaVersion": 2, "layers": {}}']
)
def test_parse_manifest_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(ContentError):
        parse_manifest(raw, None)
