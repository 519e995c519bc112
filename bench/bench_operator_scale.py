"""Operator scale on the real apiserver (issue 12, bench 5): N Node objects (no kubelets), 10 policies.

Run (root not needed): .venv/bin/python -m bench.bench_operator_scale [--nodes 2000] [--tree /work/wt/operator]
The control plane of the test bed (etcd, kube-apiserver, kube-controller-manager without its node-lifecycle and
ttl controllers unless --node-controllers: without kubelets they PATCH/PUT every Node for minutes) with
`<tree>/crds`; Nodes labelled pool=p0..p9 (one policy selects each pool); `node-janitor operator --standalone`
from `<tree>/operator` as a subprocess. Reported: seconds until every node has its NodeCleanup and the CPU each
process used until then; seconds from a policy change to every affected NodeCleanup updated; the apiserver's
requests for each (`apiserver_request_total`, diffed; this benchmark follows the NodeCleanups with one watch);
writes on a no-op policy edit; writes caused by one workload image change (a Pod whose image nodes hold, as their
agents report in status.imageRefs); a restart with nothing changed (seconds to sync, writes); the operator's RSS.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client import ApiException
from prometheus_client.parser import text_string_to_metric_families

from bench.realbed import REPO, MiB, workdir
from tests.support.kube import ControlPlane, find_binaries, free_ports
from tests.support.procstat import cpu_seconds
from tests.support.procstat import rss_bytes as rss

API = "nodejanitor.io/v1alpha1"
GROUP, VERSION = "nodejanitor.io", "v1alpha1"
POOLS = 10
READS = {"GET", "LIST", "WATCH"}


def requests(kube: ControlPlane) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource)."""
    text = kube.kubectl("get", "--raw", "/metrics").stdout
    out: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "apiserver_request":
            for s in family.samples:
                if s.name == "apiserver_request_total":
                    out[(s.labels.get("verb", ""), s.labels.get("resource", ""))] += int(s.value)
    return out


def show_requests(diff: Counter[tuple[str, str]]) -> str:
    kept = {k: v for k, v in diff.items() if v > 0 and k[1] in {"nodecleanups", "cleanuppolicies", "nodes", "events"}}
    writes = sum(v for (verb, res), v in kept.items() if verb not in READS and res == "nodecleanups")
    body = ", ".join(f"{verb} {res} {v}" for (verb, res), v in sorted(kept.items()))
    return f"{writes} NodeCleanup writes ({body or 'nothing'})"


def policy(name: str, pool: str, high: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "CleanupPolicy",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"matchLabels": {"pool": pool}},
            "thresholds": {"highPercent": high, "lowPercent": 60},
        },
    }


class Cleanups:
    """Every NodeCleanup, kept by one watch in a thread (a LIST of every NodeCleanup per poll would cost the
    apiserver and this process O(nodes) per poll, O(nodes²) over a fill: the machine the operator shares)."""

    def __init__(self, kube: ControlPlane) -> None:
        self.api = client.CustomObjectsApi(kube.api_client)
        self.items: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.watch = watch.Watch()
        self.stopped = False
        self.thread = threading.Thread(target=self._follow, daemon=True, name="nodecleanups watch")
        self.thread.start()

    def _follow(self) -> None:
        while True:
            listing = self.api.list_cluster_custom_object(GROUP, VERSION, "nodecleanups")
            with self.lock:
                self.items = {i["metadata"]["name"]: i for i in listing["items"]}
            try:
                for event in self.watch.stream(self.api.list_cluster_custom_object, GROUP, VERSION, "nodecleanups",
                                               resource_version=listing["metadata"]["resourceVersion"]):  # fmt: skip
                    obj = event["object"]
                    with self.lock:
                        if event["type"] == "DELETED":
                            self.items.pop(obj["metadata"]["name"], None)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self.items[obj["metadata"]["name"]] = obj
                return  # stopped
            except ApiException as exc:
                if exc.status != 410:
                    raise  # (410: too old a resourceVersion, list again)
            except Exception:
                if self.stopped:
                    return  # (the apiserver going away under a stopped watch)
                raise

    def stop(self) -> None:
        self.stopped = True
        self.watch.stop()

    def all(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.items.values())

    def wait(self, what: str, ok: Any, timeout: float) -> float:
        t0 = time.monotonic()
        while not ok(self.all()):
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"not {what} within {timeout:.0f} s")
            time.sleep(0.1)
        return time.monotonic() - t0


def quiet(kube: ControlPlane, seconds: float = 5.0, timeout: float = 120.0) -> Counter[tuple[str, str]]:
    """Until no NodeCleanup write for `seconds`; returns the last counts."""
    deadline = time.monotonic() + timeout
    last = requests(kube)
    since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < seconds:
        time.sleep(1)
        now = requests(kube)
        if any(now[k] != last[k] for k in now if k[1] == "nodecleanups" and k[0] not in READS):
            since = time.monotonic()
        last = now
    return last


def synced(port: int) -> bool:
    """Whether the operator's initial listing is in (its node_janitor_operator_synced gauge)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return "node_janitor_operator_synced 1.0" in response.read().decode()
    except OSError:
        return False


class Operator:
    """`node-janitor operator --standalone` of `tree` as a subprocess (its log appended to `log`)."""

    def __init__(self, kube: ControlPlane, tree: Path, log: Path) -> None:
        self.port = free_ports(1)[0]
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "node_janitor", "operator", f"--kubeconfig={kube.kubeconfig}", "--standalone",
             f"--metrics-port={self.port}", "--metrics-bind-address=127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(tree / "operator")},
            start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--tree", type=Path, default=REPO, help="the source tree whose operator and crds/ run")
    parser.add_argument("--node-controllers", action="store_true",
                        help="keep kube-controller-manager's node-lifecycle and ttl controllers (off by default: "
                             "they PATCH/PUT every kubelet-less Node for minutes, load on the apiserver and Node "
                             "events for the operator that are the bed's, not the operator's)")  # fmt: skip
    parser.add_argument("--operator-log", type=Path, help="keep the operator's log there")
    args = parser.parse_args()
    kcm_args = [] if args.node_controllers else ["--controllers=*,-node-lifecycle-controller,-ttl-controller"]
    with ControlPlane(workdir("kube"), find_binaries(), manifests=[args.tree / "crds"],
                      extra_controller_manager_args=kcm_args) as kube:  # fmt: skip
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/nodecleanups.nodejanitor.io")
        core = client.CoreV1Api(kube.api_client)
        custom = client.CustomObjectsApi(kube.api_client)
        t0 = time.monotonic()

        def make(i: int) -> None:
            body = {"metadata": {"name": f"n{i:05d}", "labels": {"pool": f"p{i % POOLS}"}}}
            core.create_node(body)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(make, range(args.nodes)))
        print(f"{args.nodes} Nodes created in {time.monotonic() - t0:.0f} s; load average {load_average()}")
        for p in range(POOLS):
            custom.create_cluster_custom_object(GROUP, VERSION, "cleanuppolicies", policy(f"pol{p}", f"p{p}", 80))
        log = args.operator_log or workdir("operator") / "operator.log"
        cleanups = Cleanups(kube)
        components = {c.name: c.process.pid for c in kube.components}
        cpu_before = {name: cpu_seconds(pid) for name, pid in components.items()}
        before = requests(kube)
        operator = Operator(kube, args.tree, log)
        try:
            took = cleanups.wait("every node's NodeCleanup", lambda items: len(items) >= args.nodes, 900)
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in components.items()}
            cpu["operator"] = cpu_seconds(operator.process.pid)
            after = quiet(kube)
            print(
                f"start: every NodeCleanup in {took:.1f} s; {show_requests(after - before)};"
                f" operator RSS {rss(operator.process.pid) / MiB:.0f} MiB; load average {load_average()}"
            )
            print("  CPU seconds until then: " + ", ".join(f"{name} {s:.1f}" for name, s in cpu.items()))

            # one policy changes: its 1/10 of the nodes must follow
            before = requests(kube)
            custom.patch_cluster_custom_object(
                GROUP, VERSION, "cleanuppolicies", "pol0", {"spec": {"thresholds": {"highPercent": 81}}}
            )
            affected = args.nodes // POOLS

            def followed(items: list[dict[str, Any]]) -> bool:
                highs = [i["spec"]["policy"]["thresholds"]["highPercent"] for i in items if i["spec"].get("policy")]
                return bool(highs.count(81) >= affected)

            took = cleanups.wait("the change on every affected NodeCleanup", followed, 300)
            after = quiet(kube)
            print(
                f"policy change ({affected} nodes affected): all updated in {took:.1f} s;"
                f" {show_requests(after - before)}; operator RSS {rss(operator.process.pid) / MiB:.0f} MiB"
            )

            # a no-op: a label on the policy, nothing the NodeCleanups depend on
            before = requests(kube)
            custom.patch_cluster_custom_object(
                GROUP, VERSION, "cleanuppolicies", "pol1", {"metadata": {"labels": {"touched": "yes"}}}
            )
            time.sleep(3)
            after = quiet(kube)
            print(f"no-op policy edit: {show_requests(after - before)}")

            # one workload image change: a ReplicaSet uses image A, `holders` nodes hold A (their agents report it in
            # status.imageRefs), then the Pod moves to B: A is no workload's any more
            apps = client.AppsV1Api(kube.api_client)  # a ReplicaSet: the operator indexes templates, not Pods
            labels = {"app": "web"}
            pod = {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "docker.io/bench/a:1"}]}}},
            }  # fmt: skip
            apps.create_namespaced_replica_set("default", pod)
            quiet(kube)
            holders = min(100, args.nodes)
            before = requests(kube)
            t0 = time.monotonic()
            for i in range(holders):
                custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, "nodecleanups", f"n{i:05d}", {"status": {"imageRefs": ["docker.io/bench/a:1"]}}
                )
            after = quiet(kube)
            diff = after - before
            diff[("PATCH", "nodecleanups")] -= holders  # this benchmark's own status patches
            print(
                f"{holders} nodes report holding A (a Pod's image): {show_requests(diff)};"
                f" settled {time.monotonic() - t0 - 5:.1f} s after the first report"
            )
            before = requests(kube)
            t0 = time.monotonic()
            web_b = [{"name": "web", "image": "docker.io/bench/b:1"}]
            image_b = {"spec": {"template": {"spec": {"containers": web_b}}}}
            apps.patch_namespaced_replica_set("web", "default", image_b)
            after = quiet(kube)
            print(
                f"workload image change (the Pod moves A -> B, A held by {holders} nodes):"
                f" {show_requests(after - before)}; settled {time.monotonic() - t0 - 5:.1f} s after the change"
            )
            print(f"operator RSS at the end {rss(operator.process.pid) / MiB:.0f} MiB")

            # a restart with nothing changed: every object listed again (Nodes and NodeCleanups), nothing written
            operator.stop()
            before = requests(kube)
            operator = Operator(kube, args.tree, log)
            t0 = time.monotonic()
            while not synced(operator.port):
                if time.monotonic() - t0 > 900 or operator.process.poll() is not None:
                    raise RuntimeError("the restarted operator did not sync")
                time.sleep(0.2)
            took = time.monotonic() - t0
            after = quiet(kube, seconds=10)
            print(
                f"restart ({2 * args.nodes} Nodes and NodeCleanups listed): synced in {took:.1f} s;"
                f" {show_requests(after - before)}; load average {load_average()}"
            )
        finally:
            operator.stop()
            cleanups.stop()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
