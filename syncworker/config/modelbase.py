"""The base of every config model and the field types they share.

zot reads its config through viper, which matches keys without regard to case
(``tlsVerify``, ``TLSVerify`` and ``tlsverify`` are one key), so our models do the same:
a key is renamed to its canonical spelling before validation, and only a key that matches
no field in any case is unknown.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator, model_validator
from pydantic.alias_generators import to_camel

from syncworker.config.durations import parse_duration
from syncworker.errors import InvalidNameError
from syncworker.filters import GoRegex as CompiledGoRegex
from syncworker.filters import compile_glob, compile_go_regex
from syncworker.oci import Platform, validate_repository

__all__ = [
    "CronSchedule",
    "GoDuration",
    "PositiveDuration",
    "GoRegex",
    "Glob",
    "PlatformField",
    "RepositoryName",
    "ConfigModel",
]


class ConfigModel(BaseModel):
    """A config section: camelCase keys matched case-insensitively, unknown keys refused,
    each field described by the docstring under it (config/reference.py reads them)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        # Values may be secrets: an error names the field, never echoes what was in it.
        hide_input_in_errors=True,
        # A field's docstring is its meaning in the configuration reference, which reads
        # it from the source (config/reference.py); pydantic is not asked to, as that reads
        # and parses the source of every model each time a command starts.
    )
    _aliases_by_lower: ClassVar[dict[str, str]]
    _null_means_default: ClassVar[frozenset[str]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields.items()
        cls._aliases_by_lower = {(f.alias or n).lower(): f.alias or n for n, f in fields}
        # YAML reads `content:` with every entry commented out as null: mean "none".
        cls._null_means_default = frozenset(
            f.alias or n
            for n, f in fields
            if f.default_factory is not None or isinstance(f.default, list | dict)
        )

    @model_validator(mode="before")
    @classmethod
    def _canonical_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out: dict[Any, Any] = {}
        for key, value in data.items():
            canonical = cls._aliases_by_lower.get(key.lower(), key) if isinstance(key, str) else key
            if canonical in out:
                raise ValueError(f"key {canonical!r} is given twice (keys match in any case)")
            if value is not None or canonical not in cls._null_means_default:
                out[canonical] = value
        return out


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return timedelta(0)
    # Go would read a bare number as nanoseconds; `pollInterval: 60` almost certainly
    # does not mean 60 ns, so ask for a unit instead.
    raise ValueError("a duration is a string with a unit, such as 90s, 1h30m or 500ms")


def _positive_duration(value: Any) -> timedelta:
    found = _duration(value)
    if found <= timedelta(0):  # 500ns too: below timedelta's microsecond it is 0
        raise ValueError("must be a positive duration")
    return found


def _regex(value: Any) -> CompiledGoRegex | None:
    if value is None or value == "":
        return None  # filters/rules.py: an empty regex keeps every tag
    if not isinstance(value, str):
        raise ValueError("a regular expression must be a string")
    try:
        return compile_go_regex(value)
    except ValueError as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None


def _glob(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a prefix must be a string")
    try:
        compile_glob(value.removeprefix("/"))
    except ValueError as exc:
        raise ValueError(f"invalid glob: {exc}") from None
    return value


def _platform(value: Any) -> Platform:
    if isinstance(value, Platform):
        return value
    if not isinstance(value, str):
        raise ValueError("a platform is a string such as linux/amd64 or linux/arm64/v8")
    return Platform.parse(value)


def _repository(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a repository name must be a string")
    try:
        return validate_repository(value)
    except InvalidNameError as exc:
        raise ValueError(str(exc)) from None


# croniter extensions that Celery's crontab (what beat runs) does not parse: last day (L),
# nearest weekday (W), nth weekday (#), "no value" (?).
_CRON_EXTENSIONS = re.compile(r"[#?]|\bLW\b|(?<![a-z])[LW]\b|\d[LW]\b", re.IGNORECASE)


def _cron(value: Any) -> str:
    # Imported here: only a config with a schedule pays for it.
    from croniter import croniter

    # Five fields, as Celery's crontab and every cron take; croniter alone would also
    # accept a sixth (seconds) field that beat cannot honour.
    if not isinstance(value, str) or len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r} (five fields: m h dom mon dow)")
    if _CRON_EXTENSIONS.search(value):
        raise ValueError(f"cron expression {value!r} uses L, W, # or ?, which beat cannot run")
    day_of_week = value.split()[4]
    if any("7" in re.split(r"[,-]", part.split("/")[0]) for part in day_of_week.split(",")):
        raise ValueError(f"cron expression {value!r}: write Sunday as 0 or sun, not 7")
    return value


GoDuration = Annotated[timedelta, PlainValidator(_duration)]
#: A wait or a lifetime: 0 would fail everything it bounds at once.
PositiveDuration = Annotated[timedelta, PlainValidator(_positive_duration)]
GoRegex = Annotated[CompiledGoRegex | None, PlainValidator(_regex)]
Glob = Annotated[str, PlainValidator(_glob)]
PlatformField = Annotated[Platform, PlainValidator(_platform)]
RepositoryName = Annotated[str, PlainValidator(_repository)]
CronSchedule = Annotated[str, BeforeValidator(_cron)]
