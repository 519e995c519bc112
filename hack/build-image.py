#!/usr/bin/env python3
"""Builds the node-janitor image without a container engine, with the steps of the Containerfile:

  (1) the wheels: `pip wheel -c constraints.txt .` (the project's and its dependencies'), on this machine's
      Debian 12 Python 3.11, the image's own;
  (2) a slim Debian: `mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates bookworm`,
      merged /usr, without recommended packages, docs, man pages and locales;
  (3) in it, a virtualenv /opt/node-janitor with the project installed from its wheel, offline from (1),
      then pip and setuptools removed from it;
  (4) the non-root user 65532 (`nonroot`) the operator runs as;

then packs the root file system as two OCI layers (Debian, then /opt/node-janitor) with the project's
image builder (node_janitor.devbed.images) into an OCI archive that `ctr images import` takes, with the
Containerfile's ENV, USER and ENTRYPOINT.

The archive is cached under $NODE_JANITOR_CACHE (default ~/.cache/node-janitor)/image/, keyed by the hash
of every input (this script, the Containerfile, pyproject.toml, constraints.txt, README.md and the sources
under operator/): a second build with the same inputs returns at once. A lock keeps concurrent builds from
doing the work twice. Needs root (mmdebstrap's root mode, chroot) and Debian's `mmdebstrap`.

    .venv/bin/python hack/build-image.py            # prints {"archive": ..., "name": ..., "id": ...}
    .venv/bin/python hack/build-image.py --force    # rebuild even if cached
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from node_janitor.devbed.images import ImageBuilder, Layer, write_oci_archive  # noqa: E402

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
VENV = "/opt/node-janitor"
USER = "65532:65532"
ENV = (
    f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONUNBUFFERED=1",
    "PYTHONDONTWRITEBYTECODE=1",
)
ENTRYPOINT = (f"{VENV}/bin/node-janitor",)
CMD = ("--help",)
# Fixed timestamps (file mtimes clamped to it, the image's `created`): equal inputs give equal layers.
SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01
# Left out of the image: documentation, man pages, locales, apt's lists and caches, logs.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
                 "/usr/share/lintian/*")  # fmt: skip
# Kept as directories, emptied: the runtime mounts its own there.
EMPTIED = ("dev", "proc", "sys", "run", "tmp")
INPUTS = ("hack/build-image.py", "Containerfile", "pyproject.toml", "constraints.txt", "README.md")


def cache_dir() -> Path:
    if "NODE_JANITOR_CACHE" in os.environ:
        return Path(os.environ["NODE_JANITOR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "node-janitor"


def project_version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit("build-image: no version in pyproject.toml")


def input_hash() -> str:
    """sha256 over every input's path and content (the sources: every file under operator/node_janitor but
    caches)."""
    digest = hashlib.sha256()
    files = [REPO / name for name in INPUTS]
    files += sorted(
        p for p in (REPO / "operator").rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(repr((SUITE, PACKAGES, DPKG_EXCLUDES, ENV, USER, ENTRYPOINT, CMD)).encode())
    return digest.hexdigest()


def run(*cmd: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise SystemExit(f"build-image: {cmd[0]} failed ({result.returncode}):\n{tail}")


def build_wheels(wheels: Path) -> None:
    """(1) the project's wheel and its dependencies', pinned by constraints.txt."""
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
        "-c", str(REPO / "constraints.txt"), str(REPO))  # fmt: skip


def build_rootfs(rootfs: Path, wheels: Path) -> None:
    """(2)-(4): Debian, the virtualenv from the wheels, the non-root user; apt's leftovers removed."""
    hooks = [
        f'copy-in "{wheels}" /tmp',
        f'chroot "$1" python3 -m venv {VENV}',
        f'chroot "$1" {VENV}/bin/pip install --no-cache-dir --no-index --find-links /tmp/{wheels.name} node-janitor',
        f'chroot "$1" {VENV}/bin/pip uninstall --yes --quiet pip setuptools',
        'chroot "$1" groupadd --system --gid 65532 nonroot',
        'chroot "$1" useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent '
        "--shell /usr/sbin/nologin nonroot",
        'rm -rf "$1"/tmp/* "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/apt "$1"/var/log/dpkg.log',
    ]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    run(
        "mmdebstrap", "--quiet", "--mode=root", "--variant=apt", f"--include={','.join(PACKAGES)}",
        '--aptopt=APT::Install-Recommends "false"',  # apt-get install --no-install-recommends
        # merged /usr as debian:bookworm-slim has it, set up by the hook rather than by usrmerge (and perl)
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
        *(f"--customize-hook={h}" for h in hooks),
        SUITE, str(rootfs), env=env,
    )  # fmt: skip


def pack(rootfs: Path, *, app: bool) -> Layer:
    """One layer of the root file system: everything but the virtualenv (`app=False`) or the virtualenv
    alone, in a fixed order with clamped mtimes, owners by number."""
    venv = VENV.strip("/")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(rootfs):
            name = path.relative_to(rootfs).as_posix()
            in_venv = name == venv or name.startswith(venv + "/")
            if app and not (in_venv or venv.startswith(name + "/")):
                continue
            if not app and in_venv:
                continue
            if name.split("/", 1)[0] in EMPTIED and "/" in name:
                continue
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime = min(int(info.mtime), SOURCE_DATE_EPOCH)
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return Layer.from_tar(buf.getvalue())


def _walk(root: Path) -> Iterator[Path]:
    """Every path below `root` (not itself), parents before children, names sorted; symlinks not followed."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(force: bool = False) -> dict[str, str]:
    key = input_hash()
    name = f"localhost/node-janitor:{project_version()}-{key[:12]}"
    out = cache_dir() / "image"
    archive, meta = out / f"node-janitor-{key[:16]}.tar", out / f"node-janitor-{key[:16]}.json"
    with locked(out / ".lock"):
        if archive.is_file() and meta.is_file() and not force:
            info: dict[str, str] = json.loads(meta.read_text())
            return info
        if os.geteuid() != 0:
            raise SystemExit("build-image: needs root (mmdebstrap --mode=root, chroot)")
        if shutil.which("mmdebstrap") is None:
            raise SystemExit("build-image: mmdebstrap not found: apt-get install mmdebstrap (hack/setup.sh does)")
        with tempfile.TemporaryDirectory(prefix="build-image.", dir=out) as tmp:
            wheels, rootfs = Path(tmp) / "wheels", Path(tmp) / "rootfs"
            build_wheels(wheels)
            build_rootfs(rootfs, wheels)
            image = ImageBuilder().build(
                name, [pack(rootfs, app=False), pack(rootfs, app=True)], cmd=CMD, entrypoint=ENTRYPOINT, env=ENV,
                user=USER, labels={"org.opencontainers.image.title": "node-janitor",
                                   "org.opencontainers.image.version": project_version()},
            )  # fmt: skip
            partial = archive.with_suffix(".partial")
            write_oci_archive(partial, [image])
            partial.replace(archive)
        info = {"archive": str(archive), "name": name, "id": image.id,
                "size": str(sum(len(layer.tar) for layer in image.layers))}  # fmt: skip
        meta.write_text(json.dumps(info, indent=2) + "\n")
        for old in out.glob("node-janitor-*"):  # earlier builds of other inputs
            if old not in (archive, meta):
                old.unlink(missing_ok=True)
        return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache holds this build")
    args = parser.parse_args()
    print(json.dumps(build(force=args.force)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
