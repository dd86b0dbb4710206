"""Small helpers shared by the CLI command modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="experiment YAML (see docs/config-reference.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set training.epochs=5 (repeatable)")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def echo(msg: str) -> None:
    print(msg, file=sys.stdout, flush=True)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value
