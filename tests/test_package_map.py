"""The package map (operator/node_janitor/__init__.py, docs/architecture.md) holds: each package imports only the
packages of ours it may. Static: every `import`/`from ... import` of each module, lazy ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "operator" / "node_janitor"
EVERYONE = {"defaults"}  # importable by every package
MAY_IMPORT: dict[str, set[str]] = {
    "api": set(),
    "runtime": {"api"},
    "node": {"api", "runtime", "atomic_json"},
    "agent": {"api", "runtime", "node", "http_endpoint", "atomic_json"},
    "controller": {"api", "http_endpoint"},
    "devbed": {"api", "runtime", "node"},
    "http_endpoint": set(),
    "defaults": set(),
    "atomic_json": set(),
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Our top-level packages each module of `package` imports (other than itself) -> the modules importing them."""
    path = ROOT / package
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    found: dict[str, set[str]] = {}
    for file in files:
        if "gen" in file.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "node_janitor" and len(parts) > 1 and parts[1] != package:
                    found.setdefault(parts[1], set()).add(str(file.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_what_the_map_allows(package: str) -> None:
    allowed = MAY_IMPORT[package] | EVERYONE
    extra = {name: sorted(files) for name, files in imported_packages(package).items() if name not in allowed}
    assert not extra, f"{package} imports {extra}: not in the package map (operator/node_janitor/__init__.py)"


def test_the_map_names_every_package() -> None:
    ours = {p.stem for p in ROOT.glob("*.py") if p.stem not in ("__init__", "__main__")}
    ours |= {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists() and p.name != "cli"}
    assert ours == set(MAY_IMPORT)
