"""A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager on loopback.

    with ControlPlane(workdir, find_binaries()) as kube:
        kube.kubectl("get", "namespaces")
        CoreV1Api(kube.api_client).list_node()

- The binaries come from `hack/build-k8s.sh` (cached in ~/.cache/node-janitor/<component>-<version>/);
  `find_binaries()` runs that script when one is missing. The Kubernetes release is chosen by the env var
  `NJ_KUBE` (`1.32`, `1.37`: a wrapper module hack/k8s-<release>; unset: the newest); etcd and helm are the
  same for every release.
- Certificates are generated with the `openssl` CLI into the work directory: a CA, the apiserver's serving
  certificate, client certificates for an admin (system:masters) and the controller manager, and a
  service-account signing key (so ServiceAccount tokens work). Authorization is RBAC; the admin kubeconfig
  verifies the apiserver's certificate.
- Authorization is Node,RBAC with the NodeRestriction admission plugin, as kubeadm sets it up: a kubelet
  (tests/support/node.py) authenticates as `system:node:<name>` with `node_kubeconfig(name)`.
- Every process runs in its own session with a parent-death signal (setpriv --pdeathsig KILL), and `stop()`
  (also run when `start()` fails, and at interpreter exit) terminates them and waits: no process outlives
  the test session, even when it is killed.
- `kube` is a session-scoped pytest fixture; a conftest re-exports it with `from support.kube import kube`
  (and `crds`, our CRDs applied again and Established).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from node_janitor.devbed.containerd import build_cache_dir

from .procstat import rss_bytes

__all__ = [
    "CRD_NAMES",
    "REPO",
    "Binaries",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "Process",
    "cache_dir",
    "crds",
    "find_binaries",
    "free_ports",
    "http_ok",
    "kube",
    "kube_release",
    "kube_releases",
    "spawn",
    "terminate",
    "wait_until",
]

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "build-k8s.sh"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service: the first address of SERVICE_CIDR


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (the message holds the failing component's log tail)."""


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"kubectl {' '.join(args)} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )


# --- binaries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    helm: Path
    kube_scheduler: Path
    kubelet: Path
    helm4: Path
    actionlint: Path
    kubernetes_version: str
    """The release the Kubernetes binaries are of, as hack/k8s-<release>/go.mod pins it (e.g. `v1.37.2`)."""

    @property
    def kubernetes_minor(self) -> int:
        return int(self.kubernetes_version.removeprefix("v").split(".")[1])

    def missing(self) -> list[Path]:
        every = (self.etcd, self.kube_apiserver, self.kube_controller_manager, self.helm, self.kube_scheduler,
                 self.kubelet, self.helm4, self.actionlint)  # fmt: skip
        return [p for p in every if not _is_exe(p)]


cache_dir = build_cache_dir
"""Where hack/build-k8s.sh puts the binaries (hack/lib/build.sh's rule, as the container beds read it)."""


def _module_version(module_dir: str, module: str) -> str:
    """The version the wrapper module hack/<module_dir> requires of `module` (as build-k8s.sh reads it)."""
    text = (REPO / "hack" / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
    if match is None:
        raise ControlPlaneError(f"{module} not found in hack/{module_dir}/go.mod")
    return match.group(1)


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


def kube_releases() -> list[str]:
    """The Kubernetes releases the test bed can run, oldest first: one per wrapper module hack/k8s-<release>."""
    found = [p.name.removeprefix("k8s-") for p in (REPO / "hack").glob("k8s-*") if (p / "go.mod").is_file()]
    return sorted(found, key=_release_key)


def kube_release() -> str:
    """The Kubernetes release the tests run (`1.32`, `1.37`...): env `NJ_KUBE`, else the newest."""
    releases = kube_releases()
    chosen = os.environ.get("NJ_KUBE", "").strip() or releases[-1]
    if chosen not in releases:
        raise ControlPlaneError(f"NJ_KUBE={chosen!r}: no such release in hack/k8s-*; known: {', '.join(releases)}")
    return chosen


def find_binaries(build: bool = True) -> Binaries:
    """The cached binaries of the chosen release (`kube_release()`); runs hack/build-k8s.sh first if any is
    missing (minutes on a cold machine)."""
    root = cache_dir()
    k8s = _module_version(f"k8s-{kube_release()}", "k8s.io/kubernetes")
    etcd = _module_version("etcd", "go.etcd.io/etcd/server/v3")
    helm = _module_version("helm", "helm.sh/helm/v3")
    helm4 = _module_version("helm4", "helm.sh/helm/v4")
    actionlint = _module_version("actionlint", "github.com/rhysd/actionlint")
    binaries = Binaries(
        etcd=root / f"etcd-{etcd}" / "etcd",
        kube_apiserver=root / f"kube-apiserver-{k8s}" / "kube-apiserver",
        kube_controller_manager=root / f"kube-controller-manager-{k8s}" / "kube-controller-manager",
        helm=root / f"helm-{helm}" / "helm",
        kube_scheduler=root / f"kube-scheduler-{k8s}" / "kube-scheduler",
        kubelet=root / f"kubelet-{k8s}" / "kubelet",
        helm4=root / f"helm-{helm4}" / "helm",
        actionlint=root / f"actionlint-{actionlint}" / "actionlint",
        kubernetes_version=k8s,
    )
    if binaries.missing() and build:
        subprocess.run([str(BUILD_SCRIPT)], check=True)
    if missing := binaries.missing():
        raise ControlPlaneError(f"missing binaries {[str(p) for p in missing]}; run hack/build-k8s.sh")
    return binaries


def _is_exe(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


# --- certificates (openssl CLI) ------------------------------------------------------------------------

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {usages}
authorityKeyIdentifier = keyid
{san}
"""


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def _new_key_args(key: str) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key]


@dataclass(frozen=True)
class _Pki:
    """The test bed's certificates and keys, all files in one directory."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def create(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        (d / "openssl.cnf").write_text(_OPENSSL_CONFIG.format(usages="serverAuth", san=""))
        _openssl(
            "req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", *_new_key_args("ca.key"),
            "-subj", "/CN=node-janitor-test-ca", "-days", "30", "-out", "ca.crt", cwd=d,
        )  # fmt: skip
        sans = ["IP:127.0.0.1", f"IP:{SERVICE_IP}", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"]  # fmt: skip
        self.leaf("apiserver", "/CN=kube-apiserver", "serverAuth", sans)
        self.leaf("controller-manager-serving", "/CN=kube-controller-manager", "serverAuth", ["IP:127.0.0.1"])
        self.leaf("admin", "/O=system:masters/CN=kubernetes-admin", "clientAuth")
        self.leaf("controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key", cwd=d)
        _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
        for key in d.glob("*.key"):
            key.chmod(0o600)

    def leaf(self, name: str, subject: str, usage: str, sans: Sequence[str] = ()) -> None:
        d = self.directory
        san = f"subjectAltName = {', '.join(sans)}" if sans else ""
        (d / f"{name}.cnf").write_text(_OPENSSL_CONFIG.format(usages=usage, san=san))
        _openssl("req", "-new", "-config", f"{name}.cnf", *_new_key_args(f"{name}.key"), "-subj", subject,
                 "-out", f"{name}.csr", cwd=d)  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(secrets.randbits(63)), "-days", "30", "-extfile", f"{name}.cnf",
            "-extensions", "leaf", "-out", f"{name}.crt", cwd=d,
        )  # fmt: skip
        (d / f"{name}.key").chmod(0o600)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _kubeconfig(server: str, pki: _Pki, user: str, client: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "node-janitor-test", "cluster": {"server": server,
                                                          "certificate-authority-data": _b64(pki.path("ca.crt"))}}
            ],
            "users": [
                {"name": user, "user": {"client-certificate-data": _b64(pki.path(f"{client}.crt")),
                                        "client-key-data": _b64(pki.path(f"{client}.key"))}}
            ],
            "contexts": [{"name": user, "context": {"cluster": "node-janitor-test", "user": user}}],
            "current-context": user,
        },
        sort_keys=False,
    )  # fmt: skip


# --- processes ------------------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports nobody listens on (held open together, so they cannot repeat)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@dataclass
class Process:
    """A test bed process (its own session, killed with its parent) and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def log_tail(self, lines: int = 40) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def rss_bytes(self) -> int:
        return rss_bytes(self.process.pid)


_PDEATHSIG = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


def spawn(
    name: str, command: Sequence[str], log_path: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> Process:
    """Starts `command` in its own session, killed when this interpreter dies (setpriv --pdeathsig KILL), its
    output appended to `log_path`; `env`: its environment (this process's by default)."""
    log_file = log_path.open("ab")
    try:
        process = subprocess.Popen(
            [*_PDEATHSIG, *command],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd,
            env=None if env is None else dict(env),
        )  # fmt: skip
    except BaseException:
        log_file.close()
        raise
    return Process(name, process, log_path, log_file)


def wait_until(process: Process, ready: Callable[[], bool], what: str, timeout: float) -> None:
    """Polls `ready()` until true; raises ControlPlaneError with the process's log tail if it exits first or
    `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if process.process.poll() is not None:
            raise ControlPlaneError(
                f"{process.name} exited with {process.process.returncode} before it was {what}; "
                f"its log ({process.log_path}) ends with:\n{process.log_tail()}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"{process.name} not {what} after {timeout:.0f}s; "
                f"its log ({process.log_path}) ends with:\n{process.log_tail()}"
            )
        time.sleep(0.05)


@dataclass(eq=False)
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, started by `start()` (or `with`)."""

    workdir: Path
    binaries: Binaries
    wait_for_controllers: bool = True
    """Also wait until kube-controller-manager has run its controllers once (the `default` ServiceAccount
    exists), so tests never race it."""
    startup_timeout: float = 60.0
    extra_apiserver_args: Sequence[str] = ()
    extra_controller_manager_args: Sequence[str] = ()
    """E.g. `--controllers=*,-node-lifecycle-controller` (a benchmark with kubelet-less Nodes)."""
    manifests: Sequence[Path] = ()
    """Files or directories `kubectl apply`d once the apiserver is ready and before the controller manager
    starts, e.g. CRDs: its garbage collector then knows them at once instead of after its 30 s rediscovery."""

    kubeconfig: Path = field(init=False)
    """The admin's kubeconfig (system:masters; verifies the apiserver's certificate)."""
    server: str = field(init=False, default="")
    """https://127.0.0.1:<port>"""
    startup_seconds: float = field(init=False, default=0.0)
    """How long `start()` took, up to a ready control plane."""
    timings: dict[str, float] = field(init=False, default_factory=dict)
    """Seconds from the start of `start()` to the end of each step: certs, etcd, apiserver, manifests,
    controller-manager-healthy, controller-manager (its controllers running)."""
    _components: list[Process] = field(init=False, default_factory=list)
    _pki: _Pki = field(init=False)
    _api_client: Any = field(init=False, default=None)
    _apiserver_command: Sequence[str] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self._pki = _Pki(self.workdir / "pki")

    @property
    def components(self) -> tuple[Process, ...]:
        """The running processes: etcd, kube-apiserver, kube-controller-manager."""
        return tuple(self._components)

    # lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Starts everything and waits until ready; on any failure stops what was started and raises."""
        started = time.monotonic()
        _live.add(self)
        try:
            self._start(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _start(self, started: float) -> None:
        def mark(step: str) -> None:
            self.timings[step] = round(time.monotonic() - started, 3)

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki.create()
        pki = self._pki.path
        mark("certs")

        etcd_port, peer_port, api_port, kcm_port = free_ports(4)
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn("etcd", [
            str(self.binaries.etcd), "--name=test", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}", "--unsafe-no-fsync", "--log-level=warn",
            # one member: nobody to wait for, so elect it at once instead of after the default 1 s
            "--heartbeat-interval=10", "--election-timeout=100",
        ])  # fmt: skip
        self._wait(etcd, lambda: http_ok(f"{etcd_url}/health"), "healthy")
        mark("etcd")

        self.server = f"https://127.0.0.1:{api_port}"
        apiserver = self._spawn("kube-apiserver", [
            str(self.binaries.kube_apiserver), f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={pki('apiserver.crt')}", f"--tls-private-key-file={pki('apiserver.key')}",
            f"--client-ca-file={pki('ca.crt')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki('sa.pub')}", f"--service-account-signing-key-file={pki('sa.key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true", "--profiling=false",
            # No `kubernetes` Service endpoints: the only address is loopback, which 1.37 refuses to publish
            # ("may not be in the loopback range"), and nothing may send traffic to a Service IP anyway.
            "--endpoint-reconciler-type=none", *self.extra_apiserver_args,
        ])  # fmt: skip
        self._apiserver_command = apiserver.process.args[len(_PDEATHSIG) :]
        self.kubeconfig.write_text(_kubeconfig(self.server, self._pki, "admin", "admin"))
        self.kubeconfig.chmod(0o600)
        self._wait_apiserver_ready(apiserver)
        mark("apiserver")
        for manifest in self.manifests:
            self.kubectl("apply", "-f", str(manifest))
        if self.manifests:
            mark("manifests")

        kcm_kubeconfig = self.workdir / "controller-manager.kubeconfig"
        kcm_kubeconfig.write_text(_kubeconfig(self.server, self._pki, "system:kube-controller-manager",
                                              "controller-manager"))  # fmt: skip
        kcm = self._spawn("kube-controller-manager", [
            str(self.binaries.kube_controller_manager), f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}", f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            f"--tls-cert-file={pki('controller-manager-serving.crt')}",
            f"--tls-private-key-file={pki('controller-manager-serving.key')}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki('sa.key')}", f"--root-ca-file={pki('ca.crt')}",
            f"--cluster-signing-cert-file={pki('ca.crt')}", f"--cluster-signing-key-file={pki('ca.key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false", *self.extra_controller_manager_args,
        ])  # fmt: skip
        kcm_context = ssl.create_default_context(cafile=str(pki("ca.crt")))
        self._wait(kcm, lambda: http_ok(f"https://127.0.0.1:{kcm_port}/healthz", kcm_context), "healthy")
        mark("controller-manager-healthy")
        if self.wait_for_controllers:
            default_sa = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
            context = self._admin_context()
            self._wait(kcm, lambda: http_ok(default_sa, context), "running controllers (default ServiceAccount)")
        mark("controller-manager")

    def _admin_context(self) -> ssl.SSLContext:
        pki = self._pki.path
        context = ssl.create_default_context(cafile=str(pki("ca.crt")))
        context.load_cert_chain(str(pki("admin.crt")), str(pki("admin.key")))
        return context

    def _wait_apiserver_ready(self, apiserver: Process) -> None:
        context = self._admin_context()
        self._wait(apiserver, lambda: http_ok(f"{self.server}/readyz", context), "ready (/readyz)")

    def stop_apiserver(self) -> None:
        """Stops kube-apiserver alone (an outage: clients get connection refused); `start_apiserver` brings it
        back on the same port with the same arguments (etcd keeps every object)."""
        for component in [c for c in self._components if c.name == "kube-apiserver"]:
            terminate(component.process)
            component.log_file.close()
            self._components.remove(component)

    def start_apiserver(self) -> None:
        """Starts kube-apiserver again after `stop_apiserver` and waits until it is ready."""
        if any(c.name == "kube-apiserver" for c in self._components):
            return
        self._wait_apiserver_ready(self._spawn("kube-apiserver", list(self._apiserver_command)))

    def stop(self) -> None:
        """Stops every process (SIGTERM, then SIGKILL after 10 s), newest first, and waits for each."""
        if self._api_client is not None:
            with contextlib.suppress(Exception):
                self._api_client.close()
            self._api_client = None
        for component in reversed(self._components):
            terminate(component.process)
            component.log_file.close()
        self._components.clear()
        _live.discard(self)

    @property
    def pids(self) -> dict[str, int]:
        return {c.name: c.process.pid for c in self._components}

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each running process."""
        return {c.name: c.rss_bytes() for c in self._components}

    def log_path(self, component: str) -> Path:
        return self.workdir / f"{component}.log"

    def _spawn(self, name: str, command: list[str]) -> Process:
        component = spawn(name, command, self.log_path(name), self.workdir)
        self._components.append(component)
        return component

    def _wait(self, component: Process, ready: Callable[[], bool], what: str) -> None:
        wait_until(component, ready, what, self.startup_timeout)

    # identities for further components (tests/support/node.py)

    @property
    def ca_file(self) -> Path:
        """The CA that signed the apiserver's certificate and every client certificate."""
        return self._pki.path("ca.crt")

    def client_kubeconfig(self, name: str, subject: str) -> Path:
        """A kubeconfig whose client certificate (signed by the CA) has `subject` (e.g. "/CN=system:kube-scheduler",
        "/O=system:nodes/CN=system:node:n1"); the certificate is made on first use."""
        if not self._pki.path(f"{name}.crt").exists():
            self._pki.leaf(name, subject, "clientAuth")
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(_kubeconfig(self.server, self._pki, name, name))
        path.chmod(0o600)
        return path

    def node_kubeconfig(self, node_name: str) -> Path:
        """The kubeconfig of node `node_name`'s kubelet: `system:node:<name>` in `system:nodes` (the Node
        authorizer and NodeRestriction apply to it)."""
        return self.client_kubeconfig(f"node-{node_name}", f"/O=system:nodes/CN=system:node:{node_name}")

    def serving_cert(self, name: str, subject: str) -> tuple[Path, Path]:
        """A serving certificate for 127.0.0.1 signed by the CA (made on first use): (certificate, key)."""
        if not self._pki.path(f"{name}.crt").exists():
            self._pki.leaf(name, subject, "serverAuth", ["IP:127.0.0.1"])
        return self._pki.path(f"{name}.crt"), self._pki.path(f"{name}.key")

    # clients

    def token_kubeconfig(self, token: str, name: str = "token") -> Path:
        """A kubeconfig for this cluster that authenticates with a bearer token (e.g. a ServiceAccount's),
        verifying the apiserver's certificate like the admin's does."""
        path = self.workdir / f"{name}.kubeconfig"
        config = yaml.safe_load(_kubeconfig(self.server, self._pki, name, "admin"))
        config["users"] = [{"name": name, "user": {"token": token}}]
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs kubectl (as the admin unless another `kubeconfig` is given); raises KubectlError (with its
        output) on failure if `check`."""
        kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"
        config = kubeconfig or self.kubeconfig
        result = subprocess.run(
            [kubectl, f"--kubeconfig={config}", f"--cache-dir={self.workdir / 'kubectl-cache'}", *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise KubectlError(args, result)
        return result

    def kubectl_json(self, *args: str, input: str | None = None, kubeconfig: Path | None = None) -> Any:
        """`kubectl <args> -o json`, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json", input=input, kubeconfig=kubeconfig).stdout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 120, binary: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs helm (`binary`, default Helm 3: binaries.helm) against this cluster, with its cache/config/data
        kept in the work directory."""
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.workdir / "helm" / "data"),
        }
        result = subprocess.run(
            [str(binary or self.binaries.helm), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise KubectlError(["(helm)", *args], result)
        return result

    @property
    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for the admin (created on first use, closed by `stop()`)."""
        if self._api_client is None:
            from kubernetes import config

            self._api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api_client


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group (it leads its own session), SIGKILL after 10 s, and reap it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


_live: weakref.WeakSet[ControlPlane] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for control_plane in list(_live):
        control_plane.stop()


# --- pytest -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane for the whole test session with the CRDs of crds/ applied (ready in seconds once the
    binaries are cached)."""
    binaries = find_binaries()
    with ControlPlane(tmp_path_factory.mktemp("kube"), binaries, manifests=[REPO / "crds"]) as control_plane:
        yield control_plane


CRD_NAMES = ("cleanuppolicies.nodejanitor.io", "nodecleanups.nodejanitor.io")


@pytest.fixture(scope="session")
def crds(kube: ControlPlane) -> tuple[str, ...]:
    """`kubectl apply -f crds/` (again: the `kube` fixture applied them before starting the controller
    manager), waited until Established; returns the CRD names."""
    kube.kubectl("apply", "-f", str(REPO / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES))
    return CRD_NAMES
