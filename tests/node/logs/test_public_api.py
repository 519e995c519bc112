"""`node_janitor.node.logs` has a public API: code outside the package imports only what its __init__ exports, and
its modules share no private (underscore) names with each other."""

from __future__ import annotations

import ast
from pathlib import Path

import node_janitor.node.logs as logs

REPO = Path(__file__).resolve().parents[3]
PACKAGE = REPO / "operator" / "node_janitor" / "node" / "logs"


def imports_from(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from X import name` in the file (absolute imports)."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        for alias in node.names
    ]


def test_no_private_name_crosses_the_package_s_modules() -> None:
    crossing = [
        f"{path.name}: {module}.{name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for module, name in imports_from(path)
        if module.startswith("node_janitor.") and name.startswith("_")
    ]
    assert crossing == []


def test_code_outside_the_package_uses_only_its_exports() -> None:
    outside = [p for p in sorted((REPO / "operator").rglob("*.py")) if PACKAGE not in p.parents]
    outside += sorted((REPO / "bench").glob("*.py"))
    reaching_in = [
        f"{path.relative_to(REPO)}: {module}.{name}"
        for path in outside
        for module, name in imports_from(path)
        if module.startswith("node_janitor.node.logs.")
        or (module == "node_janitor.node.logs" and name not in logs.__all__)
    ]
    assert reaching_in == []


def test_every_export_exists_and_none_is_private() -> None:
    assert all(hasattr(logs, name) and not name.startswith("_") for name in logs.__all__)
