# ruff: noqa: E501  (manifests read best one per line)
"""Helpers of the operator's kube tests (no tests here): the operator as a subprocess, polling, manifests."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from .kube import REPO, ControlPlane, free_ports, spawn, terminate
from .poll import wait_for

T = TypeVar("T")
DEADLINE = 60.0  # generous: the machine is shared; conditions are polled, never slept for
POOL = "test.nodejanitor.io/pool"
API = "nodejanitor.io/v1alpha1"


START_DEADLINE = 90.0
"""Seconds an operator may take to be ready: a few idle (imports, the start-up check, kopf), far more on a machine
loaded by parallel suites (30 s was once too short). A deadline, not a speed assertion: speed lives in bench/."""

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the proxy env


class Operator:
    """`node-janitor operator --kubeconfig ...` (standalone unless `args` name a peering)."""

    def __init__(self, kube: ControlPlane, workdir: Path, *args: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        command = [sys.executable, "-m", "node_janitor", "operator", f"--kubeconfig={kube.kubeconfig}",
                   *(args or ["--standalone"]), f"--metrics-port={self.port}", "--metrics-bind-address=127.0.0.1"]  # fmt: skip
        # this tree's code (as the agent harness does: the venv's editable install may point at another checkout);
        # its own session, killed with this interpreter even if the tests are killed
        env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
        self._bed = spawn("node-janitor operator", command, workdir / "operator.log", workdir, env)
        self.process = self._bed.process

    def get(self, path: str) -> tuple[int, str]:
        try:
            with _DIRECT.open(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""  # not listening (yet)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics (0 if absent), parsed with prometheus_client's parser."""
        _, text = self.get("/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def log_text(self) -> str:
        if not self._bed.log_file.closed:
            self._bed.log_file.flush()
        return self._bed.log_path.read_text(errors="replace")

    def log_tail(self) -> str:
        return "\n".join(self.log_text().splitlines()[-60:])

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s); stopping twice is fine."""
        terminate(self.process)
        self._bed.log_file.close()


@contextlib.contextmanager
def running_operator(kube: ControlPlane, workdir: Path, *args: str) -> Iterator[Operator]:
    """An operator (standalone unless `args` say otherwise), ready (`/readyz` 200), stopped afterwards; its log's
    tail printed when it failed."""
    op = Operator(kube, workdir, *args)
    try:
        wait_for("the operator's /readyz", lambda: op.process.poll() is None and op.get("/readyz")[0] == 200,
                 START_DEADLINE)  # fmt: skip
        yield op
    except BaseException:
        print(op.log_tail())
        raise
    finally:
        op.stop()
        if op.process.returncode not in (0, -15):
            print(op.log_tail())


def apply(kube: ControlPlane, manifest: dict[str, Any]) -> None:
    kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def node(kube: ControlPlane, name: str, **labels: str) -> None:
    apply(kube, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})


def policy(kube: ControlPlane, name: str, selector: dict[str, str], **spec: Any) -> None:
    apply(kube, {"apiVersion": API, "kind": "CleanupPolicy", "metadata": {"name": name},
                 "spec": {"nodeSelector": {"matchLabels": selector}, **spec}})  # fmt: skip


def cleanups(kube: ControlPlane, prefix: str) -> dict[str, Any]:
    items = kube.kubectl_json("get", "nodecleanups", "--show-managed-fields")["items"]
    return {i["metadata"]["name"]: i for i in items if i["metadata"]["name"].startswith(prefix)}


def sources(cleanup: dict[str, Any]) -> list[str]:
    return [s["name"] for s in cleanup["spec"]["sources"]]


def patch_status(kube: ControlPlane, name: str, status: dict[str, Any]) -> None:
    kube.kubectl("patch", "nodecleanup", name, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": status}))  # fmt: skip
