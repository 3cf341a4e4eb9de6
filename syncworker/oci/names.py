"""Repository names, tags and references, validated by the distribution spec's grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass

from syncworker.errors import InvalidNameError
from syncworker.oci.digest import Digest

__all__ = ["Reference", "docker_hub_repository", "validate_repository", "validate_tag"]

# distribution-spec spec.md#pulling-manifests: <name> and <reference> grammars.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Not in the grammar, but a conservative cap keeps paths and Redis keys bounded.
MAX_REPOSITORY_LENGTH = 255


def validate_repository(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise :class:`InvalidNameError`.

    The grammar already forbids ``..``, absolute paths and empty segments; this is what
    keeps a hostile catalog from writing outside the store.
    """
    if len(name) > MAX_REPOSITORY_LENGTH or not _REPOSITORY.fullmatch(name):
        raise InvalidNameError(f"invalid repository name {name[:300]!r}")
    return name


def docker_hub_repository(name: str) -> str:
    """Docker Hub's name for repository ``name``: a single name is an official image under
    ``library/``, as docker spells ``alpine`` (Docker Hub answers nothing for ``alpine``)."""
    return name if "/" in name else f"library/{name}"


def validate_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise InvalidNameError(f"invalid tag {tag[:200]!r}")
    return tag


@dataclass(frozen=True, slots=True)
class Reference:
    """``repo:tag`` or ``repo@digest`` (a tag defaults to ``latest``)."""

    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        repo, at, digest_text = text.partition("@")
        if at:
            return cls(validate_repository(repo), None, Digest.parse(digest_text))
        slash = repo.rfind("/")
        colon = repo.rfind(":")
        if colon > slash:
            return cls(validate_repository(repo[:colon]), validate_tag(repo[colon + 1 :]))
        return cls(validate_repository(repo), "latest")

    @classmethod
    def of(cls, repository: str, reference: str) -> Reference:
        """``repository`` with ``reference``, a tag or an ``alg:hex`` digest (a digest is
        the only reference with a colon)."""
        sep = "@" if ":" in reference else ":"
        return cls.parse(f"{repository}{sep}{reference}")

    @property
    def ref(self) -> str:
        """The path component for ``/v2/<name>/manifests/<ref>``."""
        return str(self.digest) if self.digest is not None else str(self.tag)

    def __str__(self) -> str:
        if self.digest is not None:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"
