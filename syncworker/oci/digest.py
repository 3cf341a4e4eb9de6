"""Content digests (image-spec descriptor.md#digests) and a reader that verifies as it streams."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from syncworker.errors import (
    ContentError,
    DigestMismatchError,
    SizeLimitError,
    UnsupportedDigestError,
)

__all__ = ["Digest", "VerifyingReader", "verifying"]

# Registered algorithms and the exact length of their hex encoding.
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_GRAMMAR = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated ``algorithm:hex`` digest of a registered algorithm."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        match = _GRAMMAR.fullmatch(text)
        if match is None:
            raise ContentError(f"malformed digest {text[:100]!r}")
        algorithm, encoded = match.groups()
        length = _HEX_LENGTHS.get(algorithm)
        if length is None:
            raise UnsupportedDigestError(f"unsupported digest algorithm {algorithm!r} in {text}")
        if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
            raise ContentError(f"malformed {algorithm} digest {text[:140]!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def verify(self, data: bytes) -> None:
        """Raise :class:`DigestMismatchError` unless ``data`` hashes to this digest."""
        actual = hashlib.new(self.algorithm, data).hexdigest()
        if actual != self.hex:
            raise DigestMismatchError(
                f"digest mismatch: expected {self}, got {self.algorithm}:{actual}"
            )

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class VerifyingReader:
    """Iterate over chunks while hashing and counting them; fail at the end on any mismatch.

    The error is raised *before* the last chunk is handed out, so a consumer that writes
    chunks to a temporary file and publishes it only after the loop ends never publishes
    bad content. Nothing is buffered beyond one chunk.
    """

    def __init__(self, chunks: Iterable[bytes], digest: Digest, size: int | None) -> None:
        self._chunks = chunks
        self._digest = digest
        self._size = size
        self.bytes_read = 0

    @property
    def digest(self) -> Digest:
        """The digest the chunks must hash to."""
        return self._digest

    @property
    def size(self) -> int | None:
        """The exact length the chunks must have, when declared."""
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        hasher = self._digest.hasher()
        pending: bytes | None = None
        for chunk in self._chunks:
            if not chunk:
                continue
            self.bytes_read += len(chunk)
            if self._size is not None and self.bytes_read > self._size:
                raise SizeLimitError(f"{self._digest}: more than the declared {self._size} bytes")
            hasher.update(chunk)
            if pending is not None:
                yield pending
            pending = chunk
        if self._size is not None and self.bytes_read != self._size:
            raise SizeLimitError(
                f"{self._digest}: got {self.bytes_read} bytes, declared {self._size}"
            )
        if hasher.hexdigest() != self._digest.hex:
            raise DigestMismatchError(
                f"digest mismatch: expected {self._digest},"
                f" got {self._digest.algorithm}:{hasher.hexdigest()}"
            )
        if pending is not None:
            yield pending


def verifying(chunks: Iterable[bytes], digest: Digest, size: int | None) -> VerifyingReader:
    """``chunks`` as a reader that verifies ``digest`` and ``size``: itself when it already
    is one (the registry client's blob reader), since hashing twice doubles the CPU."""
    if (
        isinstance(chunks, VerifyingReader)
        and chunks.digest == digest
        and (size is None or chunks.size == size)
    ):
        return chunks
    return VerifyingReader(chunks, digest, size)
