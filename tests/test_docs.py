"""docs/ARCHITECTURE.md stays true to the tree: every module it names exists, every package
appears in its map, and its Redis key table (like the one in coord/keys.py's docstring)
lists exactly the keys the key builder makes, so the document cannot drift unnoticed."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from syncworker.coord import keys as keys_module
from syncworker.coord.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
NAMED = re.compile(r"syncworker/[\w/]+\.py")
KEY_SECTION = "## Redis key schema"
# How the tables write a builder's parameter; any other parameter is written `{name}`.
PLACEHOLDERS = {"registry": "reg", "reference": "ref", "run_id": "id", "message_id": "message"}
CODE_SPAN = re.compile(r"`([^`]*)`")
DOCSTRING_KEY = re.compile(r"^``(\{p\}:[^`]*)``", re.MULTILINE)


def named_paths() -> set[str]:
    return set(NAMED.findall(DOC.read_text(encoding="utf-8")))


def test_every_module_named_exists() -> None:
    named = named_paths()
    assert len(named) > 50  # the map is there
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []


def test_every_package_is_in_the_map() -> None:
    packages = {p.parent.name for p in (ROOT / "syncworker").glob("*/__init__.py")}
    mapped = {path.split("/")[1] for path in named_paths() if path.count("/") == 2}
    assert sorted(packages - mapped) == []


def test_the_readme_links_the_document() -> None:
    assert "docs/ARCHITECTURE.md" in (ROOT / "README.md").read_text(encoding="utf-8")


# -- the Redis key tables ----------------------------------------------------------------


def _pattern(method: Callable[..., object]) -> object:
    """What ``method`` builds with a placeholder for each parameter."""
    names = inspect.signature(method).parameters
    return method(*("{" + PLACEHOLDERS.get(name, name) + "}" for name in names))


def built_keys() -> dict[str, str]:
    """Every key the builder makes, as the tables write it -> the method that makes it.

    A method taking another key (``flight_ok(flight_key)``) is applied to every key of the
    family its name starts with; one returning a tuple (``run_keys``) only groups others."""
    keys = Keys("{p}")
    methods = {
        name: method
        for name, method in inspect.getmembers(keys, inspect.ismethod)
        if not name.startswith("_")
    }
    built: dict[str, str] = {}
    derived: dict[str, Callable[[str], str]] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for name, method in methods.items():
        if any(p.endswith("_key") for p in inspect.signature(method).parameters):
            derived[name] = method
            continue
        key = _pattern(method)
        if isinstance(key, tuple):
            groups[name] = key
        else:
            built[str(key)] = name
    for name, method in derived.items():
        family = f"{{p}}:{name.split('_')[0]}:"
        for key in [k for k in built if k.startswith(family)]:
            built[method(key)] = f"{name}({built[key]}(...))"
    for name, group in groups.items():
        assert set(group) <= set(built), f"Keys.{name} returns keys no other method builds"
    return built


def documented_keys() -> set[str]:
    """The code spans in the first column of the key table."""
    text = DOC.read_text(encoding="utf-8")
    assert KEY_SECTION in text, f"docs/ARCHITECTURE.md has no {KEY_SECTION!r} section"
    section = text.split(KEY_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {key for row in rows for key in CODE_SPAN.findall(row.split(" | ")[0])}


def docstring_keys() -> set[str]:
    return set(DOCSTRING_KEY.findall(keys_module.__doc__ or ""))


def _compare(listed: set[str], where: str, how: str) -> list[str]:
    built = built_keys()
    problems = [
        f"Keys.{built[key]} builds {key}, which {where} does not list: add {how % key}"
        for key in sorted(set(built) - listed)
    ]
    problems += [
        f"{where} lists {key}, which no method of Keys builds: remove it, or fix its spelling "
        f"to the builder's ({', '.join(sorted(built))})"
        for key in sorted(listed - set(built))
    ]
    return problems


def test_the_key_table_writes_each_key_in_full() -> None:
    shortened = sorted(key for key in documented_keys() if not key.startswith("{p}:"))
    assert not shortened, f"write these keys in full, from {{p}}: on: {shortened}"


def test_the_builder_makes_the_keys_the_tables_spell() -> None:
    built = built_keys()
    assert "{p}:run:{id}:repos" in built and "{p}:flight:image:{reg}:{repo}:{ref}:ok" in built
    assert len(built) >= 20


@pytest.mark.parametrize(
    ("listed", "where", "how"),
    [
        (
            documented_keys,
            f"docs/ARCHITECTURE.md's {KEY_SECTION!r} table",
            "a row `| `%s` | what it holds |`",
        ),
        (
            docstring_keys,
            "the key table in syncworker/coord/keys.py's docstring",
            "a line ``%s`` with its type, owner module and TTL",
        ),
    ],
    ids=["architecture", "keys-docstring"],
)
def test_every_key_built_is_documented_and_no_other(
    listed: Callable[[], set[str]], where: str, how: str
) -> None:
    problems = _compare(listed(), where, how)
    assert not problems, "\n".join(problems)
