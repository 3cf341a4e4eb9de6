"""docs/ARCHITECTURE.md stays true to the tree: every module it names exists and every
package appears in its map, so the document cannot drift from the code unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
NAMED = re.compile(r"syncworker/[\w/]+\.py")


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
