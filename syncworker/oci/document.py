"""Reading JSON from an upstream: any malformation becomes a named error, never a crash.

``json.loads`` raises ``RecursionError`` on deeply nested input and ``ValueError`` on
bad text; and a document that parses may still hold a ``true`` where a size belongs
(``bool`` is an ``int`` in Python), an object where a string belongs, a string where a
map belongs. These helpers check each value's type as it is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from syncworker.errors import MalformedResponseError

__all__ = ["load_json", "optional_str", "size_field", "str_list", "str_map"]


def load_json(raw: bytes, what: str) -> Any:
    """Parse ``raw``; :class:`MalformedResponseError` naming ``what`` on any failure."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise MalformedResponseError(f"{what}: JSON nested too deep") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise MalformedResponseError(f"{what} is not valid JSON: {str(exc)[:100]}") from None


def optional_str(doc: Mapping[str, Any], key: str, what: str) -> str | None:
    """``doc[key]`` if it is a string, None if absent or null."""
    value = doc.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedResponseError(f"{what}: {key!r} is not a string")


def size_field(doc: Mapping[str, Any], key: str, what: str) -> int:
    """A required non-negative integer (``true`` and ``1.0`` are not sizes)."""
    value = doc.get(key)
    if type(value) is not int or value < 0:
        raise MalformedResponseError(f"{what}: {key!r} is not a non-negative integer")
    return value


def str_map(doc: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    """An optional object of string values (annotations)."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise MalformedResponseError(f"{what}: {key!r} is not a map of strings")
    return dict(value)


def str_list(doc: Mapping[str, Any], key: str, what: str) -> list[str]:
    """An optional list of strings (``null`` counts as empty, as registries send it)."""
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedResponseError(f"{what}: {key!r} is not a list of strings")
    return value
