"""The import graph of the package: no cycle, and no arrow up the layers.

Layers as in the design's table: each package imports only the layers listed for it (and
the leaves ``errors``, the one exception tree, and ``redact``), and third-party frameworks
stay in their layer (the engine knows neither Celery, Redis nor pydantic). Every import
counts, also one inside a function: deferring an import hides a dependency, it does not
remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import syncworker

PACKAGE = Path(syncworker.__file__).parent

# Layer -> the layers of ours it may import, lowest first.
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "redact": frozenset(),
    # what is temporary, and every retry policy: below every layer that retries
    "retry": frozenset(),
    "waits": frozenset(),
    "heartbeat": frozenset(),
    "oci": frozenset(),
    "registry": frozenset({"oci"}),
    "filters": frozenset({"oci"}),
    "coord": frozenset(),
    "store": frozenset({"oci", "registry"}),
    "engine": frozenset({"oci", "registry", "store", "filters"}),
    # config builds the engine's plain values from the models (config/mirrorbuild.py)
    "config": frozenset({"oci", "registry", "store", "filters", "engine"}),
    "runs": frozenset({"oci", "engine", "coord"}),
    # metrics, progress and logs: implementations of the engine's Events, with the runs
    # gauges read through coord
    "observe": frozenset({"oci", "registry", "engine", "coord"}),
    # what a command or a worker opens from its configuration: Coordinator, store, Mirror
    "runtime": frozenset({"store", "engine", "coord", "config"}),
    "worker": frozenset(
        {"oci", "registry", "store", "engine", "coord", "config", "runs", "observe", "runtime"}
    ),
    "tasks": frozenset({"engine", "coord", "config", "runs", "worker"}),
    "celeryapp": frozenset({"config", "worker", "tasks"}),
    # the HTTP service: webhooks and a REST API that send the public tasks
    "api": frozenset({"oci", "coord", "config", "runs", "worker", "celeryapp"}),
    # the read-only registry over the store, pulling through via the engine or the workers
    "serve": frozenset(
        {
            "oci",
            "registry",
            "store",
            "filters",
            "engine",
            "coord",
            "config",
            "worker",
            "celeryapp",
            "observe",
            "runtime",
        }
    ),
    "cli": frozenset(
        {
            "serve",
            "oci",
            "store",
            "engine",
            "coord",
            "config",
            "runtime",
            "runs",
            "worker",
            "celeryapp",
            "api",
            "observe",
        }
    ),
    "__main__": frozenset({"cli"}),
}
# The exception tree, the redaction of secrets, the retry policies, the lock waits and a
# waiting holder's heartbeat: leaves every layer may use.
ALWAYS = frozenset({"errors", "redact", "retry", "waits", "heartbeat"})
# Arrows the layers forbid that the code still has, listed exactly so that each one fails
# this test once it is gone and is removed here. None left.
NOT_YET: list[str] = []
# Third-party frameworks -> the layers that may use them.
FRAMEWORKS: dict[str, frozenset[str]] = {
    "celery": frozenset({"worker", "tasks", "celeryapp", "api", "serve", "cli"}),
    "kombu": frozenset({"worker", "tasks", "celeryapp", "cli"}),
    "redbeat": frozenset({"worker", "celeryapp"}),
    "redis": frozenset({"coord", "worker", "api"}),
    "pydantic": frozenset({"config", "api"}),
    "fastapi": frozenset({"api"}),
    "starlette": frozenset({"api"}),
    "uvicorn": frozenset({"api", "cli"}),
    # the S3 store, and zot's ecr credential helper (config/credentials.py)
    "boto3": frozenset({"store", "config"}),
    "botocore": frozenset({"store", "config"}),
    # metrics and the live display of `sync`: above the engine, which only calls its Events
    "prometheus_client": frozenset({"observe"}),
    "rich": frozenset({"observe"}),
    # htpasswd's hashes, checked by `syncworker serve`
    "bcrypt": frozenset({"serve"}),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, *, typing_only: bool = True) -> set[str]:
    """What ``path`` imports, wherever the statement is: our modules by name (``from P
    import m`` of a submodule ``m`` is ``P.m``, of a name defined in ``P`` is ``P``), other
    packages by their top-level name. Without ``typing_only``, imports under ``if
    TYPE_CHECKING:`` are left out: they are dependencies, but never executed."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set() if typing_only else _typing_only_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {name if name.split(".")[0] == "syncworker" else name.split(".")[0] for name in found}


def _typing_only_nodes(tree: ast.Module) -> set[ast.AST]:
    """The statements under ``if TYPE_CHECKING:``."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for statement in node.body:
                found.update(ast.walk(statement))
    return found


def graph(*, typing_only: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports when it runs (``typing_only``: also those
    it imports for type checking only)."""
    return {
        name: {
            target
            for target in imports(path, typing_only=typing_only)
            if target in MODULES and target != name
        }
        for name, path in MODULES.items()
    }


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports() -> list[str]:
    found = []
    for module, path in sorted(MODULES.items()):
        own = layer(module)
        if own == "syncworker":
            continue
        for target in sorted(imports(path)):
            if target.startswith("syncworker"):
                other = layer(target)
                if other not in (own, "syncworker") and other not in ALLOWED[own] | ALWAYS:
                    found.append(f"{module} -> {target}")
            elif target in FRAMEWORKS and own not in FRAMEWORKS[target]:
                found.append(f"{module} -> {target}")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_layer_is_known() -> None:
    layers = {layer(module) for module in MODULES} - {"syncworker"}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_no_import_cycle_even_through_imports_for_type_checking_only() -> None:
    """A cycle of type hints runs nowhere, yet two modules that each need the other to be
    read are one module split in two."""
    assert cycles(graph(typing_only=True)) == []


def test_imports_for_type_checking_only_are_not_run() -> None:
    module = "syncworker.runtime"  # opens the store through config, names its type only
    assert "syncworker.store" in imports(MODULES[module])
    assert "syncworker.store" not in imports(MODULES[module], typing_only=False)


def test_no_upward_import() -> None:
    assert upward_imports() == NOT_YET


def test_the_checks_catch_what_they_look_for() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
