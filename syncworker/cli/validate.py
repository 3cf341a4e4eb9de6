"""``syncworker validate -c FILE``: check a configuration, naming every bad field."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncworker.config import load_config

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("validate", help="check a configuration file")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON (a zot config works)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # ConfigError -> exit 2 in main, every field named
    names = ", ".join(r.name for r in config.registries) or "none"
    print(f"{args.config}: valid; registries: {names}", file=sys.stdout)
    return 0
