"""Every module of the package stays under MAX_LINES: past that, a module holds more than
one thing, and is split along its seam into modules named for what each holds."""

from __future__ import annotations

from pathlib import Path

import syncworker

PACKAGE = Path(syncworker.__file__).parent
MAX_LINES = 400


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_every_module_is_under_the_limit() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 100  # every subpackage is searched, not only the top
    counts = {str(p.relative_to(PACKAGE.parent)): lines(p) for p in modules}
    assert {name: n for name, n in counts.items() if n > MAX_LINES} == {}
