"""A real node for tests: kube-scheduler and kubelets, each kubelet on its own private containerd.

    node = kube_node("n1", eviction_pressure_transition_period="5s")   # a Ready, untainted Node
    node.bed.import_images([...]); kube.kubectl("apply", ...)          # pods: hostNetwork, imagePullPolicy Never
    node.wait_for_condition("DiskPressure", "True"); node.events("EvictionThresholdMet")

What runs (TESTBED.md, "A real node", has the measured facts):
- `Scheduler`: one kube-scheduler for the session (fixture `kube_scheduler`), `system:kube-scheduler`.
- `KubeNode`: a `ContainerdBed` on its own loop-mounted ext4 disk whose CRI plugin loads the bed's own
  loopback-only CNI config (never /etc/cni), and a kubelet for it: authenticated as `system:node:<name>` (the
  apiserver runs the Node authorizer and NodeRestriction), configured by a KubeletConfiguration file
  (`KubeletSettings`), serving on 127.0.0.1 only, registering the Node `name`.
- The kubelet's `--root-dir` is on the bed's disk (`bed.disk/kubelet`), beside containerd's root and the pod
  log dir: nodefs and imagefs are that one disk, as on a node with one disk, so the kubelet's disk signals
  measure the bed, never the host's disk (which may be fuller than its thresholds).
- The not-ready taint is lifted by the node-lifecycle controller of the session's kube-controller-manager
  (tests need no tolerations): `start()` waits for Ready *and* the taint gone.
- The kubelet runs in its own mount namespace so that it changes nothing on the machine: the kernel
  settings it would otherwise write (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops...) are
  files of the node's directory bind-mounted over /proc/sys in that namespace, and /var/log (where it
  makes /var/log/containers symlinks) is a directory of the node. The bed's disk is made a shared mount so
  the volumes the kubelet mounts there (ServiceAccount tokens) reach containerd. `makeIPTablesUtilChains:
  false` keeps it off the machine's iptables.
- Teardown (`close()`): kubelet stopped, the Node, its Lease and the pods bound to it deleted, every
  sandbox and container removed through CRI, the kubelet's mounts unmounted, the bed stopped; then
  `leftovers()` must be empty (no process, mount, shim or runc state left), else the fixture fails.

A test package uses these with, in its conftest.py, `from support.kube import kube` and `from support.node
import kube_node, kube_scheduler` (`image_builder` comes from tests/conftest.py); see tests/kube/test_node.py.

Pods in tests: `hostNetwork: true`, images imported into the bed under their full names (`docker.io/...`:
CRI looks them up so) with `imagePullPolicy: Never`, and, to talk to the API, `apiserver_env(kube)` in the
container's env (the Service IP is routed by nothing here; the ServiceAccount's ca.crt verifies the apiserver
on 127.0.0.1). A node agent's pod reaches the bed with hostPaths of the same paths: `node.bed.address` (the
CRI socket, type Socket), `node.bed.disk`, `node.bed.pod_log_dir`. Read container logs from
`node.bed.pod_log_dir` (never kubectl logs/exec/port-forward: they go to the node's IP, the machine's own address).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from node_janitor.devbed import ContainerdBed, ImageBuilder
from node_janitor.runtime.cri import CriClient

from .kube import (
    Binaries,
    ControlPlane,
    ControlPlaneError,
    Process,
    find_binaries,
    free_ports,
    http_ok,
    spawn,
    terminate,
    wait_until,
)

__all__ = [
    "CNI_BIN_DIR",
    "DEFAULT_EVICTION_HARD",
    "KubeNode",
    "KubeletEvent",
    "KubeletSettings",
    "NodeCondition",
    "NodeFactory",
    "Scheduler",
    "apiserver_env",
    "kube_node",
    "kube_scheduler",
]

CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
DEFAULT_DISK_SIZE = 512 << 20
DEFAULT_EVICTION_HARD: Mapping[str, str] = {
    # the kubelet's own defaults (pkg/kubelet/eviction/defaults_linux.go)
    "memory.available": "100Mi",
    "nodefs.available": "10%",
    "nodefs.inodesFree": "5%",
    "imagefs.available": "15%",
    "imagefs.inodesFree": "5%",
}
_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
            "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")  # fmt: skip  # setupKernelTunables writes these
_NOT_READY_TAINT = "node.kubernetes.io/not-ready"
_RUNC_STATE = Path("/run/containerd/runc")
T = TypeVar("T")


def apiserver_env(kube: ControlPlane) -> list[dict[str, str]]:
    """Container env that points in-cluster clients at the apiserver's loopback address (overrides the
    injected Service IP, which nothing routes here)."""
    url = urlparse(kube.server)
    return [
        {"name": "KUBERNETES_SERVICE_HOST", "value": str(url.hostname)},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(url.port)},
    ]


# --- kube-scheduler -------------------------------------------------------------------------------------


@dataclass(eq=False)
class Scheduler:
    """kube-scheduler for the control plane `kube` (`system:kube-scheduler`, serving /healthz on loopback)."""

    kube: ControlPlane
    binaries: Binaries
    workdir: Path
    startup_timeout: float = 60.0
    process: Process | None = field(init=False, default=None)
    startup_seconds: float = field(init=False, default=0.0)

    def start(self) -> None:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.kube.client_kubeconfig("scheduler", "/CN=system:kube-scheduler")
        cert, key = self.kube.serving_cert("scheduler-serving", "/CN=kube-scheduler")
        (port,) = free_ports(1)
        self.process = spawn("kube-scheduler", [
            str(self.binaries.kube_scheduler), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", f"--tls-cert-file={cert}",
            f"--tls-private-key-file={key}", "--leader-elect=false", "--profiling=false",
        ], self.workdir / "kube-scheduler.log", self.workdir)  # fmt: skip
        context = ssl.create_default_context(cafile=str(self.kube.ca_file))
        try:
            wait_until(self.process, lambda: http_ok(f"https://127.0.0.1:{port}/healthz", context), "healthy",
                       self.startup_timeout)  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process.process)
            self.process.log_file.close()
            self.process = None

    def rss_bytes(self) -> int:
        return self.process.rss_bytes() if self.process else 0


# --- kubelet --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeletSettings:
    """What a test may set of the kubelet's configuration; the defaults are the kubelet's own, except a short
    `node_status_update_frequency`."""

    eviction_hard: Mapping[str, str] = field(default_factory=dict)
    """Merged over DEFAULT_EVICTION_HARD (the kubelet's defaults), e.g. {"imagefs.available": "30%"}."""
    eviction_pressure_transition_period: str = "5m"
    image_gc_high_threshold_percent: int = 85
    image_gc_low_threshold_percent: int = 80
    image_minimum_gc_age: str = "2m"
    node_status_update_frequency: str = "1s"
    labels: Mapping[str, str] = field(default_factory=dict)
    """Node labels (`--node-labels`; NodeRestriction refuses most kubernetes.io/k8s.io ones)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Further KubeletConfiguration fields, applied last."""

    def configuration(self, bed: ContainerdBed, port: int, healthz_port: int) -> dict[str, Any]:
        """The KubeletConfiguration (kubelet.config.k8s.io/v1beta1) for a kubelet on `bed`."""
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            # this machine is on cgroup v1, which kubelets from 1.35 refuse by default (the field exists since 1.31)
            "failCgroupV1": False,
            "makeIPTablesUtilChains": False,
            "containerRuntimeEndpoint": f"unix://{bed.address}",
            "podLogsDir": str(bed.pod_log_dir),
            "nodeStatusUpdateFrequency": self.node_status_update_frequency,
            "evictionHard": {**DEFAULT_EVICTION_HARD, **self.eviction_hard},
            "evictionPressureTransitionPeriod": self.eviction_pressure_transition_period,
            "imageGCHighThresholdPercent": self.image_gc_high_threshold_percent,
            "imageGCLowThresholdPercent": self.image_gc_low_threshold_percent,
            "imageMinimumGCAge": self.image_minimum_gc_age,
            **self.extra,
        }


@dataclass(frozen=True)
class NodeCondition:
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime | None


@dataclass(frozen=True)
class KubeletEvent:
    """An Event the kubelet recorded (source.component kubelet, source.host the node)."""

    reason: str
    message: str
    type: str
    object_kind: str
    object_name: str
    namespace: str
    count: int
    last_seen: datetime | None


@dataclass(eq=False)
class KubeNode:
    """A kubelet registering Node `name` on its own containerd bed; `start()` returns once the Node is Ready
    and untainted, `close()` leaves nothing behind."""

    kube: ControlPlane
    binaries: Binaries
    name: str
    workdir: Path
    builder: ImageBuilder
    disk_size: int = DEFAULT_DISK_SIZE
    settings: KubeletSettings = field(default_factory=KubeletSettings)
    startup_timeout: float = 90.0

    bed: ContainerdBed = field(init=False)
    root_dir: Path = field(init=False)
    """The kubelet's --root-dir, on the bed's disk."""
    config_path: Path = field(init=False)
    log_path: Path = field(init=False)
    """The kubelet's log (all its starts appended)."""
    startup_seconds: float = field(init=False, default=0.0)
    """How long the last `start_kubelet()` took, up to a Ready, untainted Node."""
    port: int = field(init=False, default=0)
    """The kubelet's API port on 127.0.0.1 (HTTPS, its self-signed certificate, anonymous allowed)."""
    _process: Process | None = field(init=False, default=None)
    _kubeconfig: Path = field(init=False)
    _container_ids: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        if not self.disk_size:
            raise ValueError("a test node needs its own disk (disk_size): the kubelet measures nodefs on it")
        self.workdir = Path(self.workdir)
        self.bed = ContainerdBed(self.workdir / "bed", disk_size=self.disk_size, builder=self.builder,
                                 cni_bin_dir=CNI_BIN_DIR)  # fmt: skip
        self.root_dir = self.bed.disk / "kubelet"
        self.config_path = self.workdir / "kubelet.yaml"
        self.log_path = self.workdir / "kubelet.log"

    # lifecycle

    def start(self) -> None:
        """Starts the bed and the kubelet; on failure tears down what was started and raises."""
        try:
            self.bed.start()
            self._kubeconfig = self.kube.node_kubeconfig(self.name)
            # kubelet's volume mounts (made in its own mount namespace) must reach containerd's
            subprocess.run(["mount", "--make-shared", str(self.bed.disk)], check=True, capture_output=True)
            self.start_kubelet()
        except BaseException:
            self.close()
            raise

    def start_kubelet(self, *, wait: bool = True) -> None:
        """Starts the kubelet (again, after `stop_kubelet()`: same root dir, same pods); with `wait`, returns
        once the Node is Ready and without the not-ready taint."""
        if self.kubelet_running:
            raise ControlPlaneError(f"kubelet of {self.name} already runs")
        started, started_wall = time.monotonic(), time.time()
        self.port, healthz_port = free_ports(2)
        config = self.settings.configuration(self.bed, self.port, healthz_port)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.root_dir.mkdir(exist_ok=True)
        namespace_dir = self._namespace_files()
        labels = ",".join(f"{k}={v}" for k, v in self.settings.labels.items())
        kubelet = [
            str(self.binaries.kubelet), f"--config={self.config_path}", f"--kubeconfig={self._kubeconfig}",
            f"--root-dir={self.root_dir}", f"--cert-dir={self.root_dir / 'pki'}",
            f"--hostname-override={self.name}", "--v=2", *([f"--node-labels={labels}"] if labels else []),
        ]  # fmt: skip
        binds = [f"mount --bind {namespace_dir / 'sysctl' / s.replace('/', '.')} /proc/sys/{s}" for s in _SYSCTLS]
        binds.append(f"mount --bind {namespace_dir / 'var-log'} /var/log")
        script = "set -e; " + "; ".join(binds) + '; exec "$@"'
        self._process = spawn(
            "kubelet", ["unshare", "--mount", "--propagation", "unchanged", "--", "/bin/sh", "-c", script, "sh",
                        *kubelet], self.log_path, self.workdir,
        )  # fmt: skip
        if wait:
            healthz = f"http://127.0.0.1:{healthz_port}/healthz"
            wait_until(self._process, lambda: http_ok(healthz), "healthy", self.startup_timeout)
            wait_until(self._process, lambda: self._ready_and_untainted(started_wall), "a Ready, untainted Node",
                       self.startup_timeout)  # fmt: skip
        self.startup_seconds = time.monotonic() - started

    def stop_kubelet(self) -> None:
        """Stops the kubelet (SIGTERM, then SIGKILL after 10 s); its pods' containers keep running."""
        if self._process is not None:
            terminate(self._process.process)
            self._process.log_file.close()
            self._process = None

    @property
    def kubelet_running(self) -> bool:
        return self._process is not None and self._process.process.poll() is None

    @property
    def kubelet_pid(self) -> int | None:
        return self._process.process.pid if self.kubelet_running and self._process else None

    def close(self) -> None:
        """Stops the kubelet, deletes the Node, its Lease and its pods, removes every sandbox and container
        through CRI, unmounts the kubelet's mounts and stops the bed."""
        self.stop_kubelet()
        core = client.CoreV1Api(self.kube.api_client)
        with contextlib.suppress(ApiException):
            core.delete_node(self.name)
        with contextlib.suppress(ApiException):
            client.CoordinationV1Api(self.kube.api_client).delete_namespaced_lease(self.name, "kube-node-lease")
        with contextlib.suppress(ApiException):
            for pod in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.name}").items:
                with contextlib.suppress(ApiException):
                    core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        if Path(self.bed.address).exists():
            self._containers()
            with contextlib.suppress(Exception):
                _in_thread(self._remove_sandboxes)
        _unmount_below(self.root_dir)
        self.bed.stop()

    def leftovers(self) -> list[str]:
        """What `close()` failed to remove: a live kubelet, mounts under the node's directory, shims of its
        bed, runc state of its containers, the Node object."""
        found = []
        if self.kubelet_running:
            found.append(f"kubelet pid {self.kubelet_pid}")
        prefix = str(self.workdir.resolve()) + "/"
        found += [f"mount {m}" for m in _mount_points() if m.startswith(prefix)]
        found += [f"shim pid {pid}" for pid in self.bed.shim_pids()]
        found += [f"runc state {p}" for p in _RUNC_STATE.glob("*/*") if p.name in self._containers()]
        with contextlib.suppress(ApiException):
            client.CoreV1Api(self.kube.api_client).read_node(self.name)
            found.append(f"Node {self.name}")
        return found

    # what tests read

    def node(self) -> Any:
        """The Node object (kubernetes.client.V1Node), read from the apiserver."""
        return client.CoreV1Api(self.kube.api_client).read_node(self.name)

    def conditions(self) -> dict[str, NodeCondition]:
        """The Node's conditions by type (Ready, DiskPressure, MemoryPressure, PIDPressure), from the apiserver."""
        return {
            c.type: NodeCondition(c.type, c.status, c.reason or "", c.message or "", c.last_transition_time)
            for c in (self.node().status.conditions or [])
        }

    def taints(self) -> dict[str, str]:
        """The Node's taints: key -> effect."""
        return {t.key: t.effect for t in (self.node().spec.taints or [])}

    def wait_for_condition(self, type: str, status: str, timeout: float = 90.0) -> NodeCondition:
        """Waits until the Node's condition `type` has `status` ("True"/"False"); returns it."""
        return _wait_for(lambda: _matching(self.conditions().get(type), status),
                         f"Node {self.name} condition {type}={status}", timeout, self.log_tail)  # fmt: skip

    def events(self, reason: str | None = None) -> list[KubeletEvent]:
        """The Events this node's kubelet recorded (about the Node and its pods), oldest first, optionally of
        one `reason` (EvictionThresholdMet, FreeDiskSpaceFailed, ImageGCFailed, NodeHasDiskPressure...)."""
        selector = "source=kubelet" + (f",reason={reason}" if reason else "")
        listed = client.CoreV1Api(self.kube.api_client).list_event_for_all_namespaces(field_selector=selector)
        events = [_event(e) for e in listed.items if e.source is not None and e.source.host == self.name]
        return sorted(events, key=lambda e: e.last_seen.timestamp() if e.last_seen else 0.0)

    def wait_for_event(self, reason: str, timeout: float = 90.0) -> KubeletEvent:
        """Waits until the kubelet recorded an Event of `reason`; returns the latest."""
        return _wait_for(lambda: (self.events(reason) or [None])[-1], f"kubelet event {reason} on {self.name}",
                         timeout, self.log_tail)  # fmt: skip

    def configz(self) -> dict[str, Any]:
        """The configuration the running kubelet uses (its /configz on 127.0.0.1, never through the apiserver),
        the KubeletConfiguration as it parsed and defaulted it."""
        context = ssl.create_default_context(cafile=str(self.root_dir / "pki" / "kubelet.crt"))
        context.check_hostname = False  # its self-signed certificate names the node, not 127.0.0.1
        with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/configz", timeout=10, context=context) as r:
            return dict(json.load(r)["kubeletconfig"])

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no kubelet log)"

    def rss_bytes(self) -> int:
        """The kubelet's resident memory (0 when stopped)."""
        return self._process.rss_bytes() if self.kubelet_running and self._process else 0

    # internals

    def _ready_and_untainted(self, since: float) -> bool:
        """Ready with a heartbeat from this kubelet (at or after `since`, a wall-clock time: a restarted
        kubelet's Node is still Ready from before), and no not-ready taint."""
        try:
            node = self.node()
        except ApiException:
            return False
        ready = any(
            c.type == "Ready" and c.status == "True" and c.last_heartbeat_time.timestamp() >= int(since)
            for c in (node.status.conditions or [])
        )
        return ready and not any(t.key == _NOT_READY_TAINT for t in (node.spec.taints or []))

    def _namespace_files(self) -> Path:
        """The files the kubelet's mount namespace puts over /proc/sys/... (seeded with the machine's values)
        and over /var/log."""
        directory = self.workdir / "kubelet-namespace"
        (directory / "sysctl").mkdir(parents=True, exist_ok=True)
        (directory / "var-log").mkdir(exist_ok=True)
        for name in _SYSCTLS:
            fake = directory / "sysctl" / name.replace("/", ".")
            if not fake.exists():
                fake.write_text(Path("/proc/sys", name).read_text())
        return directory

    def _containers(self) -> set[str]:
        """The ids of every container the bed ever had that this object saw (runc state is kept by id)."""
        if Path(self.bed.address).exists():
            listed = self.bed.ctr("containers", "ls", "-q", check=False, timeout=30).stdout.split()
            self._container_ids.update(listed)
        return self._container_ids

    async def _remove_sandboxes(self) -> None:
        async with CriClient(self.bed.address, timeout=30) as cri:
            for sandbox in await cri.list_pod_sandboxes():
                await cri.stop_pod_sandbox(sandbox.id, missing_ok=True)
                await cri.remove_pod_sandbox(sandbox.id, missing_ok=True)


def _event(e: Any) -> KubeletEvent:
    return KubeletEvent(
        reason=e.reason or "",
        message=e.message or "",
        type=e.type or "",
        object_kind=e.involved_object.kind or "",
        object_name=e.involved_object.name or "",
        namespace=e.metadata.namespace or "",
        count=e.count or 1,
        last_seen=e.last_timestamp or e.event_time or e.metadata.creation_timestamp,
    )


def _matching(condition: NodeCondition | None, status: str) -> NodeCondition | None:
    return condition if condition is not None and condition.status == status else None


def _wait_for(probe: Callable[[], T | None], what: str, timeout: float, log_tail: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ApiException):
            if (value := probe()) is not None:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f}s; kubelet log ends with:\n{log_tail()}")
        time.sleep(0.5)


def _in_thread(coroutine: Callable[[], Any]) -> None:
    """Runs an async function to completion on a fresh event loop (tests may hold a running one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(coroutine())).result(timeout=120)


def _mount_points() -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1].replace("\\040", " ") for line in f]


def _unmount_below(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    for point in sorted((p for p in _mount_points() if p.startswith(prefix)), reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


# --- pytest -----------------------------------------------------------------------------------------


class NodeFactory:
    """`kube_node(name=None, *, disk_size=512 MiB, **KubeletSettings fields)`: a started KubeNode, closed (and
    checked for leftovers) after the test."""

    _counter = itertools.count(1)

    def __init__(self, kube: ControlPlane, binaries: Binaries, workdir: Path, builder: ImageBuilder) -> None:
        self._kube, self._binaries, self._workdir, self._builder = kube, binaries, workdir, builder
        self.nodes: list[KubeNode] = []

    def __call__(self, name: str | None = None, *, disk_size: int = DEFAULT_DISK_SIZE, **settings: Any) -> KubeNode:
        name = name or f"node-{next(self._counter)}"
        node = KubeNode(self._kube, self._binaries, name, self._workdir / name, self._builder, disk_size=disk_size,
                        settings=KubeletSettings(**settings))  # fmt: skip
        node.start()
        self.nodes.append(node)
        return node

    def close(self) -> list[str]:
        """Closes every node; returns what was left behind."""
        leftovers = []
        for node in reversed(self.nodes):
            try:
                node.close()
            except Exception as error:  # the other nodes must still be closed
                leftovers.append(f"{node.name}: close failed: {error!r}")
            leftovers += [f"{node.name}: {item}" for item in node.leftovers()]
        self.nodes.clear()
        return leftovers


@pytest.fixture(scope="session")
def kube_scheduler(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduler]:
    """kube-scheduler for the session's control plane."""
    scheduler = Scheduler(kube, find_binaries(), tmp_path_factory.mktemp("scheduler"))
    scheduler.start()
    yield scheduler
    scheduler.stop()


@pytest.fixture
def kube_node(
    kube: ControlPlane,
    kube_scheduler: Scheduler,
    image_builder: ImageBuilder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[NodeFactory]:
    """A factory of Ready nodes (kubelet + own containerd bed); all are torn down after the test, and the test
    fails if anything (process, mount, shim, runc state, Node) is left behind."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("a kubelet test node needs root and util-linux's unshare")
    factory = NodeFactory(kube, find_binaries(), tmp_path_factory.mktemp("nodes"), image_builder)
    try:
        yield factory
    finally:
        leftovers = factory.close()
    assert not leftovers, f"test nodes left behind: {leftovers}"
