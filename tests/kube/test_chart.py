"""The Helm chart (charts/node-janitor) and the plain manifests rendered from it (deploy/): lint, render for
several value sets, refuse bad values naming them, pass the apiserver's server-side dry run, and keep the
operator's pod within the `restricted` Pod Security Standard. That deploy/ and the chart's CRD templates are in
sync with the chart and crds/: tests/test_derived_files.py. Installs and upgrades on the apiserver (the CRDs, an
umbrella chart, Helm 3 and 4): tests/kube/test_chart_install.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from support.kube import REPO, ControlPlane, KubectlError

pytestmark = pytest.mark.kube

CHART = REPO / "charts" / "node-janitor"
DEPLOY = REPO / "deploy"

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "k3s-socket": [
        "--set", "agent.containerd.socket=/run/k3s/containerd/containerd.sock",
        "--set", "agent.containerd.root=/var/lib/rancher/k3s/agent/containerd",
    ],
    "host-network": ["--set", "agent.hostNetwork=true", "--set", "operator.hostNetwork=true"],
    "no-default-policy": ["--set", "defaultPolicy.enabled=false"],
    "two-operators": ["--set", "operator.replicas=2"],
    "service-monitor": ["--set", "metrics.serviceMonitor.enabled=true", "--set", "operator.dryRun=true"],
    "no-admission-policy": ["--set", "agent.nodeBoundAdmission.enabled=false"],
    "five-operators": ["--set", "operator.replicas=5"],
    "no-crds": ["--set", "crds.enabled=false"],
    "gke-quota": ["--set", "resourceQuota.enabled=true"],
    "selinux": ["--set", "agent.securityContext.seLinuxOptions.type=spc_t",
                "--set", "operator.securityContext.seLinuxOptions.level=s0:c123\\,c456"],
    "umbrella-global": ["--set", "global.imageRegistry=registry.example.com", "--set", "global.anything.deep=1"],
}  # fmt: skip


def render(kube: ControlPlane, *values: str, release: str = "nj", namespace: str = "node-janitor") -> list[Any]:
    """`helm template` of the chart: its documents (without empty ones)."""
    out = kube.helm("template", release, str(CHART), "--namespace", namespace, *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[Any], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"{len(matches)} {kind} named *{name_suffix}"
    return matches[0]


def pod_spec(docs: list[Any], kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, kind)["spec"]["template"]["spec"]
    return spec


def host_paths(spec: dict[str, Any]) -> dict[str, str]:
    """The agent's hostPath volumes, each as host path -> the path it is mounted at in the container."""
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    return {path: mounts[name] for name, path in volumes.items()}


# --- lint and render --------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_strict(kube: ControlPlane, values: list[str]) -> None:
    result = kube.helm("lint", "--strict", str(CHART), *values)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def is_test_hook(doc: dict[str, Any]) -> bool:
    return bool((doc["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test")


def test_defaults(kube: ControlPlane) -> None:
    docs = render(kube)
    kinds = sorted(d["kind"] for d in docs if not is_test_hook(d))
    assert kinds == sorted([
        "ServiceAccount", "ServiceAccount", *["ClusterRole"] * 4, "ClusterRoleBinding", "ClusterRoleBinding",
        "Service", "Service", "Deployment", "DaemonSet", *["ValidatingAdmissionPolicy"] * 4,
        *["ValidatingAdmissionPolicyBinding"] * 4, "CleanupPolicy",
        *["Role", "RoleBinding"] * 2,  # the agents' Leases: the agent renews its own, the operator lists them
        *["CustomResourceDefinition"] * 4,
    ])  # fmt: skip
    assert sorted(d["kind"] for d in docs if is_test_hook(d)) == [
        "ClusterRole", "ClusterRoleBinding", "Job", "ServiceAccount"]  # fmt: skip
    operator = find(docs, "Deployment")
    assert operator["spec"]["replicas"] == 1
    op = pod_spec(docs, "Deployment")
    assert op["containers"][0]["args"][:3] == ["operator", "--metrics-port=8080", "--peering=nj-node-janitor"]
    assert op["securityContext"]["runAsNonRoot"] is True and "hostNetwork" not in op
    assert op["nodeSelector"] == {"kubernetes.io/os": "linux"}
    # (no ClusterKopfPeering: the operator creates its own, so that `helm install --wait` waits on no hook)
    assert find(docs, "CleanupPolicy")["metadata"]["name"] == "nj-node-janitor-default"

    agent = pod_spec(docs, "DaemonSet")
    container = agent["containers"][0]
    assert container["args"] == [
        "agent", "--node-name=$(NODE_NAME)", "--containerd-socket=/run/containerd/containerd.sock",
        "--containerd-namespace=k8s.io", "--containerd-config=/etc/containerd/config.toml",
        "--pod-log-dir=/var/log/pods", "--state-dir=/var/lib/node-janitor", "--extra-paths-within=/var/log",
        "--metrics-port=9743", "--monitor-interval=2s", "--heartbeat-interval=60s", "--log-format=text",
        "--log-level=info",
    ]  # fmt: skip
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in container["env"]
    assert agent["tolerations"] == [{"operator": "Exists"}]  # every taint
    assert agent["nodeSelector"] == {"kubernetes.io/os": "linux"}  # but never a Windows node
    assert agent["priorityClassName"] == "system-node-critical"
    assert "hostNetwork" not in agent
    assert host_paths(agent) == {
        p: p
        for p in (
            "/run/containerd",
            "/var/lib/containerd",
            "/etc/containerd",
            "/var/log/pods",
            "/var/lib/node-janitor",
            "/var/log",
        )
    }  # /var/log: for logs.extraPaths, which the agent keeps within it (--extra-paths-within)
    readonly = {m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")}
    assert readonly == {"/var/lib/containerd", "/etc/containerd"}  # the runtime's configuration: read, never written
    state = next(v for v in agent["volumes"] if v["name"] == "state")
    assert state["hostPath"]["type"] == "DirectoryOrCreate"
    for spec in (op, agent):
        security = spec["containers"][0]["securityContext"]
        assert security == {
            "allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
        }  # fmt: skip
        assert spec["containers"][0]["resources"]["requests"] and spec["containers"][0]["resources"]["limits"]
        assert {p["name"] for p in spec["containers"][0]["ports"]} == {"metrics"}
    services = {d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for d in docs if d["kind"] == "Service"}
    assert services == {"nj-node-janitor-operator-metrics": 8080, "nj-node-janitor-agent-metrics": 9743}


def test_custom_socket_path(kube: ControlPlane) -> None:
    agent = pod_spec(render(kube, *VALUE_SETS["k3s-socket"]), "DaemonSet")
    assert "--containerd-socket=/run/k3s/containerd/containerd.sock" in agent["containers"][0]["args"]
    paths = host_paths(agent)
    assert paths["/run/k3s/containerd"] == "/run/k3s/containerd"
    assert paths["/var/lib/rancher/k3s/agent/containerd"] == "/var/lib/rancher/k3s/agent/containerd"
    assert "/run/containerd" not in paths and "/var/lib/containerd" not in paths


def test_containerd_config(kube: ControlPlane) -> None:
    """The runtime's configuration (issue 23: the images it pins where CRI does not say them) is read from the path
    given, its directory mounted read-only; empty: nothing mounted, no flag."""
    k3s = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    agent = pod_spec(render(kube, "--set", f"agent.containerd.config={k3s}"), "DaemonSet")
    assert f"--containerd-config={k3s}" in agent["containers"][0]["args"]
    assert host_paths(agent)["/var/lib/rancher/k3s/agent/etc/containerd"] == "/var/lib/rancher/k3s/agent/etc/containerd"
    assert "/etc/containerd" not in host_paths(agent)
    # beside the socket (as in the test beds): the socket's directory is mounted already, not twice
    beside = pod_spec(render(kube, "--set", "agent.containerd.config=/run/containerd/config.toml"), "DaemonSet")
    assert "--containerd-config=/run/containerd/config.toml" in beside["containers"][0]["args"]
    mounts = [m["mountPath"] for m in beside["containers"][0]["volumeMounts"]]
    assert len(mounts) == len(set(mounts)) and "/run/containerd" in mounts
    off = pod_spec(render(kube, "--set", "agent.containerd.config="), "DaemonSet")
    assert not [a for a in off["containers"][0]["args"] if a.startswith("--containerd-config")]
    assert not [p for p in host_paths(off) if "containerd" in p and p not in ("/run/containerd", "/var/lib/containerd")]


def test_host_network(kube: ControlPlane) -> None:
    docs = render(kube, *VALUE_SETS["host-network"])
    for kind in ("DaemonSet", "Deployment"):
        spec = pod_spec(docs, kind)
        assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "hostNetwork" not in pod_spec(render(kube, "--set", "agent.hostNetwork=true"), "Deployment")


def test_metrics_on_the_pod_ip_only(kube: ControlPlane) -> None:
    container = pod_spec(render(kube, "--set", "agent.metricsOnPodIP=true"), "DaemonSet")["containers"][0]
    assert "--metrics-bind-address=$(POD_IP)" in container["args"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
    default = pod_spec(render(kube), "DaemonSet")["containers"][0]
    assert not [a for a in default["args"] if a.startswith("--metrics-bind-address")]
    assert "POD_IP" not in {e["name"] for e in default["env"]}


def test_no_default_policy(kube: ControlPlane, kopf_crds: None) -> None:
    docs = render(kube, *VALUE_SETS["no-default-policy"])
    assert not [d for d in docs if d["kind"] == "CleanupPolicy"]
    assert find(render(kube), "CleanupPolicy")["spec"] == {"priority": -1000}  # (name: test_defaults)
    # (crds.enabled=false: the session's CRDs are kubectl's, which a dry-run install would refuse to adopt)
    notes = kube.helm("install", "nj", str(CHART), "--dry-run", "--set", "crds.enabled=false",
                      *VALUE_SETS["no-default-policy"]).stdout  # fmt: skip
    assert "no policy was installed" in notes and "kubectl get nodecleanups" in notes


def test_more_operator_replicas_than_two(kube: ControlPlane) -> None:
    """No cap at 2: one is active (kopf peering), every other one a standby."""
    docs = render(kube, *VALUE_SETS["five-operators"])
    assert find(docs, "Deployment")["spec"]["replicas"] == 5
    assert find(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_two_operator_replicas(kube: ControlPlane) -> None:
    docs = render(kube, *VALUE_SETS["two-operators"])
    assert find(docs, "Deployment")["spec"]["replicas"] == 2
    anti = pod_spec(docs, "Deployment")["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    assert find(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not [d for d in render(kube) if d["kind"] == "PodDisruptionBudget"]


def test_service_monitor(kube: ControlPlane) -> None:
    docs = render(kube, *VALUE_SETS["service-monitor"])
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert sorted(m["metadata"]["name"] for m in monitors) == ["nj-node-janitor-agent", "nj-node-janitor-operator"]
    assert "--dry-run" in pod_spec(docs, "Deployment")["containers"][0]["args"]
    assert not [d for d in render(kube) if d["kind"] == "ServiceMonitor"]


CRD_NAMES = ["cleanuppolicies.nodejanitor.io", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev",
             "nodecleanups.nodejanitor.io"]  # fmt: skip
HOOK = "helm.sh/hook"


def test_crds_are_templates_behind_values(kube: ControlPlane) -> None:
    """Templates, not the chart's crds/ directory (which helm never upgrades): `helm upgrade` updates them."""
    assert not (CHART / "crds").exists()
    crds = [d for d in render(kube) if d["kind"] == "CustomResourceDefinition"]
    assert sorted(d["metadata"]["name"] for d in crds) == CRD_NAMES
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}  # crds.keep: true
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == "nj"
    # the CRDs as generated from the models: the template adds labels and the annotation only
    generated = yaml.safe_load((REPO / "crds" / "nodejanitor.io_nodecleanups.yaml").read_text())
    rendered = next(d for d in crds if d["metadata"]["name"] == "nodecleanups.nodejanitor.io")
    assert rendered["spec"] == generated["spec"]
    assert rendered["spec"]["names"]["shortNames"] == ["njnc"]  # not a short name of another project
    unkept = [d for d in render(kube, "--set", "crds.keep=false") if d["kind"] == "CustomResourceDefinition"]
    assert len(unkept) == 4 and all("annotations" not in d["metadata"] for d in unkept)
    assert not [d for d in render(kube, *VALUE_SETS["no-crds"]) if d["kind"] == "CustomResourceDefinition"]


def test_the_charts_own_objects_are_hooks_until_their_kinds_are_served(kube: ControlPlane) -> None:
    """On the first install helm cannot map a CleanupPolicy before the release's CRDs exist: it is a post-install
    hook then, owned by the release so that the next upgrade adopts it as a plain object."""
    first = render(kube)
    for kind in ("CleanupPolicy",):
        annotations = find(first, kind)["metadata"]["annotations"]
        assert annotations[HOOK] == "post-install,post-upgrade"
        assert annotations["meta.helm.sh/release-name"] == "nj"
        assert annotations["meta.helm.sh/release-namespace"] == "node-janitor"
        assert find(first, kind)["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    served = render(kube, "--api-versions", "nodejanitor.io/v1alpha1/CleanupPolicy")
    for kind in ("CleanupPolicy",):
        assert "annotations" not in find(served, kind)["metadata"]


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                  "CleanupPolicy"}  # fmt: skip


def test_two_releases_share_no_cluster_scoped_object(kube: ControlPlane) -> None:
    """Every cluster-scoped object but the CRDs carries the release's name (the CRDs are the cluster's: one
    release installs them, others set crds.enabled=false)."""
    names = {}
    for release in ("nj", "nj2"):
        docs = render(kube, release=release, namespace=release)
        scoped = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in CLUSTER_SCOPED}
        assert {kind for kind, _ in scoped} == CLUSTER_SCOPED
        assert all(name.startswith(f"{release}-") for _, name in scoped), scoped
        names[release] = scoped
    assert not names["nj"] & names["nj2"]
    operator_role = find(render(kube, release="nj2", namespace="nj2"), "ClusterRole", "nj2-node-janitor-operator")
    peering_rule = next(r for r in operator_role["rules"] if r.get("resourceNames"))
    assert peering_rule["resourceNames"] == ["nj2-node-janitor"]


def test_aggregated_view_and_edit_roles(kube: ControlPlane) -> None:
    docs = render(kube)
    view, edit = find(docs, "ClusterRole", "-view"), find(docs, "ClusterRole", "-edit")
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k, v in view["metadata"]["labels"].items() if k.startswith(aggregate) and v == "true"} == {
        aggregate + "view", aggregate + "edit", aggregate + "admin"}  # fmt: skip
    assert {k for k, v in edit["metadata"]["labels"].items() if k.startswith(aggregate) and v == "true"} == {
        aggregate + "edit", aggregate + "admin"}  # fmt: skip
    assert view["rules"] == [{"apiGroups": ["nodejanitor.io"], "verbs": ["get", "list", "watch"], "resources": [
        "cleanuppolicies", "cleanuppolicies/status", "nodecleanups", "nodecleanups/status"]}]  # fmt: skip
    assert {r["resources"][0]: r["verbs"] for r in edit["rules"]} == {
        "cleanuppolicies": ["create", "update", "patch", "delete", "deletecollection"],
        "nodecleanups": ["patch"],
    }
    assert not [d for d in render(kube, "--set", "aggregatedRoles.enabled=false") if d["metadata"]["name"].endswith(
        ("-view", "-edit"))]  # fmt: skip


def test_security_contexts_can_be_overridden_selinux_included(kube: ControlPlane) -> None:
    docs = render(kube, *VALUE_SETS["selinux"], "--set", "operator.podSecurityContext.runAsUser=1000")
    agent, op = pod_spec(docs, "DaemonSet"), pod_spec(docs, "Deployment")
    hardened = {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    # merged with the defaults: what was set is added, the rest stays as hardened as before
    assert agent["containers"][0]["securityContext"] == {**hardened, "seLinuxOptions": {"type": "spc_t"}}
    assert op["containers"][0]["securityContext"] == {**hardened, "seLinuxOptions": {"level": "s0:c123,c456"}}
    assert op["securityContext"]["runAsUser"] == 1000 and op["securityContext"]["runAsNonRoot"] is True
    assert agent["securityContext"] == {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False,
                                        "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    job = next(d for d in docs if d["kind"] == "Job")["spec"]["template"]["spec"]
    assert job["containers"][0]["securityContext"] == op["containers"][0]["securityContext"]


def test_resource_quota_for_the_critical_priority_class(kube: ControlPlane) -> None:
    """GKE admits system-node-critical pods outside kube-system only under a ResourceQuota scoped to that class."""
    assert not [d for d in render(kube) if d["kind"] == "ResourceQuota"]
    quota = find(render(kube, *VALUE_SETS["gke-quota"]), "ResourceQuota")
    assert quota["metadata"]["namespace"] == "node-janitor"
    assert quota["spec"] == {"hard": {"pods": "1000"}, "scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["system-node-critical"]}]}}  # fmt: skip


def test_helm_test_job(kube: ControlPlane) -> None:
    docs = render(kube, "--set", "operator.hostNetwork=true")
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == "ghcr.io/node-janitor/node-janitor:0.1.0"  # the chart's image
    assert container["command"] == [
        "/opt/node-janitor/bin/python", "-m", "node_janitor.cli.helmtest", "--namespace=node-janitor",
        "--deployment=nj-node-janitor-operator", "--max-age=5m", "--timeout=120s"]  # fmt: skip
    assert spec["hostNetwork"] is True and spec["serviceAccountName"] == "nj-node-janitor-test"
    assert not [d for d in render(kube, "--set", "tests.enabled=false") if is_test_hook(d)]


BAD_VALUES = {
    "wrong type": (["--set", "operator.replicas=two"], "operator.replicas: Invalid type. Expected: integer"),
    "negative replicas": (["--set", "operator.replicas=-1"], "operator.replicas: Must be greater than or equal to 0"),
    "unknown crds key": (["--set", "crds.keeep=true"], "crds: Additional property keeep is not allowed"),
    "quota of no pods": (["--set", "resourceQuota.pods=0"], "resourceQuota.pods: Must be greater than or equal to 1"),
    "zero test age": (["--set", "tests.maxAge=0s"], "tests.maxAge: Must not validate"),
    "unknown key": (["--set", "agent.hostNetwrok=true"], "agent: Additional property hostNetwrok is not allowed"),
    "unknown top-level key": (["--set", "agents.hostNetwork=true"], "Additional property agents is not allowed"),
    "negative interval": (["--set", "agent.monitorInterval=-2s"], "agent.monitorInterval: Does not match pattern"),
    "zero interval": (["--set", "agent.monitorInterval=0s"], "agent.monitorInterval: Must not validate"),
    "negative heartbeat": (["--set", "agent.heartbeatInterval=-1m"], "agent.heartbeatInterval: Does not match pattern"),
    "interval without unit": (["--set", "agent.monitorInterval=5"], "agent.monitorInterval: Invalid type"),
    "relative path": (["--set", "agent.podLogDir=var/log/pods"], "agent.podLogDir: Does not match pattern"),
    "relative config": (["--set", "agent.containerd.config=config.toml"], "agent.containerd.config: Does not match"),
    "extraPaths host root": (["--set", "agent.extraPathsHostPaths={/}"], "agent.extraPathsHostPaths.0: Does not match"),
    "extraPaths wildcard": (["--set", "agent.extraPathsHostPaths={/var/*}"], "agent.extraPathsHostPaths.0: Does not"),
    "port out of range": (["--set", "agent.metricsPort=70000"], "agent.metricsPort: Must be less than or equal"),
    "bad pull policy": (["--set", "image.pullPolicy=Sometimes"], "image.pullPolicy: image.pullPolicy must be one of"),
    "monitor without service": (
        ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
        "metrics.service.enabled: metrics.service.enabled does not match: true",
    ),
}


@pytest.mark.parametrize(("values", "message"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_refused_naming_the_value(kube: ControlPlane, values: list[str], message: str) -> None:
    for command in (["template", "nj"], ["lint", "--strict"]):
        result = kube.helm(*command, str(CHART), *values, check=False)
        assert result.returncode != 0, f"helm {command[0]} accepted {values}"
        assert message in result.stdout + result.stderr, result.stdout + result.stderr


# That the chart's CRD templates are made from crds/ and that deploy/ is rendered from the chart:
# tests/test_derived_files.py (hack/regen.py --check).


# --- against the apiserver --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kopf_crds(kube: ControlPlane, crds: tuple[str, ...]) -> Iterator[None]:
    kube.kubectl("apply", "-f", str(DEPLOY / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/clusterkopfpeerings.kopf.dev")
    yield


@pytest.fixture
def namespace(kube: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (deleted afterwards, without waiting)."""
    name = "chart-" + request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:40].strip("-")
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")


def test_server_side_dry_run_of_deploy(kube: ControlPlane, kopf_crds: None) -> None:
    """`kubectl apply --dry-run=server -f crds/ -f deploy/crds/ -f deploy/`, with the namespace created
    first (a dry run creates nothing, so the namespaced objects would not find it)."""
    # (a namespace of that name deleted earlier may still be terminating)
    kube.kubectl("wait", "--for=delete", "namespace/node-janitor", "--timeout=120s", check=False)
    kube.kubectl("apply", "-f", str(DEPLOY / "namespace.yaml"))
    try:
        out = kube.kubectl(
            "apply", "--dry-run=server", "-f", str(REPO / "crds"), "-f", str(DEPLOY / "crds"), "-f", str(DEPLOY)
        ).stdout
    finally:
        kube.kubectl("delete", "-f", str(DEPLOY / "namespace.yaml"), "--wait=false")
    for expected in (
        "deployment.apps/node-janitor-operator", "daemonset.apps/node-janitor-agent",
        "validatingadmissionpolicy.admissionregistration.k8s.io/node-janitor-agent-node-bound",
        "cleanuppolicy.nodejanitor.io/node-janitor-default",
        "clusterrole.rbac.authorization.k8s.io/node-janitor-agent",
    ):  # fmt: skip
        assert expected in out, out


def test_server_side_dry_run_of_value_sets(kube: ControlPlane, kopf_crds: None, namespace: str) -> None:
    for name, values in VALUE_SETS.items():
        if name == "service-monitor":
            continue  # needs prometheus-operator's CRD
        docs = render(kube, *values, release=namespace, namespace=namespace)
        kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs))


def _as_pod(docs: list[Any], kind: str, namespace: str) -> str:
    spec = dict(pod_spec(docs, kind), serviceAccountName="default")
    metadata = {"name": kind.lower(), "namespace": namespace}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})


def test_operator_pod_meets_the_restricted_pod_security_standard(kube: ControlPlane, namespace: str) -> None:
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    docs = render(kube, namespace=namespace)
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=_as_pod(docs, "Deployment", namespace))
    assert "created (server dry run)" in result.stdout and "Warning" not in result.stderr, result.stderr
    # The same check refuses the agent (host paths, root): it needs the namespace's privileged level.
    with pytest.raises(KubectlError, match=r'violates PodSecurity "restricted:latest".*"hostPath".*runAsUser=0'):
        kube.kubectl("apply", "--dry-run=server", "-f", "-", input=_as_pod(docs, "DaemonSet", namespace))


def test_agent_pod_asks_for_host_paths_only(kube: ControlPlane, namespace: str) -> None:
    """Under `baseline` the agent is refused for its host paths alone: no privilege, no capability, no host
    namespace (with hostNetwork off) is asked for."""
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")
    docs = render(kube, namespace=namespace)
    with pytest.raises(KubectlError) as refused:
        kube.kubectl("apply", "--dry-run=server", "-f", "-", input=_as_pod(docs, "DaemonSet", namespace))
    message = refused.value.result.stderr
    assert 'violates PodSecurity "baseline:latest": hostPath volumes' in message, message
    reasons = message.split('baseline:latest":', 1)[1]
    assert "privileged" not in reasons and "capabilities" not in reasons and "host namespaces" not in reasons
