#!/usr/bin/env python3
"""Generates the chart's README (charts/node-janitor/README.md) from Chart.yaml and values.yaml: the install steps
and a table of every value, described by its `# --` comment (helm-docs' convention: a comment block starting with
`# -- ` right above a key describes it; its following `# ` lines continue the text).

    hack/chart-readme.py [OUT]      (default: print to stdout; hack/regen.py writes the README with it)

Rows: every leaf value (a scalar, a list, an empty map), and every described map as a whole.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "node-janitor"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def _lookup(values: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(values, dict) or key not in values:
            return False, None
        values = values[key]
    return True, values


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def rows(text: str) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of the values file `text`, in file order."""
    values = yaml.safe_load(text) or {}
    found: list[tuple[str, str, str, str]] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing maps
    description: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# -- "):
            description = [stripped[5:]]
            continue
        if stripped.startswith("#") and description is not None:
            description.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match:
            description = None if not stripped or not stripped.startswith("-") else description
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*[k for _, k in stack], match["key"])
        known, value = _lookup(values, path)
        if not known:  # a key inside a list item: part of its list's default
            description = None
            continue
        text_ = " ".join(description or []).replace("|", "\\|")
        if isinstance(value, dict) and value:
            stack.append((indent, match["key"]))
            if description is not None:
                found.append((".".join(path), "object", f"`{json.dumps(value)}`", text_))
        else:
            found.append((".".join(path), _type(value), f"`{json.dumps(value)}`", text_))
        description = None
    return found


def readme(chart_dir: Path = CHART) -> str:
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    table = "\n".join(
        f"| `{k}` | {t} | {d} | {text} |" for k, t, d, text in rows((chart_dir / "values.yaml").read_text())
    )
    name, version = chart["name"], chart["version"]
    return f"""<!-- Generated from Chart.yaml and values.yaml by hack/chart-readme.py (hack/regen.py); do not edit. -->
# {name}

{chart["description"]}

Version {version}, app version {chart["appVersion"]}, Kubernetes {chart["kubeVersion"]}. Home: {chart["home"]}

## Install

Create and label the namespace first: the agents mount host paths (containerd's socket and root, the pod logs),
which only the `privileged` Pod Security level admits. Then install:

```sh
kubectl create namespace node-janitor
kubectl label namespace node-janitor pod-security.kubernetes.io/enforce=privileged
helm install node-janitor oci://ghcr.io/node-janitor/charts/{name} --version {version} -n node-janitor
helm test node-janitor -n node-janitor    # the operator ready, a node's report fresh
```

The CRDs are templates of the chart (`crds.enabled`), so `helm upgrade` updates them; with `crds.keep` (the
default) `helm uninstall` leaves them and every CleanupPolicy and NodeCleanup. The image
(`ghcr.io/node-janitor/node-janitor:{chart["appVersion"]}`, linux/amd64 and linux/arm64) is signed with cosign
(keyless, by the release workflow) and carries an SBOM.

## Values

| Key | Type | Default | Description |
| --- | --- | --- | --- |
{table}
"""


def main(argv: list[str]) -> int:
    text = readme()
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
