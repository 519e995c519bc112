#!/usr/bin/env python3
"""Regenerate every derived file of the repository, or check that each one is fresh.

    .venv/bin/python hack/regen.py           # rewrite every derived file that is stale (and remove leftovers)
    .venv/bin/python hack/regen.py --check   # change nothing: name the stale files, exit 1 if there are any

The derived files, each from its source:
- `crds/`: the CRDs, from the pydantic models (`python -m node_janitor.api.crd`);
- `charts/node-janitor/templates/crds/`: the chart's templates of `crds/` and of kopf's peering CRD
  (`hack/crds/kopf.dev_peerings.yaml`, a source), each behind `crds.enabled` with the chart's labels and, with
  `crds.keep`, `helm.sh/resource-policy: keep` (templates, not the chart's crds/ directory: `helm upgrade`
  updates them);
- `charts/node-janitor/README.md`: the chart's README, its values table from values.yaml's `# --` comments
  (`hack/chart-readme.py`);
- `operator/node_janitor/runtime/gen/`: the protobuf and gRPC stubs of `runtime/protos/` (`hack/gen-protos.py`,
  grpcio-tools pinned);
- `deploy/` (not `deploy/examples/`): the chart rendered with its default values (`hack/render-deploy.sh`; helm:
  $HELM, else the test bed's from hack/build-k8s.sh, else `helm` on PATH).

Both modes first generate everything into a temporary tree, then compare it file by file with the committed one:
a file added, removed or changed is stale. tests/test_derived_files.py runs the check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CRDS = Path("crds")
CHART_CRDS = Path("charts/node-janitor/templates/crds")
CHART_README = Path("charts/node-janitor/README.md")
KOPF_CRDS = Path("hack/crds/kopf.dev_peerings.yaml")  # kopf's CRDs: written by hand, not generated
PROTO_STUBS = Path("operator/node_janitor/runtime/gen")
DEPLOY = Path("deploy")


def derived_files(root: Path) -> Iterator[Path]:
    """The derived files present under `root` (the repository or a generated tree), relative to it."""
    for directory, pattern in (
        (CRDS, "*.yaml"),
        (CHART_CRDS, "*.yaml"),
        (DEPLOY, "*.yaml"),
        (DEPLOY / "crds", "*"),
        (CHART_README.parent, "*.md"),
    ):  # the chart's README is its only Markdown
        for path in sorted((root / directory).glob(pattern)):
            if path.is_file():
                yield path.relative_to(root)
    for path in sorted((root / PROTO_STUBS).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(root)


def chart_crd_template(text: str, name: str) -> str:
    """The chart's template of a CRD file (one or more documents): each CRD behind `crds.enabled`, with the
    chart's labels and the keep annotation (`node-janitor.crdMetadata`) added to its metadata."""
    assert "{{" not in text, f"{name}: a CRD with template delimiters"
    documents = []
    for document in text.split("\n---\n"):
        lines = [line for line in document.strip("\n").splitlines() if not line.startswith("#")]
        name_line = lines.index("metadata:") + 1
        assert lines[name_line].startswith("  name: ") and not lines[name_line + 1].startswith("  "), name
        lines.insert(name_line + 1, '  {{- include "node-janitor.crdMetadata" . | nindent 2 }}')
        documents.append("{{- if .Values.crds.enabled }}\n" + "\n".join(lines) + "\n{{- end }}\n")
    header = f"{{{{- /* Generated from {name} by hack/regen.py; do not edit. */}}}}\n"
    return header + "---\n".join(documents)


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"regen: {' '.join(map(str, command))} failed:\n{proc.stdout}{proc.stderr}")


def generate(out: Path) -> None:
    """Every derived file, generated from the committed sources into the tree `out`."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    run(sys.executable, "-m", "node_janitor.api.crd", out / CRDS, env=env)
    (out / CHART_CRDS).mkdir(parents=True)
    for crd in [*(out / CRDS).glob("*.yaml"), REPO / KOPF_CRDS]:
        (out / CHART_CRDS / crd.name).write_text(chart_crd_template(crd.read_text(), crd.name))
    run(sys.executable, REPO / "hack" / "chart-readme.py", out / CHART_README)
    run(sys.executable, REPO / "hack" / "gen-protos.py", "--out", out / PROTO_STUBS)
    run(REPO / "hack" / "render-deploy.sh", out / DEPLOY)


def stale_files(generated: Path) -> list[Path]:
    """The derived files that differ between the committed tree and `generated`: changed, missing, left over."""
    fresh, committed = set(derived_files(generated)), set(derived_files(REPO))
    return sorted(
        rel
        for rel in fresh | committed
        if rel not in fresh or rel not in committed or (generated / rel).read_bytes() != (REPO / rel).read_bytes()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/regen.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a derived file is stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="regen-") as tmp:
        generated = Path(tmp)
        generate(generated)
        stale = stale_files(generated)
        if args.check:
            for rel in stale:
                print(f"{rel}: stale (run hack/regen.py)", file=sys.stderr)
            return 1 if stale else 0
        for rel in stale:
            if (generated / rel).is_file():
                (REPO / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(generated / rel, REPO / rel)
                print(f"regen: wrote {rel}", file=sys.stderr)
            else:
                (REPO / rel).unlink()
                print(f"regen: removed {rel}", file=sys.stderr)
    print(f"regen: {len(stale)} derived files were stale" if stale else "regen: every derived file is fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
