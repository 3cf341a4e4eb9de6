"""Byte counts written as people write them: an integer, or a number with a binary unit
(``"500KiB"``, ``"1MiB"``, ``"2GiB"``), as docker and Kubernetes spell them."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import PlainValidator

__all__ = ["ByteSize", "parse_bytes"]

_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_bytes(value: object) -> int:
    """A positive whole number of bytes; ``ValueError`` naming what is wrong otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a number of bytes, or a string such as '500KiB' or '1MiB'")
    if isinstance(value, int):
        count = value
    else:
        found = _SIZE.fullmatch(value)
        if found is None or found.group(2) not in _UNITS:
            units = ", ".join(u for u in _UNITS if u)
            raise ValueError(f"{value!r} is not a size: a number and one of {units}")
        count = int(Decimal(found.group(1)) * _UNITS[found.group(2)])
    if count <= 0:
        raise ValueError("must be more than 0 bytes")
    return count


#: A config field holding a byte count (see :func:`parse_bytes`).
ByteSize = Annotated[int, PlainValidator(parse_bytes)]
