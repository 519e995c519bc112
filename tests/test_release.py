"""The release: one version from one source (hack/check-version.py, on this tree and on broken copies of it), the
workflow (.github/workflows/release.yml) checked by actionlint (built from the Go module proxy by
hack/build-k8s.sh; a broken workflow is refused), and the chart's default image being what the workflow publishes.
The workflow itself cannot run here (no GitHub runner, no registry, no OIDC for keyless signing)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from support.kube import REPO, find_binaries

CHECK_VERSION = REPO / "hack" / "check-version.py"
WORKFLOWS = REPO / ".github" / "workflows"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
VERSIONED = ("pyproject.toml", "operator/node_janitor/__init__.py", "charts/node-janitor/Chart.yaml",
             "charts/node-janitor/values.yaml")  # fmt: skip


def check_version(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK_VERSION), *map(str, args)], capture_output=True, text=True)


def test_the_tree_has_one_version() -> None:
    result = check_version("--tag", f"v{VERSION}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{VERSION}\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the files that name the version."""
    for rel in VERSIONED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, tmp_path / rel)
    assert check_version("--root", tmp_path).returncode == 0
    return tmp_path


BROKEN = {
    "chart version": ("charts/node-janitor/Chart.yaml", f"version: {VERSION}", "version: 9.9.9",
                      "Chart.yaml's version is '9.9.9'"),
    "appVersion": ("charts/node-janitor/Chart.yaml", f'appVersion: "{VERSION}"', 'appVersion: "9.9.9"',
                   "Chart.yaml's appVersion is '9.9.9'"),
    "package": ("operator/node_janitor/__init__.py", f'__version__ = "{VERSION}"', '__version__ = "9.9.9"',
                "__init__.py's __version__ is '9.9.9'"),
    "pyproject": ("pyproject.toml", f'version = "{VERSION}"', 'version = "9.9.9"', "pyproject.toml's version is 9.9.9"),
    "image repository": ("charts/node-janitor/values.yaml", "repository: ghcr.io/node-janitor/node-janitor",
                         "repository: docker.io/someone/node-janitor", "image.repository is 'docker.io/someone"),
    "image tag": ("charts/node-janitor/values.yaml", 'tag: ""', 'tag: "0.0.1"', "image.tag is '0.0.1'"),
    "artifacthub image": ("charts/node-janitor/Chart.yaml", f"image: ghcr.io/node-janitor/node-janitor:{VERSION}",
                          "image: ghcr.io/node-janitor/node-janitor:latest", "artifacthub.io/images"),
}  # fmt: skip


@pytest.mark.parametrize(("rel", "old", "new", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_disagreeing_copy_is_refused_naming_the_place(tree: Path, rel: str, old: str, new: str, message: str) -> None:
    path = tree / rel
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    result = check_version("--root", tree)
    assert result.returncode == 1 and result.stdout == ""
    assert message in result.stderr, result.stderr


def test_a_tag_other_than_the_version_is_refused(tree: Path) -> None:
    result = check_version("--root", tree, "--tag", "v0.0.0-rc1")
    assert result.returncode == 1 and f"the tag is 'v0.0.0-rc1', not 'v{VERSION}'" in result.stderr
    assert check_version("--root", tree, "--tag", f"v{VERSION}").returncode == 0


def test_another_owner_needs_its_own_image_default(tree: Path) -> None:
    """A fork publishes under its own owner: the chart's default must then name that image."""
    result = check_version("--root", tree, "--owner", "Fork")
    assert result.returncode == 1 and "not 'ghcr.io/fork/node-janitor'" in result.stderr


# --- the workflow -----------------------------------------------------------------------------------------


def workflow() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    return loaded


def steps(job: str) -> list[dict[str, object]]:
    jobs = workflow()["jobs"]
    assert isinstance(jobs, dict)
    found: list[dict[str, object]] = jobs[job]["steps"]
    return found


def test_the_workflow_runs_on_version_tags_and_checks_the_version_first() -> None:
    # (yaml reads the key `on` as True)
    assert workflow()[True] == {"push": {"tags": ["v*"]}}
    check = next(s for s in steps("version") if s.get("id") == "check")
    assert 'hack/check-version.py --tag "$TAG"' in str(check["run"])
    jobs = workflow()["jobs"]
    assert isinstance(jobs, dict)
    assert all("version" in (job.get("needs") or []) for name, job in jobs.items() if name != "version")


def test_the_workflow_publishes_the_chart_default_image_signed_with_an_sbom() -> None:
    build = next(s for s in steps("image") if s.get("id") == "build")
    assert build["uses"] == "docker/build-push-action@v6"
    inputs = build["with"]
    assert isinstance(inputs, dict)
    assert inputs["file"] == "Containerfile" and inputs["platforms"] == "linux/amd64,linux/arm64"
    assert inputs["push"] is True and inputs["sbom"] is True
    jobs = workflow()["jobs"]
    assert isinstance(jobs, dict)
    assert jobs["image"]["env"]["IMAGE"] == "ghcr.io/${{ needs.version.outputs.owner }}/node-janitor"
    assert inputs["tags"] == "${{ env.IMAGE }}:${{ env.VERSION }}"
    values = yaml.safe_load((REPO / "charts" / "node-janitor" / "values.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/node-janitor/node-janitor"  # owner node-janitor
    signing = "\n".join(str(s.get("run", "")) for s in steps("image"))
    assert 'cosign sign --yes "$IMAGE@$DIGEST"' in signing and "cosign attest --yes --type spdxjson" in signing
    assert jobs["image"]["permissions"]["id-token"] == "write"  # keyless: the workflow's OIDC token
    chart = "\n".join(str(s.get("run", "")) for s in steps("chart"))
    assert 'helm push "dist/node-janitor-$VERSION.tgz" "oci://$CHARTS"' in chart
    assert jobs["chart"]["env"]["CHARTS"] == "ghcr.io/${{ needs.version.outputs.owner }}/charts"


@pytest.fixture(scope="module")
def actionlint() -> Path:
    return find_binaries().actionlint


def run_actionlint(actionlint: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(actionlint), "-no-color", *map(str, files)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)  # fmt: skip


def test_actionlint_passes_the_workflows(actionlint: Path) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files
    result = run_actionlint(actionlint, *files)
    assert result.returncode == 0, result.stdout + result.stderr


BROKEN_WORKFLOWS = {
    "unknown job in needs": ("needs: version\n    runs-on", "needs: versoin\n    runs-on",
                             'needs job "versoin" which does not exist'),
    "unknown output": ("needs.version.outputs.owner }}/node-janitor", "needs.version.outputs.ownr }}/node-janitor",
                       'property "ownr" is not defined'),
    "unknown action input": ("          platforms: linux/amd64", "          platform: linux/amd64",
                             'input "platform" is not defined'),
}  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message"), BROKEN_WORKFLOWS.values(), ids=BROKEN_WORKFLOWS.keys())
def test_actionlint_refuses_a_broken_workflow(
    actionlint: Path, tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = (WORKFLOWS / "release.yml").read_text()
    assert old in text, old
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new, 1))
    result = run_actionlint(actionlint, broken)
    assert result.returncode == 1, result.stdout
    assert message in result.stdout, result.stdout
