"""The documents' claims, checked against the code: docs/ARCHITECTURE.md's "only here"s (key
names are built only in coord/keys.py, Lua only in coord/lua/, each library's exceptions are
caught only in the modules its table names, `sync` without Redis never imports redis-py),
and the README's one-process quick start, run as written against a real registry."""

from __future__ import annotations

import ast
import functools
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path

import redis

from tests.support.corpus import Corpus
from tests.support.images import make_image, make_index
from tests.support.mirror import layout_tags, write_sync_config
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "syncworker"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
KEYS_MODULE = "syncworker/coord/keys.py"
SCRIPTS_MODULE = "syncworker/coord/scripts.py"
EXCEPTIONS_SECTION = "## Where third-party exceptions are translated"
DEFAULT_PREFIX = "syncworker:"
# A key under the default prefix (not a message that starts "syncworker: ...").
PREFIXED_KEY = re.compile(r"^syncworker:\w")
# A module, or modules by a glob (syncworker/store/s3*.py).
NAMED = re.compile(r"syncworker/[\w/*]+\.py")
CODE_SPAN = re.compile(r"`([^`]*)`")


@functools.cache
def modules() -> tuple[tuple[str, ast.Module], ...]:
    """Every module of the package, parsed: (path from the repository root, tree)."""
    return tuple(
        (str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(PACKAGE.rglob("*.py"))
    )


def found_outside(allowed: str, matches: Callable[[ast.AST], bool]) -> list[str]:
    """Where a module other than ``allowed`` has a node that ``matches``: path, line and
    the start of its source."""
    return [
        f"{path}:{node.lineno}: {ast.unparse(node)[:80]}"
        for path, tree in modules()
        if path != allowed
        for node in ast.walk(tree)
        if matches(node)
    ]


def _is_prefix(node: ast.AST) -> bool:
    """A reference to a key prefix: ``prefix`` or ``something.prefix``."""
    return (isinstance(node, ast.Name) and node.id == "prefix") or (
        isinstance(node, ast.Attribute) and node.attr == "prefix"
    )


def _builds_key(node: ast.AST) -> bool:
    """A string that starts with the default prefix, or a prefix joined to ``:...``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return PREFIXED_KEY.match(node.value) is not None
    if isinstance(node, ast.JoinedStr):
        parts = node.values
        return any(
            isinstance(a, ast.FormattedValue)
            and _is_prefix(a.value)
            and isinstance(b, ast.Constant)
            and str(b.value).startswith(":")
            for a, b in zip(parts, parts[1:], strict=False)
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        right = node.right
        return _is_prefix(node.left) and (
            isinstance(right, ast.JoinedStr) or str(getattr(right, "value", "")).startswith(":")
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "join" and any(_is_prefix(n) for n in ast.walk(node))
    return False


def test_key_names_are_built_only_in_the_key_builder() -> None:
    found = found_outside(KEYS_MODULE, _builds_key)
    assert not found, (
        "Redis key names built outside syncworker/coord/keys.py: add a method to Keys (and a "
        "row to the key tables) and call it instead:\n" + "\n".join(found)
    )


def _runs_lua(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return "redis.call(" in node.value
    return isinstance(node, ast.Attribute) and node.attr in {"register_script", "eval", "evalsha"}


def test_lua_lives_only_in_coord_lua() -> None:
    found = found_outside(SCRIPTS_MODULE, _runs_lua)
    assert not found, (
        "Lua outside syncworker/coord/lua/: put the script in coord/lua/NAME.lua and call "
        "coord.scripts.register(client, NAME):\n" + "\n".join(found)
    )


# -- third-party exceptions ---------------------------------------------------------------


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it was imported as (absolute imports only)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                names[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in names:
        return None
    return ".".join([names[node.id], *reversed(attrs)])


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            found = getattr(found, attr, None)
        return found
    return None


def _third_party_exception(dotted: str) -> bool:
    library = dotted.split(".")[0]
    if library in sys.stdlib_module_names or library == "syncworker":
        return False
    found = _resolve(dotted)
    return (
        isinstance(found, type)
        and issubclass(found, BaseException)
        and not issubclass(found, Warning)
    )


def exceptions_referred() -> dict[str, set[str]]:
    """Library -> the modules of ours that name one of its exceptions."""
    referred: dict[str, set[str]] = {}
    for path, tree in modules():
        names = _imported_names(tree)
        for node in ast.walk(tree):
            dotted = _dotted(node, names) if isinstance(node, ast.Name | ast.Attribute) else None
            if dotted and _third_party_exception(dotted):
                referred.setdefault(dotted.split(".")[0], set()).add(path)
    return referred


def exceptions_documented() -> dict[str, set[str]]:
    text = DOC.read_text(encoding="utf-8")
    assert EXCEPTIONS_SECTION in text, f"docs/ARCHITECTURE.md has no {EXCEPTIONS_SECTION!r}"
    section = text.split(EXCEPTIONS_SECTION, 1)[1].split("\n## ", 1)[0]
    documented: dict[str, set[str]] = {}
    for row in section.splitlines():
        if row.startswith("| `"):
            libraries, places = row.strip("| ").split(" | ", 1)
            for library in CODE_SPAN.findall(libraries):
                documented[library] = set(NAMED.findall(places))
    return documented


def test_each_librarys_exceptions_are_caught_only_where_the_document_says() -> None:
    referred, documented = exceptions_referred(), exceptions_documented()
    assert {"redis", "botocore", "urllib3"} <= set(referred)  # the scan sees them
    problems = []
    for library in sorted(set(referred) | set(documented)):
        modules, places = referred.get(library, set()), documented.get(library, set())
        unnamed = sorted(m for m in modules if not any(fnmatch(m, p) for p in places))
        unused = sorted(p for p in places if not any(fnmatch(m, p) for m in modules))
        if unnamed or unused:
            problems.append(
                f"{library}: {unnamed or unused} {'name' if unnamed else 'names none of'} its "
                f"exceptions, but docs/ARCHITECTURE.md's {EXCEPTIONS_SECTION!r} table says "
                f"{sorted(places)}: translate them in the modules named there, or correct "
                "that row"
            )
    assert not problems, "\n".join(problems)


# -- sync with and without Redis ----------------------------------------------------------

_SYNC_THEN_REPORT = """
import sys
from syncworker.cli import main
code = main(["sync", "-q", "-c", sys.argv[1]])
print("redis imported:", "redis" in sys.modules)
sys.exit(code)
"""


def _sync(config: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _SYNC_THEN_REPORT, str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sync_uses_redis_only_when_configured(
    seeded_registry: tuple[RegistryServer, Corpus], private_redis: RedisServer, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    registries = [{"urls": [server.url], "repos": [corpus.repositories[0]]}]
    alone = write_sync_config(tmp_path, tmp_path / "alone", registries)
    assert "redis imported: False" in _sync(alone)
    (tmp_path / "shared").mkdir()
    shared = write_sync_config(
        tmp_path / "shared", tmp_path / "store", registries, settings={"redis": private_redis.url}
    )
    assert "redis imported: True" in _sync(shared)
    left = redis.Redis.from_url(private_redis.url).keys(f"{DEFAULT_PREFIX}*")
    assert left, "the single-flights' markers of the copy it coordinated through Redis"


# -- the README's quick start, run as written --------------------------------------------

_CLI = "import sys; from syncworker.cli import main; sys.exit(main(sys.argv[1:]))"
QUICK_START_URL = "http://127.0.0.1:5000"


def _quick_start() -> tuple[str, list[list[str]]]:
    """The one-process quick start's config and its command lines, comments dropped."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("### Cluster quick start", 1)[0]
    config = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shell = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line.split(" #", 1)[0].split() for line in shell.splitlines()]
    return config, [line for line in lines if line and line[:2] != ["pip", "install"]]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if command[0] == "syncworker":
        command = [sys.executable, "-c", _CLI, *command[1:]]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_quick_start_works_as_written(
    make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """Against a fresh registry standing in for 127.0.0.1:5000: the config is valid, the
    first sync copies the tags its rule takes and no other, the second copies nothing, and
    skopeo reads the mirrored image at the upstream's digest."""
    config, commands = _quick_start()
    assert QUICK_START_URL in config
    server = make_registry()
    pushed = {
        ("library/alpine", "3.20"): make_index("quick-start-alpine"),
        ("library/alpine", "3.21"): make_image("quick-start-alpine-3.21"),
        ("library/alpine", "edge"): make_image("quick-start-edge"),  # not a version: left
        ("library/busybox", "1.36"): make_image("quick-start-busybox", fmt="docker"),
        ("team/app", "1.0"): make_image("quick-start-app"),  # outside library/**: left
    }
    for (repo, tag), image in pushed.items():
        push_image(server.url, repo, tag, image)
    (tmp_path / "mirror.yaml").write_text(config.replace(QUICK_START_URL, server.url))
    verbs = [" ".join(command[:2]) for command in commands]
    assert verbs == ["syncworker validate", "syncworker sync", "syncworker sync", "skopeo inspect"]
    runs = [_run(command, tmp_path) for command in commands]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], [run.stderr for run in runs]
    assert "3 images copied, 0 unchanged" in runs[1].stdout
    assert "0 images copied, 3 unchanged, 0 blobs fetched" in runs[2].stdout
    assert json.loads(runs[3].stdout)["Digest"] == pushed[("library/alpine", "3.20")].digest
    assert layout_tags(tmp_path / "mirror") == {
        "library/alpine": {
            "3.20": pushed[("library/alpine", "3.20")].digest,
            "3.21": pushed[("library/alpine", "3.21")].digest,
        },
        "library/busybox": {"1.36": pushed[("library/busybox", "1.36")].digest},
    }
