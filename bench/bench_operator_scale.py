"""Operator scale on the real apiserver (issue 12, bench 5): N Node objects (no kubelets), 10 policies.

Run (root not needed): .venv/bin/python bench/bench_operator_scale.py [--nodes 2000] [--tree /work/wt/operator]
The control plane of the test bed (etcd, kube-apiserver, kube-controller-manager) with `<tree>/crds`; Nodes
labelled pool=p0..p9 (one policy selects each pool); `node-janitor operator --standalone` from `<tree>/operator`
as a subprocess. Reported: seconds until every node has its NodeCleanup; seconds from a policy change to every
affected NodeCleanup updated; the apiserver's requests for each (`apiserver_request_total`, diffed, minus this
benchmark's own polls); writes on a no-op policy edit; writes caused by one workload image change (a Deployment
whose image nodes hold, as their agents report in status.imageRefs); the operator's RSS.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from realbed import REPO, MiB, workdir

from testbed.kube import ControlPlane, find_binaries, free_ports

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


def show_requests(diff: Counter[tuple[str, str]], own_lists: int) -> str:
    diff = diff.copy()
    diff[("LIST", "nodecleanups")] -= own_lists
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


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Cleanups:
    """Lists NodeCleanups (counting its own LISTs, so they can be taken off the apiserver's counts)."""

    def __init__(self, kube: ControlPlane) -> None:
        self.api = client.CustomObjectsApi(kube.api_client)
        self.lists = 0

    def all(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cont = None
        while True:
            self.lists += 1
            page = self.api.list_cluster_custom_object(GROUP, VERSION, "nodecleanups", limit=1000, _continue=cont)
            items += page["items"]
            cont = page["metadata"].get("continue")
            if not cont:
                return items

    def wait(self, what: str, ok: Any, timeout: float) -> float:
        t0 = time.monotonic()
        while not ok(self.all()):
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"not {what} within {timeout:.0f} s")
            time.sleep(0.5)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--tree", type=Path, default=REPO, help="the source tree whose operator and crds/ run")
    args = parser.parse_args()
    with ControlPlane(workdir("kube"), find_binaries(), manifests=[args.tree / "crds"]) as kube:
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/nodecleanups.nodejanitor.io")
        core = client.CoreV1Api(kube.api_client)
        custom = client.CustomObjectsApi(kube.api_client)
        t0 = time.monotonic()

        def make(i: int) -> None:
            body = {"metadata": {"name": f"n{i:05d}", "labels": {"pool": f"p{i % POOLS}"}}}
            core.create_node(body)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(make, range(args.nodes)))
        print(f"{args.nodes} Nodes created in {time.monotonic() - t0:.0f} s")
        for p in range(POOLS):
            custom.create_cluster_custom_object(GROUP, VERSION, "cleanuppolicies", policy(f"pol{p}", f"p{p}", 80))
        port = free_ports(1)[0]
        log = (workdir("operator") / "operator.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(args.tree / "operator")}
        operator = subprocess.Popen(
            [sys.executable, "-m", "node_janitor", "operator", f"--kubeconfig={kube.kubeconfig}", "--standalone",
             f"--metrics-port={port}", "--metrics-bind-address=127.0.0.1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            cleanups = Cleanups(kube)
            before = requests(kube)
            took = cleanups.wait("every node's NodeCleanup", lambda items: len(items) >= args.nodes, 600)
            after = quiet(kube)
            print(
                f"start: every NodeCleanup in {took:.1f} s; {show_requests(after - before, cleanups.lists)};"
                f" operator RSS {rss(operator.pid) / MiB:.0f} MiB"
            )

            # one policy changes: its 1/10 of the nodes must follow
            cleanups.lists = 0
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
                f" {show_requests(after - before, cleanups.lists)}; operator RSS {rss(operator.pid) / MiB:.0f} MiB"
            )

            # a no-op: a label on the policy, nothing the NodeCleanups depend on
            before = requests(kube)
            custom.patch_cluster_custom_object(
                GROUP, VERSION, "cleanuppolicies", "pol1", {"metadata": {"labels": {"touched": "yes"}}}
            )
            time.sleep(3)
            after = quiet(kube)
            print(f"no-op policy edit: {show_requests(after - before, 0)}")

            # one workload image change: a Pod uses image A, `holders` nodes hold A (their agents report it in
            # status.imageRefs), then the Pod moves to B: A is no workload's any more
            pod = {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"containers": [{"name": "web", "image": "docker.io/bench/a:1"}]},
            }
            core.create_namespaced_pod("default", pod)
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
                f"{holders} nodes report holding A (a Pod's image): {show_requests(diff, 0)};"
                f" settled {time.monotonic() - t0 - 5:.1f} s after the first report"
            )
            before = requests(kube)
            t0 = time.monotonic()
            image_b = {"spec": {"containers": [{"name": "web", "image": "docker.io/bench/b:1"}]}}
            core.patch_namespaced_pod("web", "default", image_b)
            after = quiet(kube)
            print(
                f"workload image change (the Pod moves A -> B, A held by {holders} nodes):"
                f" {show_requests(after - before, 0)}; settled {time.monotonic() - t0 - 5:.1f} s after the change"
            )
            print(f"operator RSS at the end {rss(operator.pid) / MiB:.0f} MiB")
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=15)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
            log.close()


if __name__ == "__main__":
    main()
