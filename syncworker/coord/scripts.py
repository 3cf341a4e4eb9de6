"""The Lua scripts of ``coord/``: read once from ``lua/*.lua``, registered per client.

Each script is one atomic step: on several keys (dramatiq's rule: multi-key changes in Lua),
or a read-then-write of one key (the API's coalescing entry). Every Lua of the package is
here (tests/test_docs_claims.py).
Those that start a run, count into it or may end it (``run_start``, ``run_incr``,
``run_live``, ``run_failure``, ``run_finish``, ``walk_end``) start with
``lua/run_helpers.lua``, preceded by the number of keys a run has, so every script sees the
same key layout and completion rule.
"""

from __future__ import annotations

import functools
from importlib import resources

import redis
from redis.commands.core import Script

from syncworker.coord.keys import RUN_KEY_COUNT

__all__ = ["register", "source"]

# The scripts that call the helpers of lua/run_helpers.lua.
_WITH_RUN_HELPERS = frozenset(
    {"run_start", "run_incr", "run_live", "run_failure", "run_finish", "walk_end"}
)


@functools.cache
def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


@functools.cache
def source(name: str) -> str:
    """The full text of script ``name`` (``lua/{name}.lua``, helpers first if it uses them)."""
    if name not in _WITH_RUN_HELPERS:
        return _read(name)
    return f"local RUN_KEYS = {RUN_KEY_COUNT}\n{_read('run_helpers')}{_read(name)}"


def register(client: redis.Redis, name: str) -> Script:
    """Script ``name`` on ``client``: called by SHA, loaded into Redis on first use."""
    return client.register_script(source(name))
