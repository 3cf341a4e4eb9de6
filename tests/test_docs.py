"""docs/ARCHITECTURE.md stays true to the tree: every module it names exists, every package
appears in its map, and its Redis key table (like the one in coord/keys.py's docstring)
lists exactly the keys the key builder makes, so the document cannot drift unnoticed."""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from syncworker.cli import build_parser
from syncworker.coord import keys as keys_module
from syncworker.coord.keys import Keys
from syncworker.coord.runstate import COUNTERS

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


# -- every document: links, paths, commands ---------------------------------------------

DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)
# A path in the repository, as the documents write them in code spans.
PATH = re.compile(
    r"^(?:\.ci|bench|deploy|docs|examples|scripts|syncworker|tests)/[\w./*-]+$"
    r"|^(?:docker-compose\.yml|Dockerfile|pyproject\.toml)$"
)
# What the bench and the demos write when they run: not in the repository.
GENERATED = ("bench/out/", "bench/workers.png")
COMMAND = re.compile(r"^syncworker ([a-z]+)\b(.*)$")
# Their extra options go to Celery's own command line.
PASSES_OPTIONS_ON = {"worker", "inspect"}


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in HEADING.findall(_prose(path.read_text(encoding="utf-8")))}


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_relative_link_resolves() -> None:
    broken = []
    for doc in DOCUMENTS:
        for target in LINK.findall(_prose(doc.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z]+:", target):
                continue  # https://..., mailto:
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                broken.append(f"{_name(doc)}: {target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{_name(doc)}: {target}: no heading #{anchor} in {_name(path)}")
    assert not broken, "\n".join(broken)


def _code(text: str) -> list[str]:
    """The code spans of ``text``'s prose, and each line of its fenced blocks."""
    spans = CODE_SPAN.findall(_prose(text))
    blocks = [line for block in FENCE.findall(text) for line in block.splitlines()[1:-1]]
    return [code.strip() for code in spans + blocks]


def test_every_path_named_exists() -> None:
    named = {
        (_name(doc), code)
        for doc in DOCUMENTS
        for code in _code(doc.read_text(encoding="utf-8"))
        if PATH.match(code) and not code.startswith(GENERATED)
    }
    assert len(named) > 40
    missing = sorted(f"{doc}: {path}" for doc, path in named if not list(ROOT.glob(path)))
    assert not missing, "\n".join(missing)


def _options(command: str) -> set[str]:
    parser = build_parser([command])
    [sub] = [a for a in parser._actions if a.dest == "command"]
    chosen = sub.choices[command]  # type: ignore[index]
    return {option for action in chosen._actions for option in action.option_strings}


def test_every_command_named_exists() -> None:
    """Each ``syncworker COMMAND --option`` the documents show is one the CLI takes."""
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    commands = set(sub.choices)  # type: ignore[arg-type]
    wrong, seen = [], set()
    for doc in DOCUMENTS:
        for code in _code(doc.read_text(encoding="utf-8")):
            found = COMMAND.match(code)
            if found is None:
                continue
            command, rest = found.group(1), found.group(2).split(" #", 1)[0]
            seen.add(command)
            if command not in commands:
                wrong.append(f"{_name(doc)}: {code}: no command {command!r}")
                continue
            if command in PASSES_OPTIONS_ON:
                continue
            given = {t.strip("[]").split("=")[0] for t in rest.split() if t.startswith(("-", "[-"))}
            unknown = sorted(given - _options(command))
            if unknown:
                wrong.append(f"{_name(doc)}: {code}: {command} takes no {', '.join(unknown)}")
    assert not wrong, "\n".join(wrong)
    assert seen == commands, f"commands no document shows: {sorted(commands - seen)}"


def _section(text: str, heading: str) -> str:
    return text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]


def test_the_first_screen_has_both_quick_starts() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines.index("## Quick start") < 15
    assert lines.index("### Cluster quick start") < 50


def test_the_readme_gives_the_test_command_ci_runs() -> None:
    """.ci/run runs the first command of the README's "Running the tests", and the markers
    that section selects are ones pytest declares."""
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), "## Running the tests")
    commands = [line.split(" #", 1)[0].strip() for line in FENCE.findall(section)[0].splitlines()]
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci == [f"bash {commands[1]}"]
    with (ROOT / "pyproject.toml").open("rb") as file:
        declared = tomllib.load(file)["tool"]["pytest"]["ini_options"]["markers"]
    markers = {marker.split(":")[0] for marker in declared}
    selected = {c.split("-m ", 1)[1].split()[0] for c in commands if " -m " in c}
    assert selected and selected <= markers


def test_the_cluster_quick_start_names_what_compose_runs() -> None:
    """Each `docker compose run` service and each localhost port of the cluster quick start
    is one docker-compose.yml has, and the environment variable it asks for is the one the
    api service reads."""
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), "### Cluster quick start")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    run = re.findall(r"docker compose run --rm (\w+)", section)
    assert run and set(run) <= set(services)
    published = {
        int(port.split(":")[0])
        for service in services.values()
        for port in service.get("ports", [])
    }
    named = {int(port) for port in re.findall(r"localhost:(\d+)", section)}
    assert named and named <= published
    api_env = services["api"]["environment"]
    assert all(name in api_env for name in re.findall(r"\b(SYNCWORKER_\w+)=", section))


def test_every_counter_of_a_run_is_named_in_observability() -> None:
    text = (ROOT / "docs" / "OBSERVABILITY.md").read_text(encoding="utf-8")
    assert [name for name in COUNTERS if f"| `{name}` |" not in text] == []
