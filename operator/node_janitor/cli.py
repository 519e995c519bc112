"""The `node-janitor` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from node_janitor import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="node-janitor",
        description="Exact disk accounting and safe cleanup for containerd nodes.",
    )
    parser.add_argument("--version", action="version", version=f"node-janitor {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0
