"""The operator and its agents at Kubernetes' scalability envelope (issue 21), on the real apiserver and etcd.

Run (root not needed):
    git archive 9d96c2e | tar -x -C /tmp/old-9d96c2e
    nice -n 10 .venv/bin/python -m bench.bench_envelope --nodes 5000 --old-tree /tmp/old-9d96c2e [--at-rest 180]

Objects, made once through raw HTTPS requests in parallel (kube-controller-manager runs without the workload
and node controllers: nothing schedules, scales or garbage-collects; every Pod has spec.nodeName set):
- N Nodes (pool p0..p9, one CleanupPolicy each, keepWorkloadImages), N Deployments (replicas 30), each with two
  ReplicaSet revisions (v1 at 0 replicas, v2 at 30) and its 30 Pods owned by the v2 ReplicaSet, bound to 30
  consecutive nodes (30 Pods per node, 150,000 at 5,000 nodes); N/100 StatefulSets, Jobs and CronJobs, 5
  DaemonSets.
- What each node's agent reports: 50-200 imageRefs (its pods' v2 images, their v1 images, cached ones; a third
  with a digest ref too), usage, file systems, conditions.

Then, for each tree (the old one first, the same objects): every NodeCleanup deleted, then
1. first fill: the operator started, seconds until every NodeCleanup exists; the agents' first reports posted;
2. restart sync: the operator restarted, seconds until its initial listing is in (its synced gauge), and the
   NodeCleanup writes it makes (none expected); its RSS;
3. at rest (steady state) for --at-rest seconds: a load generator posts what the agents of that tree post (from
   their first reports on, through the restart, `Agents`): the old agent a full status every 60 s; the new one a
   Lease renewal every 60 s and a status heartbeat every 300 s (nothing changed). Measured: writes per node per
   minute (apiserver_request_total), the operator's CPU, etcd's database growth;
4. pod churn at --churn-rate Pods/s for --churn seconds: bare Pods bound to nodes, each using an image only its node
   holds, the ones made 5 s earlier deleted. The operator's NodeCleanup writes are counted; protected sets are
   checked on a sample: the old operator's spec.protectedImages of the pod's node, the new agent's own watch of its
   node's pods (`agent.pods`, run here for the sample nodes): seconds until each sample pod's image is protected.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import random
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prometheus_client.parser import text_string_to_metric_families

from bench.realbed import REPO, MiB, workdir
from node_janitor.api.packed_refs import pack_refs
from tests.support.kube import ControlPlane, find_binaries, free_ports
from tests.support.procstat import cpu_seconds
from tests.support.procstat import rss_bytes as rss

GROUP, VERSION = "nodejanitor.io", "v1alpha1"
NC_PATH = f"/apis/{GROUP}/{VERSION}/nodecleanups"
NS, AGENT_NS = "bench", "bench-agents"
POOLS = 10
PODS_PER_NODE = 30
THREADS = 24
LEAN_POD = {"automountServiceAccountToken": False, "enableServiceLinks": False}
"""No token volume for the ServiceAccount admission to add to each of the 150,000 Pods (nothing runs them)."""
CACHED_MIN = 20
"""Cached images every node holds at least (the churn's pods use them)."""
KCM_OFF = ("deployment-controller", "replicaset-controller", "statefulset-controller", "daemonset-controller",
           "job-controller", "cronjob-controller", "node-lifecycle-controller", "ttl-controller",
           "garbage-collector-controller", "pod-garbage-collector-controller", "endpointslice-controller",
           "endpoints-controller", "disruption-controller", "resourcequota-controller",
           "ttl-after-finished-controller")  # fmt: skip


class Raw:
    """Keep-alive HTTPS connections (one per thread) as the admin: JSON in, JSON out, no client models."""

    def __init__(self, kube: ControlPlane) -> None:
        url = urlparse(kube.server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.context: ssl.SSLContext = kube._admin_context()
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=120
            )
        return connection

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", **({"Content-Type": content_type} if data is not None else {})}
        for attempt in range(5):
            connection = self._connection()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self.local.connection = None
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status == 429 or response.status >= 500:
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {payload[:300]!r}")
            return json.loads(payload) if payload else None
        raise RuntimeError(f"{method} {path}: no answer after 5 attempts")

    def count(self, path: str) -> int:
        answer = self.call("GET", f"{path}?limit=1")
        return len(answer["items"]) + int(answer["metadata"].get("remainingItemCount") or 0)


def bulk(work: Callable[[Any], Any], items: Iterable[Any], threads: int = THREADS) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, items))


# --- the objects -----------------------------------------------------------------------------------------------


def image(deployment: int, tag: str) -> str:
    return f"registry.example.com/team-{deployment % 50:02d}/app-{deployment:05d}:{tag}"


def cached(node: int, k: int) -> str:
    return f"registry.example.com/cache/node-{node:05d}-{k:03d}:v1"


def digest_ref(ref: str) -> str:
    return ref.rsplit(":", 1)[0] + "@sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def template(images: list[str], labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": f"c{i}", "image": img} for i, img in enumerate(images)]}}  # fmt: skip


def node_of(deployment: int, j: int, nodes: int) -> int:
    return (deployment * PODS_PER_NODE + j) % nodes


class Cluster:
    def __init__(self, raw: Raw, nodes: int) -> None:
        self.raw, self.nodes = raw, nodes
        self.deployments = nodes  # 30 pods each: 30 pods per node
        self.node_deployments: list[list[int]] = [[] for _ in range(nodes)]
        for d in range(self.deployments):
            for j in range(PODS_PER_NODE):
                self.node_deployments[node_of(d, j, nodes)].append(d)

    def create(self) -> dict[str, float]:
        raw, took = self.raw, {}
        t0 = time.monotonic()
        raw.call("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        raw.call("POST", "/api/v1/namespaces", {"metadata": {"name": AGENT_NS}})
        bulk(lambda i: raw.call("POST", "/api/v1/nodes",
                                {"metadata": {"name": f"n{i:05d}", "labels": {"pool": f"p{i % POOLS}"}}}),
             range(self.nodes))  # fmt: skip
        took["nodes"] = time.monotonic() - t0
        for p in range(POOLS):
            raw.call("POST", f"/apis/{GROUP}/{VERSION}/cleanuppolicies", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "CleanupPolicy", "metadata": {"name": f"pol{p}"},
                "spec": {"nodeSelector": {"matchLabels": {"pool": f"p{p}"}},
                         "thresholds": {"highPercent": 80, "lowPercent": 60}}})  # fmt: skip
        t0 = time.monotonic()
        apps = f"/apis/apps/v1/namespaces/{NS}"

        def deployment(d: int) -> None:
            labels = {"app": f"d{d}"}
            dep = raw.call("POST", f"{apps}/deployments", {
                "metadata": {"name": f"d{d}"},
                "spec": {"replicas": PODS_PER_NODE, "selector": {"matchLabels": labels},
                         "template": template([image(d, "v2")], labels)}})  # fmt: skip
            owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"d{d}", "uid": dep["metadata"]["uid"],
                     "controller": True}  # fmt: skip
            rs_uid = ""
            for revision, replicas in (("v1", 0), ("v2", PODS_PER_NODE)):
                rs_labels = {**labels, "rev": revision}
                rs = raw.call("POST", f"{apps}/replicasets", {
                    "metadata": {"name": f"d{d}-{revision}", "labels": rs_labels, "ownerReferences": [owner]},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": rs_labels},
                             "template": template([image(d, revision)], rs_labels)}})  # fmt: skip
                rs_uid = rs["metadata"]["uid"]
            rs_owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"d{d}-v2", "uid": rs_uid,
                        "controller": True}  # fmt: skip
            for j in range(PODS_PER_NODE):
                raw.call("POST", f"/api/v1/namespaces/{NS}/pods", {
                    "metadata": {"name": f"d{d}-v2-{j}", "labels": {**labels, "rev": "v2"},
                                 "ownerReferences": [rs_owner]},
                    "spec": {"nodeName": f"n{node_of(d, j, self.nodes):05d}", **LEAN_POD,
                             "containers": [{"name": "c0", "image": image(d, "v2")}]}})  # fmt: skip

        bulk(deployment, range(self.deployments))
        took["deployments+pods"] = time.monotonic() - t0
        others = max(1, self.nodes // 100)
        for kind, plural, count in (("StatefulSet", "statefulsets", others), ("DaemonSet", "daemonsets", 5)):
            bulk(lambda i, kind=kind, plural=plural: raw.call("POST", f"{apps}/{plural}", {
                "metadata": {"name": f"{plural}-{i}"},
                "spec": {**({"replicas": 0, "serviceName": "x"} if kind == "StatefulSet" else {}),
                         "selector": {"matchLabels": {"app": f"{plural}-{i}"}},
                         "template": template([f"registry.example.com/{plural}/app-{i}:v1"],
                                              {"app": f"{plural}-{i}"})}}), range(count))  # fmt: skip
        batch = f"/apis/batch/v1/namespaces/{NS}"
        job_template = lambda i: {**template([f"registry.example.com/jobs/job-{i}:v1"], {}),  # noqa: E731
                                  "spec": {"restartPolicy": "Never", "containers": [
                                      {"name": "c", "image": f"registry.example.com/jobs/job-{i}:v1"}]}}  # fmt: skip
        bulk(lambda i: raw.call("POST", f"{batch}/jobs", {
            "metadata": {"name": f"job-{i}"}, "spec": {"suspend": True, "template": job_template(i)}}),
            range(others))  # fmt: skip
        bulk(lambda i: raw.call("POST", f"{batch}/cronjobs", {
            "metadata": {"name": f"cron-{i}"}, "spec": {"schedule": "0 0 1 1 *", "suspend": True,
                                                        "jobTemplate": {"spec": {"template": job_template(i)}}}}),
            range(others))  # fmt: skip
        return took

    def image_refs(self, node: int) -> list[str]:
        rng = random.Random(node)
        refs = [image(d, tag) for d in self.node_deployments[node] for tag in ("v2", "v1")]
        total = rng.randint(50, 200)
        refs = refs[: total - CACHED_MIN] + [cached(node, k) for k in range(max(CACHED_MIN, total - len(refs)))]
        refs += [digest_ref(r) for r in refs[::3]]
        return sorted(set(refs))

    def status(self, node: int, now: datetime, packed: bool = False) -> dict[str, Any]:
        """As the agent reports; `packed`: as the new one packs its refs (`api.packed_refs`)."""
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        refs = self.image_refs(node)
        usage = {name: {"count": 10, "totalBytes": 10 << 30, "activeBytes": 5 << 30, "reclaimableBytes": 5 << 30}
                 for name in ("images", "containers", "logs")}  # fmt: skip
        return {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Applying", "message": "applying spec generation 1",
                 "lastTransitionTime": "2026-12-01T00:00:00Z", "observedGeneration": 1},
                {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "containerd answers",
                 "lastTransitionTime": "2026-12-01T00:00:00Z", "observedGeneration": 1},
            ],
            "observedGeneration": 1, "usage": usage,
            "fileSystems": [{"name": "imagefs", "path": "/var/lib/containerd", "sizeBytes": 100 << 30,
                             "usedBytes": 41 << 30, "usedPercent": 41.0, "inodesUsedPercent": 3.0}],
            "diskPercent": 41.0, "imageCount": len(refs), "reclaimableBytes": 15 << 30, "reclaimable": "15.0GiB",
            "imageRefs": [] if packed else refs, "imageRefsOmitted": len(refs) if packed else 0,
            **({"imageRefsPacked": pack_refs(refs)} if packed else {}), "heartbeatTime": stamp,
        }  # fmt: skip

    def post_status(self, node: int, packed: bool = False) -> None:
        """The whole status, as both agents send it (the new one on its 5 min heartbeat too)."""
        status = self.status(node, datetime.now(UTC), packed)
        self.raw.call("PATCH", f"{NC_PATH}/n{node:05d}/status", {"status": status}, "application/merge-patch+json")

    def renew_lease(self, node: int) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        path = f"/apis/coordination.k8s.io/v1/namespaces/{AGENT_NS}/leases"
        spec = {"holderIdentity": f"n{node:05d}", "leaseDurationSeconds": 180, "renewTime": now}
        try:
            self.raw.call("PATCH", f"{path}/n{node:05d}", {"spec": spec}, "application/merge-patch+json")
        except RuntimeError as exc:
            if " 404 " not in str(exc):
                raise
            self.raw.call("POST", path, {"metadata": {"name": f"n{node:05d}",
                                                      "labels": {"nodejanitor.io/agent-lease": "true"}},
                                         "spec": spec})  # fmt: skip


# --- measuring -------------------------------------------------------------------------------------------------


def apiserver_requests(raw: Raw) -> Counter[tuple[str, str, str]]:
    text = _text(raw, "/metrics")
    out: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "apiserver_request":
            for s in family.samples:
                if s.name == "apiserver_request_total":
                    key = (s.labels.get("verb", ""), s.labels.get("resource", ""), s.labels.get("subresource", ""))
                    out[key] += int(s.value)
    return out


def _text(raw: Raw, path: str) -> str:
    """A text GET on the keep-alive connection (the apiserver closes idle ones: again on a fresh one)."""
    for attempt in range(5):
        connection = raw._connection()
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        except (OSError, http.client.HTTPException):
            connection.close()
            raw.local.connection = None
            time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"GET {path}: no answer after 5 attempts")


def etcd_db_bytes(kube: ControlPlane) -> int:
    etcd = next(c for c in kube.components if c.name == "etcd")
    url = next(a.split("=", 1)[1] for a in etcd.process.args if str(a).startswith("--listen-client-urls="))
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        for family in text_string_to_metric_families(response.read().decode()):
            if family.name == "etcd_mvcc_db_total_size_in_bytes":
                return int(family.samples[0].value)
    return 0


def writes(diff: Counter[tuple[str, str, str]], resource: str, subresource: str = "") -> int:
    return sum(v for (verb, res, sub), v in diff.items()
               if res == resource and sub == subresource and verb in ("POST", "PATCH", "PUT", "APPLY", "DELETE",
                                                                       "CREATE", "UPDATE"))  # fmt: skip


class Operator:
    def __init__(self, kube: ControlPlane, tree: Path, log: Path) -> None:
        self.port = free_ports(1)[0]
        self.log = log.open("ab")
        env = {**os.environ, "PYTHONPATH": str(tree / "operator"), "POD_NAMESPACE": AGENT_NS}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "node_janitor", "operator", f"--kubeconfig={kube.kubeconfig}", "--standalone",
             f"--metrics-port={self.port}", "--metrics-bind-address=127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        self.peak_rss = 0

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, rss(self.process.pid))

    def synced(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
                return "node_janitor_operator_synced 1.0" in response.read().decode()
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def wait(what: str, ok: Callable[[], bool], timeout: float, every: float = 0.5,
         tick: Callable[[], None] | None = None) -> float:  # fmt: skip
    t0 = time.monotonic()
    while not ok():
        if tick is not None:
            tick()
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"not {what} within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - t0


def quiet(raw: Raw, seconds: float = 5.0, timeout: float = 300.0) -> None:
    """Until no NodeCleanup spec write for `seconds`."""
    deadline, last = time.monotonic() + timeout, writes(apiserver_requests(raw), "nodecleanups")
    since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < seconds:
        time.sleep(1)
        now = writes(apiserver_requests(raw), "nodecleanups")
        if now != last:
            since, last = time.monotonic(), now


def paced(rate: float, seconds: float, work: Callable[[int], None], pool: concurrent.futures.Executor,
          stop: threading.Event | None = None) -> int:  # fmt: skip
    """`work(i)` at `rate` per second for `seconds` (or until `stop`); returns how many were started."""
    t0, i, futures = time.monotonic(), 0, []
    while (elapsed := time.monotonic() - t0) < seconds and not (stop is not None and stop.is_set()):
        due = int(elapsed * rate)
        while i < due:
            futures.append(pool.submit(work, i))
            i += 1
        time.sleep(0.01)
    for future in futures:
        future.result()
    return i


class Agents:
    """One tree's simulated agents at that agent's cadence, from their first reports to the end of the tree's run,
    through the operator's restart too, as real agents go on: the new agent renews its Lease every 60 s and posts
    a status heartbeat every 300 s; the old one posts its full status every 60 s. (The first 5,000-node run renewed
    the Leases once, at the first reports, and only again during the steady state: they had expired by then, 180 s
    later, and the operator rightly rewrote each policy's AgentsNotReporting count as the renewals came back, every
    status debounce: the 260 operator writes "at rest" of that run. Started after the first reports had settled,
    two minutes later, the last nodes' renewals still came after their 180 s: 8 agents flagged silent, then not.)"""

    def __init__(self, cluster: Cluster, new: bool) -> None:
        self.cluster, self.new, self.stopping = cluster, new, threading.Event()
        self.threads: list[threading.Thread] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(THREADS)

    def start(self) -> None:
        n, cluster, pool, stop = self.cluster.nodes, self.cluster, self.pool, self.stopping
        forever = float("inf")
        if self.new:
            loops = [(n / 60, lambda i: cluster.renew_lease(i % n)),
                     (n / 300, lambda i: cluster.post_status(i % n, True))]  # fmt: skip
        else:
            loops = [(n / 60, lambda i: cluster.post_status(i % n))]
        self.threads = [threading.Thread(target=paced, args=(rate, forever, work, pool, stop), daemon=True)
                        for rate, work in loops]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()
        self.pool.shutdown()


# --- the phases ------------------------------------------------------------------------------------------------


def run_tree(name: str, tree: Path, new: bool, kube: ControlPlane, raw: Raw, cluster: Cluster,
             args: argparse.Namespace, log: Path) -> dict[str, Any]:  # fmt: skip
    n = cluster.nodes
    out: dict[str, Any] = {"tree": str(tree)}
    raw.call("DELETE", NC_PATH)
    raw.call("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{AGENT_NS}/leases")
    wait("every NodeCleanup gone", lambda: raw.count(NC_PATH) == 0, 300)
    # That tree's CRDs: an older operator refuses the fields a newer CRD defaults into every policy (9d96c2e saw
    # thresholds.evictionPercent and called every policy invalid, writing no NodeCleanup at all); an older CRD
    # prunes them on read.
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(tree / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/cleanuppolicies.nodejanitor.io",
                 "crd/nodecleanups.nodejanitor.io")  # fmt: skip
    print(f"[{name}] starting the operator of {tree}", flush=True)
    operator, agents = Operator(kube, tree, log), Agents(cluster, new)
    try:
        took = wait("every NodeCleanup made", lambda: raw.count(NC_PATH) >= n, 1800, 1.0, operator.sample)
        out["first_fill_s"] = round(took, 1)
        out["first_fill_cpu_s"] = round(cpu_seconds(operator.process.pid), 1)
        operator.sample()
        print(f"[{name}] first fill: {took:.1f} s, CPU {out['first_fill_cpu_s']} s, RSS "
              f"{operator.peak_rss / MiB:.0f} MiB", flush=True)  # fmt: skip
        if new:
            bulk(cluster.renew_lease, range(n))
        agents.start()  # (right after the first renewals: each node's next one is due 60 s later, not 180 s)
        t0 = time.monotonic()
        bulk(lambda i: cluster.post_status(i, new), range(n))
        quiet(raw, 5)
        out["first_reports_settled_s"] = round(time.monotonic() - t0 - 5, 1)
        operator.sample()
        out["rss_after_fill_mib"] = round(operator.peak_rss / MiB)
        print(f"[{name}] first reports settled in {out['first_reports_settled_s']} s; RSS {out['rss_after_fill_mib']} "
              "MiB", flush=True)  # fmt: skip

        operator.stop()
        before = apiserver_requests(raw)
        operator = Operator(kube, tree, log)
        took = wait("the restarted operator synced", operator.synced, 1800, 0.2, operator.sample)
        out["restart_sync_s"] = round(took, 1)
        quiet(raw, 10)
        out["restart_writes"] = writes(apiserver_requests(raw) - before, "nodecleanups")
        operator.sample()
        out["rss_mib"] = round(operator.peak_rss / MiB)
        print(f"[{name}] restart: synced in {took:.1f} s, {out['restart_writes']} NodeCleanup writes, RSS "
              f"{out['rss_mib']} MiB", flush=True)  # fmt: skip

        # at rest: what the agents of this tree post when nothing changes
        before, db_before = apiserver_requests(raw), etcd_db_bytes(kube)
        cpu_before, t0 = cpu_seconds(operator.process.pid), time.monotonic()
        time.sleep(args.at_rest)  # (the agents go on posting, `Agents`)
        elapsed = time.monotonic() - t0
        diff = apiserver_requests(raw) - before
        minutes = elapsed / 60
        out["at_rest_s"] = round(elapsed)
        out["status_writes_per_node_min"] = round(writes(diff, "nodecleanups", "status") / n / minutes, 3)
        out["lease_writes_per_node_min"] = round(writes(diff, "leases") / n / minutes, 3)
        out["operator_writes_at_rest"] = writes(diff, "nodecleanups") + writes(diff, "cleanuppolicies", "status")
        out["operator_cpu_pct"] = round(100 * (cpu_seconds(operator.process.pid) - cpu_before) / elapsed, 1)
        out["etcd_growth_mib_per_min"] = round((etcd_db_bytes(kube) - db_before) / MiB / minutes, 2)
        operator.sample()
        print(f"[{name}] steady state {elapsed:.0f} s: status writes/node/min {out['status_writes_per_node_min']}, "
              f"lease writes/node/min {out['lease_writes_per_node_min']}, operator writes "
              f"{out['operator_writes_at_rest']}, operator CPU {out['operator_cpu_pct']}%, etcd DB growth "
              f"{out['etcd_growth_mib_per_min']} MiB/min", flush=True)  # fmt: skip

        try:
            out.update(churn(name, new, raw, cluster, args, operator))
        except Exception as exc:  # (the figures so far are kept)
            print(f"[{name}] churn failed: {exc!r}", flush=True)
            out["churn_error"] = repr(exc)
        operator.sample()
        out["peak_rss_mib"] = round(operator.peak_rss / MiB)
    finally:
        agents.stop()
        operator.stop()
    return out


def churn(name: str, new: bool, raw: Raw, cluster: Cluster, args: argparse.Namespace,
          operator: Operator) -> dict[str, Any]:  # fmt: skip
    """Bare pods at `rate`/s, each bound to a node and using a cached image only that node holds (so its
    protection is that node's business alone); those made 5 s before are deleted."""
    n, rate, seconds = cluster.nodes, args.churn_rate, args.churn
    perm = list(range(n))
    random.Random(7).shuffle(perm)
    count = min(int(rate * seconds) + 1, CACHED_MIN * n)
    plan = [(i, perm[i % n]) for i in range(count)]  # pod i: node perm[i % n], its cached image i // n
    sample, sampled_nodes = set(), set()
    for i in range(0, count, max(1, count // 40)):
        if plan[i][1] not in sampled_nodes:
            sample.add(i)
            sampled_nodes.add(plan[i][1])
    created: dict[int, float] = {}
    seen: dict[int, float] = {}

    def pod_image(i: int) -> str:
        return cached(plan[i][1], i // n)

    def pod(i: int) -> dict[str, Any]:
        spec = {"nodeName": f"n{plan[i][1]:05d}", **LEAN_POD, "containers": [{"name": "c", "image": pod_image(i)}]}
        return {"metadata": {"name": f"churn-{name}-{i}"}, "spec": spec}

    stop = threading.Event()
    watchers = None
    if new:  # the sample nodes' agents: their own node's pod watch (agent.pods)
        targets = {plan[i][1]: (i, pod_image(i)) for i in sample}
        watchers = threading.Thread(target=_agent_watchers, args=(targets, stop, seen), daemon=True)
        watchers.start()
        time.sleep(2)  # (listed before the churn starts; a benchmark's own set-up)
    before = apiserver_requests(raw)
    cpu_before, t0 = cpu_seconds(operator.process.pid), time.monotonic()

    def step(i: int) -> None:
        raw.call("POST", f"/api/v1/namespaces/{NS}/pods", pod(i))
        created[i] = time.monotonic()
        old = i - int(5 * rate)
        if old >= 0 and old not in sample:
            raw.call("DELETE", f"/api/v1/namespaces/{NS}/pods/churn-{name}-{old}?gracePeriodSeconds=0")

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        made = paced(rate, seconds, step, pool)
    churn_elapsed = time.monotonic() - t0

    def protected_by_operator(i: int) -> bool:
        node = plan[i][1]
        spec = raw.call("GET", f"{NC_PATH}/n{node:05d}")["spec"]
        return pod_image(i) in spec.get("protectedImages", [])

    latencies = []
    try:
        for i in sorted(sample):
            if i >= made:
                continue
            if new:
                wait(f"pod {i}'s image protected by its agent", lambda i=i: i in seen, 60, 0.05)
                latencies.append(seen[i] - created[i])
            else:
                wait(f"pod {i}'s image protected by the operator", lambda i=i: protected_by_operator(i), 300, 0.2)
                latencies.append(time.monotonic() - created[i])
        correct_after = max(0.0, time.monotonic() - t0 - churn_elapsed)
    finally:
        stop.set()
    quiet(raw, 5)
    diff = apiserver_requests(raw) - before
    result = {
        "churn_pods": made,
        "churn_rate": round(made / churn_elapsed, 1),
        "churn_operator_writes": writes(diff, "nodecleanups"),
        "churn_protected_max_s": round(max(latencies), 2) if latencies else None,
        "churn_correct_after_churn_s": round(correct_after, 2),
        "churn_operator_cpu_pct": round(
            100 * (cpu_seconds(operator.process.pid) - cpu_before) / (time.monotonic() - t0), 1
        ),
    }
    print(f"[{name}] churn {made} pods at {result['churn_rate']}/s: sample protected within "
          f"{result['churn_protected_max_s']} s of creation, NodeCleanup writes {result['churn_operator_writes']}, "
          f"operator CPU {result['churn_operator_cpu_pct']}%", flush=True)  # fmt: skip

    def remove(i: int) -> None:  # (clean for the next tree)
        with contextlib.suppress(RuntimeError):
            raw.call("DELETE", f"/api/v1/namespaces/{NS}/pods/churn-{name}-{i}?gracePeriodSeconds=0")

    bulk(remove, range(made))
    return result


def _agent_watchers(targets: dict[int, tuple[int, str]], stop: threading.Event, seen: dict[int, float]) -> None:
    """The sample nodes' pod watches, as their agents run them (agent/pods.py, the agent's own aiohttp client):
    `seen[i]` is when pod i's image became protected on its node."""
    from node_janitor.agent.kube import KubeClient
    from node_janitor.agent.pods import NodePods, follow_node_pods

    async def main() -> None:
        client = KubeClient.from_config(os.environ["BENCH_KUBECONFIG"])
        tasks = []
        for node, (i, ref) in targets.items():
            pods = NodePods()

            def changed(pods: NodePods = pods, i: int = i, ref: str = ref) -> None:
                if i not in seen and ref in pods.images():
                    seen[i] = time.monotonic()

            pods.on_change = changed
            tasks.append(asyncio.create_task(follow_node_pods(client, f"n{node:05d}", pods)))
        await asyncio.to_thread(stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--tree", type=Path, default=REPO, help="the new tree (its operator, agent code, crds/)")
    parser.add_argument("--old-tree", type=Path, help="the previous code (git archive 9d96c2e) to compare against")
    parser.add_argument("--at-rest", type=float, default=120.0, help="seconds of steady state per tree")
    parser.add_argument("--churn", type=float, default=20.0, help="seconds of pod churn per tree")
    parser.add_argument("--churn-rate", type=float, default=100.0)
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args()
    kcm = ["--controllers=*," + ",".join(f"-{c}" for c in KCM_OFF)]
    with ControlPlane(workdir("kube"), find_binaries(), manifests=[args.tree / "crds"],
                      extra_controller_manager_args=kcm,
                      extra_apiserver_args=["--max-requests-inflight=800", "--max-mutating-requests-inflight=400"],
                      ) as kube:  # fmt: skip
        os.environ["BENCH_KUBECONFIG"] = str(kube.kubeconfig)
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/nodecleanups.nodejanitor.io")
        raw = Raw(kube)
        cluster = Cluster(raw, args.nodes)
        t0 = time.monotonic()
        took = cluster.create()
        pods = raw.count("/api/v1/pods")
        print(f"created {args.nodes} Nodes, {cluster.deployments} Deployments with 2 ReplicaSets each, {pods} Pods "
              f"in {time.monotonic() - t0:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in took.items())}); "
              f"etcd {etcd_db_bytes(kube) / MiB:.0f} MiB", flush=True)  # fmt: skip
        results: dict[str, Any] = {"nodes": args.nodes, "pods": pods}
        log = workdir("operator") / "operator.log"
        trees = ([("old", args.old_tree, False)] if args.old_tree else []) + [("new", args.tree, True)]
        for name, tree, new in trees:
            results[name] = run_tree(name, tree, new, kube, raw, cluster, args, log)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
        if "old" in results:
            print("ratios old/new:")
            for key, value in results["new"].items():
                old = results["old"].get(key)
                if isinstance(value, int | float) and isinstance(old, int | float) and value:
                    print(f"  {key}: old {old} / new {value} = {old / value:.2f}")


if __name__ == "__main__":
    main()
