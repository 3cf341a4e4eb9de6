"""The configuration reference: one row per key of the config model (its key path, type,
default and meaning, the meaning being the docstring under the field), written into
docs/CONFIG.md between markers so the document cannot drift from the model.

``python -m syncworker.config.reference`` prints the table;
``python -m syncworker.config.reference docs/CONFIG.md`` rewrites it in place.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
import types
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from syncworker.config.model import Config
from syncworker.config.modelbase import (
    CronSchedule,
    Glob,
    GoDuration,
    GoRegex,
    PlatformField,
    PositiveDuration,
    RepositoryName,
)
from syncworker.config.sizes import ByteSize

__all__ = ["BEGIN", "END", "Row", "markdown_table", "replace_table", "rows"]

BEGIN = "<!-- config:begin -->"
END = "<!-- config:end -->"

# The field types that validate a string their own way, by the name a reader knows them by.
_NAMED: tuple[tuple[Any, str], ...] = (
    (GoDuration, "duration"),
    (PositiveDuration, "duration > 0"),
    (GoRegex, "RE2 regex"),
    (Glob, "glob"),
    (PlatformField, "platform"),
    (RepositoryName, "repository"),
    (CronSchedule, "cron"),
    (ByteSize, "size"),
)
_PLAIN = {
    bool: "bool",
    int: "integer",
    float: "number",
    str: "string",
    SecretStr: "string",
    Any: "any",
}
_DURATION_UNITS = (("h", 3600), ("m", 60), ("s", 1))


class Row:
    """One key of the reference."""

    def __init__(self, key: str, kind: str, default: str, meaning: str) -> None:
        self.key, self.kind, self.default, self.meaning = key, kind, default, meaning

    def markdown(self) -> str:
        return f"| `{self.key}` | {self.kind} | {self.default} | {self.meaning} |"


def rows(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[Row]:
    """Every key of ``model``, depth first, each section followed by its keys."""
    described = _docstrings(model)
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        description = field.description or described.get(name)
        if description is None:
            raise ValueError(f"{model.__name__}.{name} ({key}) has no docstring to describe it")
        meaning = " ".join(description.split()).replace("``", "`")
        tp = _unwrap_optional(field.annotation)
        many = get_origin(tp) is list
        section = _section(get_args(tp)[0] if many else tp)
        if section is None:
            yield Row(key, _kind(_annotated(field)), _default(field), meaning)
            continue
        yield Row(key, "list of sections" if many else "section", _default(field), meaning)
        yield from rows(section, key + ("[]." if many else "."))


def markdown_table() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    return "\n".join(lines + [row.markdown() for row in rows()])


def replace_table(text: str) -> str:
    """``text`` with what lies between the markers replaced by the current table."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text) is None:
        raise ValueError(f"no {BEGIN} ... {END} block to replace")
    return pattern.sub(lambda _: f"{BEGIN}\n{markdown_table()}\n{END}", text, count=1)


def _docstrings(model: type[BaseModel]) -> dict[str, str | None]:
    """The docstring under each field of ``model`` and of the models it inherits (None for a
    field declared without one, a redeclared field's own), read from their source here: the
    models are built without them, since loading a config needs none, and pydantic reading
    every model's source cost each command about a tenth of its start-up."""
    found: dict[str, str | None] = {}
    for cls in reversed(model.__mro__):
        if cls is not BaseModel and issubclass(cls, BaseModel):
            found.update(_own_docstrings(cls))
    return found


def _own_docstrings(cls: type) -> dict[str, str | None]:
    """Each field annotated in ``cls``'s body to the string that follows it, if one does."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}  # no source to read: its fields read as undescribed, an error naming them
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef)).body
    found: dict[str, str | None] = {}
    for statement, following in zip(body, [*body[1:], None], strict=True):
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            docstring = (
                following.value.value
                if isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
                else None
            )
            found[statement.target.id] = None if docstring is None else inspect.cleandoc(docstring)
    return found


def _section(tp: Any) -> type[BaseModel] | None:
    """``tp`` if it is a section of keys (a model), else None."""
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [arg for arg in get_args(tp) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _annotated(field: FieldInfo) -> Any:
    """The field's type with its metadata (validators, bounds) as written."""
    if not field.metadata:
        return field.annotation
    return Annotated[(field.annotation, *field.metadata)]


def _kind(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        metadata = tp.__metadata__
        for alias, name in _NAMED:
            if any(m in metadata for m in alias.__metadata__):
                return name
        return _kind(args[0]) + _bounds(metadata)
    if origin in (Union, types.UnionType):
        return " or ".join(_kind(arg) for arg in args if arg is not type(None))
    if origin is list:
        return f"list of {_kind(args[0])}"
    if origin is dict or tp is dict:
        return "mapping"
    if origin is Literal:
        return " or ".join(f"`{value}`" for value in args)
    if tp not in _PLAIN:
        raise ValueError(f"no name for the type {tp!r}: add it to _NAMED or _PLAIN")
    return _PLAIN[tp]


def _bounds(metadata: Sequence[object]) -> str:
    low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, Le)), None)
    if low is not None and high is not None:
        return f" {low}–{high}"
    return f" ≥ {low}" if low is not None else ""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "" if isinstance(value, BaseModel) else _value(value)
    if field.default is PydanticUndefined:
        return "required"
    return _value(field.default)


def _value(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, timedelta):
        return f"`{_duration(value)}`"
    if isinstance(value, str | int | float):
        return f'`"{value}"`' if value == "" else f"`{value}`"
    return f"`{value}`"  # [] or {}


def _duration(value: timedelta) -> str:
    """As Go writes it, without its zero parts: ``30s``, ``20m``, ``1h30m``."""
    seconds, parts = int(value.total_seconds()), []
    for unit, size in _DURATION_UNITS:
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(markdown_table())
        return 0
    for name in argv:
        path = Path(name)
        path.write_text(replace_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
