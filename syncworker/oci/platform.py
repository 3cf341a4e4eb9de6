"""Platforms (``os/arch[/variant]``) as found in index entries and asked for in config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncworker.oci.document import optional_str

__all__ = ["Platform"]


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``linux/arm64/v8``; raise ``ValueError`` on anything else."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform {text!r} is not os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Platform:
        """An index entry's ``platform``; a field of the wrong type is refused."""
        what = "platform"
        return cls(
            optional_str(value, "os", what) or "",
            optional_str(value, "architecture", what) or "",
            optional_str(value, "variant", what) or None,
        )

    def matches(self, other: Platform) -> bool:
        """Whether ``other`` (an image's platform) satisfies this wanted platform.

        A wanted platform with no variant matches every variant of its architecture.
        """
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return self.variant is None or self.variant == other.variant

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base
