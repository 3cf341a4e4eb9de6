"""A handler on the ``syncworker`` logger at debug level for as long as a test needs it,
so a test can wait on a debug line instead of guessing at timing."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

__all__ = ["debug_handler"]

H = TypeVar("H", bound=logging.Handler)


@contextlib.contextmanager
def debug_handler(handler: H) -> Iterator[H]:
    """``handler`` on the ``syncworker`` logger, lowered to DEBUG; both put back after."""
    logger = logging.getLogger("syncworker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
