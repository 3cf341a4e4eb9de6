"""Reading a config file: parse, validate, and turn every problem into one ConfigError.

This is the one place pydantic's errors are translated: each becomes ``(path, message)``
with the path written as the file's keys, e.g.
``extensions.sync.registries[0].content[1].tags.regex``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from syncworker.config.credentials import parse_credentials_file
from syncworker.config.destination import destination_problems
from syncworker.config.model import REDIS_URL_ENV, Config
from syncworker.config.overlaps import overlap_problems
from syncworker.errors import ConfigError

__all__ = ["REDIS_URL_ENV", "format_path", "load_config", "validate"]

_CREDENTIALS_PATH = "extensions.sync.credentialsFile"

Problem = tuple[str, str]


def load_config(path: str | Path) -> Config:
    """Load a YAML or JSON config; :class:`ConfigError` lists every bad field at once."""
    path = Path(path)
    data = _read(path)
    redis_url = os.environ.get(REDIS_URL_ENV)
    if redis_url and isinstance(data, dict):
        section = data.get("syncworker") or {}
        if isinstance(section, dict):
            section = {k: v for k, v in section.items() if str(k).lower() != "redis"}
            data["syncworker"] = {**section, "redis": redis_url}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(_problem(err) for err in exc.errors()) from None
    problems = _duplicate_names(config)
    problems += _load_credentials(config, path.parent)
    problems += destination_problems(config.syncworker.destination, config.registries)
    problems += overlap_problems(config)
    if problems:
        raise _config_error(problems)
    return config


def validate(path: str | Path) -> list[str]:
    """Every problem of the config at ``path`` as ``path: message`` lines; empty if fine."""
    try:
        load_config(path)
    except ConfigError as exc:
        return [f"{p}: {m}" if p else m for p, m in exc.errors]
    return []


def format_path(loc: Iterable[int | str]) -> str:
    """pydantic's ``loc`` as the file's own keys: ``a.b[0].c``, odd keys as ``["/x"]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "a").isalnum():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _read(path: Path) -> Any:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read {path}: {exc}") from None
    try:
        # YAML also reads JSON, but json gives better messages for a .json file.
        data = json.loads(text) if _kind(path) == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError("", f"{path} is not valid {_kind(path)}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: the top level must be a mapping of sections")
    return data


def _kind(path: Path) -> str:
    return "JSON" if path.suffix.lower() == ".json" else "YAML"


def _problem(err: ErrorDetails) -> Problem:
    where = format_path(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return where, "unknown key"
    if kind == "missing":
        return where, "required key is missing"
    if kind in ("value_error", "assertion_error") and "error" in err.get("ctx", {}):
        return where, str(err["ctx"]["error"])
    return where, err["msg"]


def _duplicate_names(config: Config) -> list[Problem]:
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    for i, reg in enumerate(config.registries):
        if reg.name in seen:
            where = f"extensions.sync.registries[{i}].name"
            first = f"registries[{seen[reg.name]}]"
            problems.append((where, f"duplicate registry name {reg.name!r} (as {first})"))
        seen.setdefault(reg.name, i)
    return problems


def _load_credentials(config: Config, config_dir: Path) -> list[Problem]:
    name = config.sync.credentials_file
    if not name:
        return []
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.exists():
        path = config_dir / path  # zot reads it from its working directory; we try both
    try:
        found = parse_credentials_file(json.loads(path.read_text("utf-8")))
    except OSError as exc:
        return [(_CREDENTIALS_PATH, f"cannot read {path}: {exc.strerror or exc}")]
    except ValueError as exc:  # JSON syntax, or the shape of an entry (never its values)
        return [(_CREDENTIALS_PATH, f"{path}: {exc}")]
    config._file_credentials = found
    return []


def _config_error(problems: Iterable[Problem]) -> ConfigError:
    found = list(problems)
    return ConfigError(found[0][0], found[0][1], errors=found)
