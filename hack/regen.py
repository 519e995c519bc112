#!/usr/bin/env python3
"""Regenerate every derived file of the repository, or check that each one is fresh.

    .venv/bin/python hack/regen.py           # rewrite every derived file that is stale (and remove leftovers)
    .venv/bin/python hack/regen.py --check   # change nothing: name the stale files, exit 1 if there are any

The derived files, each from its source:
- `crds/`: the CRDs, from the pydantic models (`python -m node_janitor.api.crd`);
- `charts/node-janitor/crds/`: a copy of `crds/` (beside kopf's peering CRD, a source: not generated here);
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
CHART_CRDS = Path("charts/node-janitor/crds")
PROTO_STUBS = Path("operator/node_janitor/runtime/gen")
DEPLOY = Path("deploy")
CHART_CRD_SOURCES = frozenset({"kopf.dev_peerings.yaml"})  # kopf's CRD: committed by hand, not generated


def derived_files(root: Path) -> Iterator[Path]:
    """The derived files present under `root` (the repository or a generated tree), relative to it."""
    for directory, pattern in ((CRDS, "*.yaml"), (CHART_CRDS, "*.yaml"), (DEPLOY, "*.yaml"), (DEPLOY / "crds", "*")):
        for path in sorted((root / directory).glob(pattern)):
            if path.is_file() and not (directory == CHART_CRDS and path.name in CHART_CRD_SOURCES):
                yield path.relative_to(root)
    for path in sorted((root / PROTO_STUBS).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(root)


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"regen: {' '.join(map(str, command))} failed:\n{proc.stdout}{proc.stderr}")


def generate(out: Path) -> None:
    """Every derived file, generated from the committed sources into the tree `out`."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    run(sys.executable, "-m", "node_janitor.api.crd", out / CRDS, env=env)
    (out / CHART_CRDS).mkdir(parents=True)
    for crd in (out / CRDS).glob("*.yaml"):
        shutil.copyfile(crd, out / CHART_CRDS / crd.name)
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
