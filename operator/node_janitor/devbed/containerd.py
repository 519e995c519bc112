"""Start and stop a private containerd on its own root, state and socket.

Which containerd: `NJ_CONTAINERD` (`containerd_binaries`): `2.3` (the default: the newest 2.3 that
hack/build-containerd.sh built into the cache), any other `2.x` the cache holds, `1.6` (Debian's, from PATH), or a
directory holding `containerd`, `ctr` and `containerd-shim-runc-v2`. A built containerd's directory comes first on
its PATH, so that it starts its own shim, never Debian's 1.6 one in /usr/bin (TESTBED.md).

TESTBED.md facts this follows: the CRI plugin needs `restrict_oom_score_adj = true` here; sandboxes run on
the host network (no CNI by default; `cni_bin_dir` gives the CRI plugin the bed's own loopback-only CNI
config, which a kubelet needs to call the node Ready; the machine's /etc/cni is never read); runc state and
shims outlive containerd, so tasks and containers are deleted before containerd stops and leftover shims of
this bed's socket are killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from node_janitor.defaults import DEFAULT_NAMESPACE, DEFAULT_SNAPSHOTTER
from node_janitor.devbed.images import ImageBuilder, OciImage, write_oci_archive
from node_janitor.devbed.service import Service
from node_janitor.node.collect import statvfs_entry
from node_janitor.node.inventory import FileSystemEntry

PAUSE_IMAGE = "registry.k8s.io/pause:3.6"

CONTAINERD_ENV = "NJ_CONTAINERD"
DEFAULT_CONTAINERD = "2.3"
SYSTEM_CONTAINERD = "1.6"  # Debian 12's package: the oldest containerd node-janitor supports
_BINARIES = ("containerd", "ctr", "containerd-shim-runc-v2")


class DevbedError(RuntimeError):
    """The private containerd could not be set up; the message says which step failed."""


def _run(*cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise DevbedError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def build_cache_dir() -> Path:
    """Where hack/build-containerd.sh and hack/build-k8s.sh put their binaries (the scripts' rule)."""
    if "NODE_JANITOR_CACHE" in os.environ:
        return Path(os.environ["NODE_JANITOR_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "node-janitor"


@dataclass(frozen=True)
class ContainerdBinaries:
    """One containerd's binaries: `bin_dir` holds containerd, ctr and containerd-shim-runc-v2, or is None for
    the system's (found on PATH). `version` is what was selected (`1.6`) or built (`2.3.7`)."""

    version: str
    bin_dir: Path | None

    def path(self, name: str) -> str:
        return str(self.bin_dir / name) if self.bin_dir else name

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def env(self) -> dict[str, str]:
        """containerd's environment: its own directory first on PATH (the shim it starts is found there)."""
        env = dict(os.environ)
        if self.bin_dir:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
        return env


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def containerd_binaries(selection: str | None = None) -> ContainerdBinaries:
    """The containerd a bed runs: `selection`, else `$NJ_CONTAINERD`, else the newest built 2.3."""
    selection = (selection or os.environ.get(CONTAINERD_ENV) or DEFAULT_CONTAINERD).strip()
    if selection == SYSTEM_CONTAINERD:
        return ContainerdBinaries(SYSTEM_CONTAINERD, None)
    if "/" in selection:
        bin_dir = Path(selection)
        missing = [b for b in _BINARIES if not os.access(bin_dir / b, os.X_OK)]
        if missing:
            raise DevbedError(f"{CONTAINERD_ENV}={selection}: no {', '.join(missing)} there")
        return ContainerdBinaries(bin_dir.name.removeprefix("containerd-v") or selection, bin_dir)
    cache = build_cache_dir()
    built = {
        version: d
        for d in cache.glob("containerd-v*")
        if (version := d.name.removeprefix("containerd-v")) == selection or version.startswith(f"{selection}.")
        if all(os.access(d / b, os.X_OK) for b in _BINARIES)
    }
    if not built:
        raise DevbedError(
            f"containerd {selection} is not built in {cache}: run hack/build-containerd.sh "
            f"(or set {CONTAINERD_ENV}={SYSTEM_CONTAINERD} for Debian's containerd)"
        )
    newest = max(built, key=_version_key)
    return ContainerdBinaries(newest, built[newest])


class ContainerdBed(Service):
    """A disposable containerd. Use as a context manager; everything lives under `base`.

    With `disk_size`, containerd's root and the pod log directory sit on a loop-mounted ext4 file system of
    that many bytes (`self.disk`; `disk_inodes` sets its inode count), so that disk fullness is real.

    With `cni_bin_dir` (e.g. /usr/lib/cni, Debian's containernetworking-plugins), the CRI plugin loads those
    plugins and a config list with only the `loopback` plugin written to the bed's own `cni_conf_dir`: its
    network is then ready (a kubelet's Node needs that to be Ready) while pods still use the host network.
    Without it (the default) the CRI plugin has no CNI config at all.
    """

    def __init__(
        self,
        base: Path | None = None,
        *,
        disk_size: int | None = None,
        disk_inodes: int | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        sandbox_image: str = PAUSE_IMAGE,
        builder: ImageBuilder | None = None,
        cni_bin_dir: Path | None = None,
        binaries: ContainerdBinaries | None = None,
    ) -> None:
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="nj-containerd-"))
        self.disk_size = disk_size
        self.disk_inodes = disk_inodes
        self.namespace = namespace
        self.sandbox_image = sandbox_image
        self.builder = builder or ImageBuilder()
        self.cni_bin_dir = Path(cni_bin_dir) if cni_bin_dir else None
        self.binaries = binaries or containerd_binaries()
        self.cni_conf_dir = self.base / "cni-conf"
        self.disk = self.base / "disk"
        self.state = self.base / "state"
        self.address = str(self.base / "containerd.sock")
        self.log_path = self.base / "containerd.log"
        self.registry_config_dir = self.base / "certs.d"
        self._proc: subprocess.Popen[bytes] | None = None
        self._mounted = False

    # -- paths on the (optionally loop-mounted) disk ---------------------------------------------------
    @property
    def root(self) -> Path:
        return self.disk / "containerd"

    @property
    def pod_log_dir(self) -> Path:
        return self.disk / "pods"

    def usage(self) -> FileSystemEntry:
        """The bed's disk as the collector measures a node's file systems (statvfs)."""
        return statvfs_entry("disk", str(self.disk))

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        if os.geteuid() != 0:
            raise DevbedError("a private containerd needs root (mounts, runc)")
        path = self.binaries.env()["PATH"]
        for binary in (*_BINARIES, "runc"):
            if shutil.which(binary, path=path) is None:
                raise DevbedError(f"{binary} not found: install Debian's containerd and runc (hack/setup.sh)")
        self.base.mkdir(parents=True, exist_ok=True)
        self.disk.mkdir(exist_ok=True)
        if self.disk_size:
            self._mount_disk()
        self.root.mkdir(exist_ok=True)
        self.pod_log_dir.mkdir(exist_ok=True)
        self.state.mkdir(exist_ok=True)
        self.registry_config_dir.mkdir(exist_ok=True)
        if self.cni_bin_dir:
            self._write_cni_config(self.cni_bin_dir)
        (self.base / "config.toml").write_text(self._config())
        self._spawn()
        self.import_images([self.builder.pause_image(self.sandbox_image)])

    @property
    def pid(self) -> int | None:
        """containerd's process ID while it runs (e.g. to SIGSTOP it)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def kill(self) -> None:
        """SIGKILL containerd, as a crash would: its shims, and so the containers, keep running."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> None:
        """Start containerd again on the same root, state and config (after `kill`, or to restart it)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        self._spawn()

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.binaries.path("containerd"), "--config", str(self.base / "config.toml"), "--log-level", "info"],
                env=self.binaries.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DevbedError(f"containerd exited with {self._proc.returncode}: {self._log_tail()}")
            if Path(self.address).exists() and self.ctr("version", check=False).returncode == 0:
                break
            time.sleep(0.05)
        else:
            raise DevbedError(f"containerd did not answer on {self.address} within 30s: {self._log_tail()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(Exception):
                self._delete_tasks_and_containers()
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._kill_shims()
        self._unmount_below(self.base)
        if self._mounted:
            _run("umount", str(self.disk), check=False)
            if Path(self.disk).is_mount():
                _run("umount", "-l", str(self.disk), check=False)
            self._mounted = False
        shutil.rmtree(self.base, ignore_errors=True)

    # -- images ---------------------------------------------------------------------------------------
    def import_images(self, images: list[OciImage], *, unpack: bool = True, all_platforms: bool = False) -> None:
        """Import images as `ctr images import` does (content + image records, unpacked to overlayfs), then let
        containerd's garbage collection run to its end, so that what follows sees no blob the import left behind:
        `ctr images import` writes the archive's OCI index as a blob of its own (~400 bytes, `gc.ref.content.m.*`
        labels to the manifests) that only its lease holds, and deletes that lease without waiting for the
        collection; until containerd's GC scheduler gets to it (soon, later under load) it is a real orphan that a
        prune rightly plans. Deleting a scratch lease with --sync runs one collection and waits for it."""
        archive = self.base / f"import-{os.getpid()}-{time.monotonic_ns()}.tar"
        write_oci_archive(archive, images)
        try:
            args = ["images", "import", "--snapshotter", DEFAULT_SNAPSHOTTER]
            if not unpack:
                args.append("--no-unpack")
            if all_platforms:
                args.append("--all-platforms")
            self.ctr(*args, str(archive), timeout=300)
        finally:
            archive.unlink(missing_ok=True)
        self.collect_garbage()

    def collect_garbage(self) -> None:
        """Run one garbage collection of containerd's and wait for it (deleting a scratch lease with --sync):
        what an import or a pull left only a lease holding is gone afterwards."""
        lease = f"settle-{uuid.uuid4()}"
        self.ctr("leases", "create", "--id", lease, "--expires", "5m")
        self.ctr("leases", "delete", "--sync", lease)

    def trust_plain_http_registry(self, host: str) -> None:
        """Let CRI pull from `host` (`127.0.0.1:<port>`, a loopback registry) over plain HTTP: a `hosts.toml` in
        the registry config directory, which containerd reads at each pull."""
        hosts = self.registry_config_dir / host
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{host}"\n\n[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n'
        )

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(
            self.binaries.path("ctr"), "--address", self.address, "--namespace", self.namespace, *args,
            check=check, timeout=timeout,
        )  # fmt: skip

    # -- disk -----------------------------------------------------------------------------------------
    def fill(self, *, leave_available: int = 0, name: str = "ballast") -> int:
        """Write a ballast file until only `leave_available` bytes stay available; returns its size."""
        ballast = self.disk / name
        available = self.usage().available
        want = max(0, available - leave_available)
        block = os.urandom(1 << 20)
        written = 0
        # A full disk is the point: ENOSPC on write, flush or close just means it is full.
        with contextlib.suppress(OSError), ballast.open("ab", buffering=0) as f:
            while written < want:
                written += f.write(block[: min(len(block), want - written)])
            os.fsync(f.fileno())
        if leave_available == 0:
            written += self._fill_last_blocks(ballast)
        return written

    def _fill_last_blocks(self, ballast: Path) -> int:
        """Take the blocks a first fill leaves (the file system's own metadata made its estimate short; by how
        much varies: 0 with containerd 1.6 beside it, 2 KiB with 2.3): one block at a time until none is left."""
        written = 0
        for _ in range(64):
            usage = self.usage()
            if usage.available <= 0:
                break
            with contextlib.suppress(OSError), ballast.open("ab", buffering=0) as f:
                while True:
                    written += f.write(b"\0" * usage.block_size)
                    os.fsync(f.fileno())
        return written

    def drain(self, name: str = "ballast") -> None:
        (self.disk / name).unlink(missing_ok=True)

    # -- internals ------------------------------------------------------------------------------------
    def _config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{self.root}"
state = "{self.state}"

[grpc]
  address = "{self.address}"
  max_recv_message_size = 67108864
  max_send_message_size = 67108864

[ttrpc]
  address = "{self.address}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.base / "opt"}"

[{cri}]
  restrict_oom_score_adj = true
  sandbox_image = "{self.sandbox_image}"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false

[{cri}.containerd]
  snapshotter = "{DEFAULT_SNAPSHOTTER}"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.registry]
  config_path = "{self.registry_config_dir}"

[{cri}.cni]
  bin_dir = "{self.cni_bin_dir or self.base / "cni-bin"}"
  conf_dir = "{self.cni_conf_dir}"
"""

    def _write_cni_config(self, bin_dir: Path) -> None:
        if not (bin_dir / "loopback").is_file():
            raise DevbedError(f"no CNI loopback plugin in {bin_dir}: install Debian's containernetworking-plugins")
        self.cni_conf_dir.mkdir(exist_ok=True)
        conflist = {"cniVersion": "0.4.0", "name": "nj-loopback", "plugins": [{"type": "loopback"}]}
        (self.cni_conf_dir / "10-loopback.conflist").write_text(json.dumps(conflist, indent=2) + "\n")

    def _mount_disk(self) -> None:
        image = self.base / "disk.img"
        with image.open("wb") as f:
            f.truncate(self.disk_size or 0)
        # -m 0: no root-reserved blocks, so "available" is what the bed really has.
        inodes = ["-N", str(self.disk_inodes)] if self.disk_inodes else []
        _run("mkfs.ext4", "-q", "-F", "-m", "0", *inodes, "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image))
        _run("mount", "-o", "loop", str(image), str(self.disk))
        self._mounted = True

    def _delete_tasks_and_containers(self) -> None:
        namespaces = [n for n in self.ctr("namespaces", "ls", "-q", timeout=20).stdout.split() if n]
        for ns in namespaces:

            def ctr_ns(*args: str, ns: str = ns) -> subprocess.CompletedProcess[str]:
                ctr = self.binaries.path("ctr")
                return _run(ctr, "--address", self.address, "--namespace", ns, *args, check=False, timeout=30)

            tasks = [line.split()[0] for line in ctr_ns("tasks", "ls").stdout.splitlines()[1:] if line.strip()]
            for task in tasks:
                ctr_ns("tasks", "kill", "--signal", "SIGKILL", task)
            for task in tasks:
                ctr_ns("tasks", "delete", "--force", task)
            for container in ctr_ns("containers", "ls", "-q").stdout.split():
                ctr_ns("containers", "delete", container)

    def shim_pids(self) -> list[int]:
        """The containerd shims started for this bed's socket (still running ones outlive containerd)."""
        pids = []
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                cmdline = (pid_dir / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and b"containerd-shim" in cmdline[0] and self.address.encode() in cmdline:
                pids.append(int(pid_dir.name))
        return pids

    def _kill_shims(self) -> None:
        for pid in self.shim_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _unmount_below(self, path: Path) -> None:
        prefix = str(path.resolve()) + "/"
        with open("/proc/self/mounts") as f:
            points = [line.split()[1].replace("\\040", " ") for line in f]
        for point in sorted((p for p in points if p.startswith(prefix) and p != str(self.disk)), reverse=True):
            if _run("umount", point, check=False).returncode != 0:
                _run("umount", "-l", point, check=False)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
