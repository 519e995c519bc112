"""`helm install` of charts/node-janitor on the real node (kubelet + kube-scheduler on a private containerd, the
image built here by hack/build-image.py and imported into that containerd): the operator and agent pods become
Ready under the chart's security contexts, the chart's CleanupPolicy yields the node's NodeCleanup whose
status the agent pod fills, `helm test` (the chart's test Job, in the same image) passes, the agent pod rotates a
chatty pod's logs and brings a disk filled over the high watermark back under the low one, `helm upgrade` rolls the
agent out again, and `helm uninstall` removes everything but the CRDs (crds.keep), leaving the images in use on
the node. Once with Helm 3.17, once with Helm 4.

The chart installs its CRDs as templates; the session's control plane has ours applied by kubectl already, so the
install adopts them (`--take-ownership`).

Test-bed specifics, all through the chart's values: pods on the host network with the apiserver's loopback
address in their env (no CNI, nothing routes the Service IP), probes to 127.0.0.1 (`probeHost`), the bed's
socket, containerd root and pod log directory as the agent's host paths, free ports for the metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.agentbed import MiB, build_images, fill_to_percent, image_ids, wait_for, wait_for_disk
from support.kube import REPO, ControlPlane, free_ports
from support.node import NodeFactory, apiserver_env

pytestmark = [pytest.mark.containerd, pytest.mark.kube]

CHART = REPO / "charts" / "node-janitor"
RELEASE, NAMESPACE = "nj", "nj-e2e"  # names no other test uses (deploy/ uses node-janitor)
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
APP_IMAGE = "docker.io/nj-e2e/app:1"
# About 160 KB/s of CRI log: 200 numbered lines every 50 ms.
CHATTY = "while true; do seq 1 200; sleep 0.05; done"
POLICY = {
    "priority": -1000,
    "thresholds": {"highPercent": 70, "lowPercent": 55},
    "images": {"minAge": "0s"},
    "logs": {"maxSize": "256Ki", "maxFiles": 2},
}


def _values(kube: ControlPlane, image: dict[str, str], bed: Any, state_dir: Path) -> dict[str, Any]:
    repository, tag = image["name"].rsplit(":", 1)
    operator_port, agent_port = free_ports(2)
    env = apiserver_env(kube)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "probeHost": "127.0.0.1",
        "operator": {"hostNetwork": True, "metricsPort": operator_port, "extraEnv": env, "peeringName": "nj-e2e"},
        "agent": {
            "hostNetwork": True, "metricsPort": agent_port, "extraEnv": env,
            "containerd": {"socket": bed.address, "root": str(bed.root), "namespace": bed.namespace,
                           "config": str(bed.base / "config.toml")},
            "podLogDir": str(bed.pod_log_dir), "stateDir": str(state_dir),
        },
        "defaultPolicy": {"name": "nj-e2e", "spec": POLICY},
    }  # fmt: skip


def _pods(kube: ControlPlane) -> list[dict[str, Any]]:
    return list(kube.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", INSTANCE)["items"])


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _component(kube: ControlPlane, component: str) -> dict[str, Any]:
    pods = [p for p in _pods(kube) if p["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def _process(argument: str) -> dict[str, str]:
    """/proc/<pid>/status of the one process on this machine whose command line holds `argument`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argument.encode() in cmdline and b"node-janitor" in b" ".join(cmdline):
                status = Path(f"/proc/{pid}/status").read_text()
                found.append(dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line))
        except OSError:
            continue
    assert len(found) == 1, f"{len(found)} processes with {argument}"
    return {k: v.strip() for k, v in found[0].items()}


def _print_logs(pod_log_dir: Path) -> None:
    """The tails of our pods' logs (read from the node's pod log directory, as the test bed wants)."""
    for path in sorted(pod_log_dir.glob(f"{NAMESPACE}_*/*/*.log")):
        print(f"--- {path.relative_to(pod_log_dir)}")
        # (the operator's routine writes left out: they hid the agent's lines once)
        lines = [line for line in path.read_text(errors="replace").splitlines() if "event=write" not in line]
        print("\n".join(lines[-80:]))


def _pod_running(kube: ControlPlane, name: str) -> dict[str, Any] | None:
    pod: dict[str, Any] = kube.kubectl_json("get", "pod", "-n", "default", name)
    return pod if pod["status"].get("phase") == "Running" else None


def _run_app(kube: ControlPlane, node: str) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chatty", "namespace": "default"},
        "spec": {"nodeName": node, "hostNetwork": True, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": APP_IMAGE, "imagePullPolicy": "Never",
                                 "command": ["/bin/sh", "-c", CHATTY]}]},
    }  # fmt: skip
    kube.kubectl("apply", "-f", "-", input=json.dumps(pod))
    return dict(wait_for("the chatty pod running", lambda: _pod_running(kube, "chatty"), 60))


@pytest.fixture(params=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest, kube: ControlPlane) -> Path:
    binary: Path = kube.binaries.helm if request.param == "helm3" else kube.binaries.helm4
    return binary


async def test_helm_install_upgrade_uninstall_on_the_real_node(
    kube: ControlPlane, kube_node: NodeFactory, image: dict[str, str], tmp_path: Path, helm: Path
) -> None:
    # A roomy disk (the image is ~94 MB of blobs and ~310 MB unpacked) and a kubelet that leaves the disk to
    # the agent: eviction only at 5% free, its image GC only above 99%.
    lenient = {"imagefs.available": "5%", "nodefs.available": "5%"}
    node = kube_node("nj-e2e", disk_size=1536 * MiB, eviction_hard=lenient,
                     image_gc_high_threshold_percent=99, image_gc_low_threshold_percent=98)  # fmt: skip
    bed = node.bed
    bed.ctr("images", "import", "--snapshotter", "overlayfs", image["archive"], timeout=300)
    app = bed.builder.build(APP_IMAGE, [bed.builder.busybox_layer()], cmd=("/bin/sh",))
    bed.import_images([app])
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(_values(kube, image, bed, tmp_path / "agent-state")))

    started = time.monotonic()
    # The order the docs give: the namespace, labelled for the agents' host paths, then the install.
    kube.kubectl("create", "namespace", NAMESPACE)
    kube.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=privileged")
    try:
        # --wait, as docs/install.md's command: the operator creates its own ClusterKopfPeering (the chart once
        # made it a post-install hook, which helm runs only after --wait: it timed out, the operator crash-looping)
        kube.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values), "--take-ownership", "--wait",
                  "--timeout=300s", timeout=330, binary=helm)  # fmt: skip
    except BaseException:
        # What did not get ready, then nothing of this release left for the tests after it (its admission
        # policies are cluster-wide: they refused the next test's NodeCleanups once).
        print(kube.kubectl("get", "pods,events", "-n", NAMESPACE, "-o", "wide", check=False).stdout)
        _print_logs(bed.pod_log_dir)
        kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=120s", check=False, timeout=150,
                  binary=helm)  # fmt: skip
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False, timeout=150)
        raise
    installed = time.monotonic() - started
    try:
        pods = wait_for("both pods created", lambda: (ps := _pods(kube)) and len(ps) >= 2 and ps, 60)
        assert sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods) == ["agent", "operator"]
        # helm 3's --wait counts a DaemonSet ready with DesiredNumberScheduled - maxUnavailable ready pods: 1 - 1 = 0
        # on this one-node cluster, so the agent may still be starting when helm returns.
        # (the operator may have restarted once or twice before the hook made its peering: up to 40 s of backoff)
        pods = wait_for("both pods Ready", lambda: (ps := _pods(kube)) and all(_ready(p) for p in ps) and ps, 180)
        assert all(p["spec"]["nodeName"] == node.name for p in pods)

        # The agent pod reads the runtime's configuration through the chart's read-only mount (issue 23).
        config = f"config={bed.base / 'config.toml'} (version 2)"
        wait_for("the agent's runtime line", lambda: any(
            config in p.read_text(errors="replace") for p in bed.pod_log_dir.glob(f"{NAMESPACE}_*agent*/agent/*.log")
        ), 60)  # fmt: skip

        # Each process as the chart asks: the operator not root, the agent root; neither with any capability.
        operator = _process(f"--metrics-port={yaml.safe_load(values.read_text())['operator']['metricsPort']}")
        agent = _process(f"--node-name={node.name}")
        assert operator["Uid"].split()[0] == "65532" and agent["Uid"].split()[0] == "0"
        for process in (operator, agent):
            assert process["CapEff"] == process["CapPrm"] == process["CapBnd"] == "0000000000000000"
            assert process["NoNewPrivs"] == "1" and process["Seccomp"] == "2"  # filter mode: RuntimeDefault

        # The chart's policy -> the operator's NodeCleanup -> the agent pod's report.
        def reported() -> dict[str, Any] | None:
            result = kube.kubectl("get", "nodecleanup", node.name, "-o", "json", check=False)
            cleanup = json.loads(result.stdout) if result.returncode == 0 else {}
            return cleanup if cleanup.get("status", {}).get("heartbeatTime") else None

        cleanup = wait_for("the agent pod's report", reported, 60)
        assert cleanup["spec"]["policy"]["thresholds"]["highPercent"] == 70
        assert [s["name"] for s in cleanup["spec"]["sources"]] == ["nj-e2e"]
        assert cleanup["status"]["imageCount"] >= 2

        # `helm test`: the chart's Job (our image, python -m node_janitor.cli.helmtest) finds the operator ready and
        # this node's report fresh.
        tested = kube.helm("test", RELEASE, "-n", NAMESPACE, "--timeout=300s", timeout=330, binary=helm)
        assert re.search(r"TEST SUITE:\s+nj-node-janitor-test", tested.stdout), tested.stdout
        assert re.search(r"Phase:\s+Succeeded", tested.stdout), tested.stdout

        # The agent pod rotates a chatty pod's logs (as root, without capabilities: the files are root's).
        chatty = _run_app(kube, node.name)
        log_dir = bed.pod_log_dir / f"default_chatty_{chatty['metadata']['uid']}" / "main"
        rotated = wait_for("a rotated log", lambda: [n for n in os.listdir(log_dir) if re.match(r"0\.log\.\d", n)], 60)
        assert rotated
        # maxFiles 2: the live file and one rotated one (briefly one more, until the next tidy-up)
        wait_for("maxFiles kept", lambda: len(os.listdir(log_dir)) <= 2, 30)

        # Over the high watermark with images nobody uses: the agent pod brings the disk under the low one.
        # The ballast first (data it does not own, at 50%), then the junk, which takes the disk over 70%. (The other
        # way round, the fill-rate prediction removed half the junk while it was imported, before the ballast was
        # sized, so the ballast alone then held the disk above 55%: what the agent must not chase.)
        junk = build_images(bed, "e2e-junk", 4, size=64 * MiB)
        usage = bed.usage()
        assert 4 * 128 * MiB >= 0.25 * (usage.used + usage.available)  # the junk (blobs and snapshots) is 25% or more
        fill_to_percent(bed, 50)
        bed.import_images(junk)
        # (the agent may be at work already, on the watermark or ahead of it on the fill rate)
        wait_for_disk(bed, 55, timeout=90)
        last = wait_for("the watermark run's report",
                        lambda: (r := (reported() or {}).get("status", {}).get("lastRun") or {}).get("reclaimedBytes")
                        and r, 30)  # fmt: skip
        # (a fill this fast may be seen first by the fill-rate prediction, which runs the same plan ahead of the mark)
        assert last["trigger"] in ("watermark", "prediction") and last["reclaimedBytes"] >= 64 * MiB
        remaining = await image_ids(bed)
        assert {i.id for i in junk} - remaining  # removed until the low watermark was met (LRU)
        assert {app.id, image["id"]} <= remaining  # in use: the chatty pod's and our own
        # and its Event on the Node, posted with its pod-bound token through the node-bound admission policy
        done = wait_for("the agent's CleanupDone Event on its Node", lambda: [
            e for e in kube.kubectl_json("get", "events", "-n", "default",
                                         f"--field-selector=involvedObject.name={node.name},reason=CleanupDone")["items"]
            if e.get("reportingComponent") == "node-janitor-agent"
            and re.search(r"(watermark|prediction) run removed", e["message"])],
            30)  # fmt: skip
        assert done[0]["source"]["host"] == node.name

        # `node-janitor run NODE --dry-run --wait`: the request goes through the NodeCleanup to the agent pod, which
        # answers with its plan; nothing is removed.
        before_run = await image_ids(bed)
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "node_janitor", "run", node.name, "--dry-run", "--wait", "--timeout=90s",
             f"--kubeconfig={kube.kubeconfig}"], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"dry run (nothing removed) on {node.name}: trigger request" in result.stdout
        assert "imagefs" in result.stdout
        assert await image_ids(bed) == before_run

        # helm upgrade with changed values rolls the agent out.
        before = _component(kube, "agent")["metadata"]["uid"]
        kube.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values),
                  "--set", "agent.monitorInterval=1s", "--wait", "--timeout=300s", timeout=330,
                  binary=helm)  # fmt: skip
        kube.kubectl("rollout", "status", "-n", NAMESPACE, f"daemonset/{RELEASE}-node-janitor-agent", "--timeout=120s")
        after = wait_for("the new agent pod Ready",
                         lambda: (p := _component(kube, "agent"))["metadata"]["uid"] != before and _ready(p) and p,
                         120)  # fmt: skip
        assert "--monitor-interval=1s" in after["spec"]["containers"][0]["args"]
    finally:
        _print_logs(bed.pod_log_dir)
        kube.helm(
            "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=120s", check=False, timeout=150, binary=helm
        )

    # Everything but the CRDs is gone; the images in use stay.
    wait_for("the release's pods gone", lambda: not _pods(kube), 90)
    for kind in ("deployments,daemonsets,services,serviceaccounts,jobs",):
        assert not kube.kubectl_json("get", kind, "-n", NAMESPACE, "-l", INSTANCE)["items"]
    for kind in ("clusterroles", "clusterrolebindings", "validatingadmissionpolicies", "cleanuppolicies",
                 "clusterkopfpeerings"):  # fmt: skip
        assert not kube.kubectl_json("get", kind, "-l", INSTANCE)["items"], kind
    for crd in ("cleanuppolicies.nodejanitor.io", "nodecleanups.nodejanitor.io", "clusterkopfpeerings.kopf.dev"):
        kube.kubectl("get", "crd", crd)
    remaining = await image_ids(bed)
    assert {app.id, image["id"]} <= remaining
    assert kube.kubectl_json("get", "pod", "-n", "default", "chatty")["status"]["phase"] == "Running"
    print(f"helm install --wait: {installed:.1f}s")
    # Nothing of this run left for the next helm's: its pod, its node's NodeCleanup (the operator's, outliving it)
    kube.kubectl("delete", "pod", "-n", "default", "chatty", "--wait=true", "--timeout=60s")
    kube.kubectl("delete", "nodecleanup", node.name, "--ignore-not-found")
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s")  # (the next helm's run makes it)
