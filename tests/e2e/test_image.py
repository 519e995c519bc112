"""The node-janitor image built without an engine (hack/build-image.py: mmdebstrap + the project's OCI image
builder), as the Containerfile describes it: same packages, same steps, same process defaults; it imports
into a real containerd and runs there as the operator runs (non-root, read-only root file system, no
capability, the default seccomp profile).

The build takes about a minute the first time (mmdebstrap from Debian's packages, the wheels from the
Python package index) and is cached by the hash of its inputs under ~/.cache/node-janitor/image/.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node_janitor.devbed import ContainerdBed, ImageBuilder

pytestmark = pytest.mark.containerd

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "hack" / "build-image.py"
# What containerd's default spec grants (ctr 1.6 drops them one by one, it knows no "ALL").
DEFAULT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                        "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")  # fmt: skip


def _oci(archive: Path) -> tuple[dict[str, Any], list[bytes]]:
    """The image's config and its layers (gzipped tars, lowest first) from its OCI archive."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> bytes:
            member = tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert member is not None
            return member.read()

        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        return json.loads(blob(manifest["config"]["digest"])), [blob(layer["digest"]) for layer in manifest["layers"]]


def _files(layer: bytes) -> dict[str, bytes | None]:
    """A layer's paths, with the content of its regular files."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        return {m.name: (f.read() if m.isreg() and (f := tar.extractfile(m)) else None) for m in tar}


def _containerfile() -> str:
    return (REPO / "Containerfile").read_text().replace("\\\n", " ")


def test_the_image_has_the_containerfiles_process_defaults(image: dict[str, str]) -> None:
    config, layers = _oci(Path(image["archive"]))
    process = config["config"]
    text = _containerfile()
    assert process["Entrypoint"] == json.loads(re.search(r"^ENTRYPOINT (.*)$", text, re.M)[1])  # type: ignore[index]
    assert process["Cmd"] == json.loads(re.search(r"^CMD (.*)$", text, re.M)[1])  # type: ignore[index]
    assert process["User"] == re.search(r"^USER (\S+)$", text, re.M)[1] == "65532:65532"  # type: ignore[index]
    env = re.search(r"^ENV (.*)$", text, re.M)[1]  # type: ignore[index]
    assert process["Env"] == shlex.split(env)
    assert len(config["rootfs"]["diff_ids"]) == len(layers) == 2  # Debian, then /opt/node-janitor


def test_the_builder_takes_the_containerfiles_steps() -> None:
    """The engine-less builder installs what the Containerfile installs, the same way."""
    source = BUILD.read_text()
    text = _containerfile()
    installed = re.findall(r"apt-get install -y --no-install-recommends ([^&]+?)\s*&&", text)
    assert len(installed) == 2 and len(set(installed)) == 1
    packages = re.search(r"^PACKAGES = \((.*)\)$", source, re.M)[1]  # type: ignore[index]
    assert installed[0].split() == [p.strip().strip('"') for p in packages.split(",") if p.strip()]
    assert "--wheel-dir" in text and '"wheel"' in source and "-c /src/constraints.txt" in text
    assert "python3 -m venv /opt/node-janitor" in text and "python3 -m venv {VENV}" in source
    assert "/opt/node-janitor/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels node-janitor" in text
    assert "{VENV}/bin/pip install --no-cache-dir --no-index --find-links /tmp/{wheels.name} node-janitor" in source
    assert "/opt/node-janitor/bin/pip uninstall --yes --quiet pip setuptools" in text
    assert "{VENV}/bin/pip uninstall --yes --quiet pip setuptools" in source
    assert "--no-install-recommends" in text and 'APT::Install-Recommends "false"' in source
    for step in (
        "groupadd --system --gid 65532 nonroot",
        "useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent",
    ):
        assert step in text and step in source


def test_the_image_holds_the_project_and_a_non_root_user(image: dict[str, str]) -> None:
    base, app = (_files(layer) for layer in _oci(Path(image["archive"]))[1])
    assert {"usr/bin/python3.11", "etc/ssl/certs/ca-certificates.crt", "etc/passwd"} <= base.keys()
    assert not [n for n in base if n.startswith(("usr/share/doc/", "usr/share/man/", "var/lib/apt/lists/"))]
    # merged /usr set up without the usrmerge package (and so without perl beyond the essential perl-base)
    assert b"Package: usrmerge\n" not in (base["var/lib/dpkg/status"] or b"")
    assert not [n for n in base if n.startswith("usr/share/perl/")] and base["bin"] is None  # bin -> usr/bin
    assert "nonroot:x:65532:65532:" in (base["etc/passwd"] or b"").decode()
    assert "opt/node-janitor/bin/node-janitor" in app and "opt/node-janitor/bin/pip" not in app
    dist_info = r"opt/node-janitor/lib/python3\.11/site-packages/node_janitor-.*\.dist-info$"
    assert [n for n in app if re.match(dist_info, n)]
    assert not [n for n in app if not n.startswith("opt")]


def test_the_build_is_cached(image: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, str(BUILD)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and json.loads(result.stdout) == image


@pytest.fixture
def roomy_bed(tmp_path_factory: pytest.TempPathFactory, image_builder: ImageBuilder) -> Iterator[ContainerdBed]:
    """A private containerd on a 1 GiB disk: the image takes about 100 MB of blobs and 300 MB unpacked."""
    if os.geteuid() != 0:
        pytest.fail("the containerd test bed needs root (loop mounts, runc); run the suite as root")
    with ContainerdBed(tmp_path_factory.mktemp("containerd"), disk_size=1 << 30, builder=image_builder) as bed:
        yield bed


def test_the_image_runs_in_containerd_as_the_operator_does(roomy_bed: ContainerdBed, image: dict[str, str]) -> None:
    """Imported into a real containerd and run as user 65532 on a read-only root file system with every
    capability dropped and the default seccomp profile: the entrypoint works and every module imports."""
    bed = roomy_bed
    bed.ctr("images", "import", "--snapshotter", "overlayfs", image["archive"], timeout=300)
    listed = bed.ctr("images", "ls", "-q").stdout.split()
    assert image["name"] in listed

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        flags = ["--rm", "--read-only", "--seccomp", "--snapshotter", "overlayfs"]
        flags += [f"--cap-drop=CAP_{cap}" for cap in DEFAULT_CAPABILITIES]
        return bed.ctr("run", *flags, image["name"], f"nj-{uuid.uuid4().hex[:8]}", *args, check=False, timeout=120)

    probe = run("/bin/sh", "-c", "id -u; id -g; grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status; touch /x || echo ro")
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.split()
    assert lines[:2] == ["65532", "65532"]
    caps = dict(zip(lines[2:8:2], lines[3:8:2], strict=True))
    assert caps == {"CapPrm:": "0000000000000000", "CapEff:": "0000000000000000", "CapBnd:": "0000000000000000"}
    assert probe.stdout.rstrip().endswith("ro")

    help_text = run("/opt/node-janitor/bin/node-janitor", "--help")
    assert help_text.returncode == 0 and "prune" in help_text.stdout, help_text.stderr
    crds = run("/opt/node-janitor/bin/node-janitor", "crd")
    assert crds.returncode == 0 and crds.stdout == (
        REPO / "crds" / "nodejanitor.io_cleanuppolicies.yaml"
    ).read_text() + ("---\n" + (REPO / "crds" / "nodejanitor.io_nodecleanups.yaml").read_text())
    imports = run(
        "/opt/node-janitor/bin/python", "-c", "import kopf, kubernetes, grpc, prometheus_client, node_janitor.cli"
    )
    assert imports.returncode == 0, imports.stderr
