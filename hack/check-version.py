#!/usr/bin/env python3
"""One version from one source: pyproject.toml's [project] version is the release's. Checks that everything else
that names it agrees, and prints it (the release workflow tags the image and pushes the chart with it).

    hack/check-version.py [--tag v0.1.0] [--owner node-janitor] [--root DIR]

Checked against pyproject.toml's version V:
- the git tag (--tag, as the workflow gets it): vV;
- operator/node_janitor/__init__.py's __version__ (the wheel's `node-janitor --version`): V;
- charts/node-janitor/Chart.yaml's version and appVersion: V;
- the chart's default image (values.yaml): ghcr.io/<owner>/node-janitor (what the workflow publishes), its tag
  empty (then the chart uses appVersion) or V, no digest;
- Chart.yaml's artifacthub.io/images annotation: ghcr.io/<owner>/node-janitor:V.
Exit 0 and the version on stdout when all agree; else exit 1 naming each disagreement.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def disagreements(root: Path, tag: str | None, owner: str) -> tuple[str, list[str]]:
    """pyproject's version, and every place that disagrees with it (as one line each)."""
    version = str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])
    found: list[str] = []

    def expect(where: str, actual: object, wanted: object) -> None:
        if actual != wanted:
            found.append(f"{where} is {actual!r}, not {wanted!r} (pyproject.toml's version is {version})")

    if tag is not None:
        expect("the tag", tag, f"v{version}")
    package = ast.parse((root / "operator" / "node_janitor" / "__init__.py").read_text())
    versions = [
        node.value.value
        for node in package.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
        and isinstance(node.value, ast.Constant)
    ]
    expect("operator/node_janitor/__init__.py's __version__", versions[0] if versions else None, version)
    chart = yaml.safe_load((root / "charts" / "node-janitor" / "Chart.yaml").read_text())
    expect("Chart.yaml's version", str(chart.get("version")), version)
    expect("Chart.yaml's appVersion", str(chart.get("appVersion")), version)
    repository = f"ghcr.io/{owner.lower()}/node-janitor"
    image = yaml.safe_load((root / "charts" / "node-janitor" / "values.yaml").read_text())["image"]
    expect("values.yaml's image.repository", image.get("repository"), repository)
    if image.get("tag"):
        expect("values.yaml's image.tag", image["tag"], version)
    expect("values.yaml's image.digest", image.get("digest") or "", "")
    annotated = yaml.safe_load(chart.get("annotations", {}).get("artifacthub.io/images") or "[]")
    expect("Chart.yaml's artifacthub.io/images", [i.get("image") for i in annotated], [f"{repository}:{version}"])
    return version, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/check-version.py", description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="the release's git tag (v<version>)")
    parser.add_argument("--owner", default="node-janitor", help="the GitHub owner the image is published under")
    parser.add_argument("--root", type=Path, default=REPO, help="the tree to check (default: this repository)")
    args = parser.parse_args(argv)
    version, found = disagreements(args.root, args.tag, args.owner)
    for line in found:
        print(f"check-version: {line}", file=sys.stderr)
    if found:
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
