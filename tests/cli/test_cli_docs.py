"""docs/cli.md documents every command, every flag and every exit code the program has."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from node_janitor.cli import errors
from node_janitor.cli.main import build_parser

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_and_flag_is_documented() -> None:
    missing = []
    for name, parser in _commands().items():
        if f"## {name}" not in DOC:
            missing.append(f"section ## {name}")
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help"):
                    continue
                if not re.search(rf"`[^`]*{re.escape(flag)}\b[^`]*`", DOC):
                    missing.append(f"{name} {flag}")
    assert missing == []


def test_every_exit_code_is_documented() -> None:
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", DOC, re.M))
    assert {int(c) for c in table} == codes
