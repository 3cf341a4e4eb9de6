"""A client that also pushes: the facade of :mod:`.push` over a :class:`RegistryClient`."""

from __future__ import annotations

from collections.abc import Iterable

from syncworker.oci import Digest
from syncworker.registry import push
from syncworker.registry.client import RegistryClient

__all__ = ["PushClient"]


class PushClient(RegistryClient):
    """A registry read and written through: the same HTTP stack (auth, retries, TLS) for
    both. Thread-safe, as :class:`RegistryClient` is."""

    def head_blob(self, repo: str, digest: Digest) -> int | None:
        """The size of ``repo``'s blob ``digest`` (-1 if not said), or None if absent."""
        return push.head_blob(self._t, repo, digest)

    def mount_blob(self, repo: str, digest: Digest, source: str) -> bool:
        return push.mount_blob(self._t, repo, digest, source)

    def upload_blob(
        self, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]
    ) -> int:
        return push.upload_blob(self._t, repo, digest, size, chunks)

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> bool:
        """Push ``raw`` as ``ref``; True if the registry said it indexed the manifest's
        subject for its referrers API (the ``OCI-Subject`` header)."""
        reply = push.put_manifest(self._t, repo, ref, raw, media_type)
        return push.SUBJECT_HEADER in reply.headers
