"""The chart installed and upgraded on the real apiserver, with Helm 3.17 and Helm 4 alike: its CRDs are templates,
so `helm upgrade` to a chart whose CRD gained a field makes the apiserver accept that field (it refused it before:
server-side field validation); an umbrella chart with ours as a file:// dependency lints, renders and installs
(our values schema accepts `global`).

The session's control plane has our CRDs applied by kubectl already (the `kube` fixture): the chart adopts them
with `--take-ownership`, and each test puts them back as they were. No pod of these releases runs (no operator
replica, the agent's node selector matches no node): only the API objects matter here."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.kube import REPO, ControlPlane, KubectlError

pytestmark = pytest.mark.kube

CHART = REPO / "charts" / "node-janitor"
POLICY_CRD = "cleanuppolicies.nodejanitor.io"
NO_PODS = ["--set", "operator.replicas=0", "--set-string", "agent.nodeSelector.nj-test/no-such-node=true",
           "--set", "tests.enabled=false"]  # fmt: skip


def _regen() -> Any:
    spec = importlib.util.spec_from_file_location("regen", REPO / "hack" / "regen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest, kube: ControlPlane) -> Path:
    binary: Path = kube.binaries.helm if request.param == "helm3" else kube.binaries.helm4
    version = kube.helm("version", "--short", binary=binary).stdout
    assert version.startswith("v3.17." if request.param == "helm3" else "v4.3."), version
    return binary


@pytest.fixture
def restored_crds(kube: ControlPlane, crds: tuple[str, ...]) -> Iterator[None]:
    """Our CRDs put back afterwards as the session had them (spec, labels, annotations), and kopf's applied."""
    kube.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))
    saved = {name: kube.kubectl_json("get", "crd", name) for name in crds}
    yield
    for name, before in saved.items():
        now = kube.kubectl_json("get", "crd", name)
        now["spec"] = before["spec"]
        for key in ("labels", "annotations"):
            now["metadata"][key] = before["metadata"].get(key) or {}
        kube.kubectl("replace", "-f", "-", input=json.dumps(now))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in crds))


def chart_whose_policy_crd_gained_a_field(tmp_path: Path) -> Path:
    """A copy of the chart, version 0.1.1, whose CleanupPolicy CRD has a new field spec.testOnlyNote (made by
    hack/regen.py's own template function from the changed CRD)."""
    copy = tmp_path / "node-janitor"
    shutil.copytree(CHART, copy)
    crd = yaml.safe_load((REPO / "crds" / "nodejanitor.io_cleanuppolicies.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["testOnlyNote"] = {"type": "string", "description": "A field the next release adds."}
    template = _regen().chart_crd_template(yaml.safe_dump(crd, sort_keys=False), "nodejanitor.io_cleanuppolicies.yaml")
    (copy / "templates" / "crds" / "nodejanitor.io_cleanuppolicies.yaml").write_text(template)
    chart = copy / "Chart.yaml"
    chart.write_text(chart.read_text().replace("\nversion: 0.1.0\n", "\nversion: 0.1.1\n"))
    return copy


def policy_with_the_new_field(name: str) -> str:
    return json.dumps({"apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": name},
                       "spec": {"priority": 1, "testOnlyNote": "kept"}})  # fmt: skip


def test_helm_upgrade_updates_the_crds(kube: ControlPlane, helm: Path, restored_crds: None, tmp_path: Path) -> None:
    release = f"crd-{helm.parent.name.split('-')[1].split('.')[0]}"  # crd-v3, crd-v4
    namespace = release
    policy = f"{release}-new-field"
    kube.kubectl("create", "namespace", namespace)
    try:
        kube.helm("install", release, str(CHART), "-n", namespace, "--take-ownership", *NO_PODS, "--wait",
                  "--timeout=120s", binary=helm)  # fmt: skip
        crd = kube.kubectl_json("get", "crd", POLICY_CRD)
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release  # the release owns it now
        # The field is unknown to the installed CRD: the apiserver refuses it (server-side field validation).
        with pytest.raises(KubectlError, match=r'unknown field "spec.testOnlyNote"'):
            kube.kubectl("apply", "-f", "-", input=policy_with_the_new_field(policy))

        # Helm 4 applies server-side: the CRDs' fields are also kubectl's (the session applied them), whose values
        # it changes now, so it must force those conflicts (a CRD only helm ever wrote needs no force).
        force = ["--force-conflicts"] if helm == kube.binaries.helm4 else []
        kube.helm("upgrade", release, str(chart_whose_policy_crd_gained_a_field(tmp_path)), "-n", namespace,
                  *NO_PODS, *force, "--wait", "--timeout=120s", binary=helm)  # fmt: skip
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{POLICY_CRD}")
        kube.kubectl("apply", "-f", "-", input=policy_with_the_new_field(policy))
        assert kube.kubectl_json("get", "cleanuppolicy", policy)["spec"]["testOnlyNote"] == "kept"
        # The chart's own policy: created as a hook or adopted, now a plain object of the release.
        adopted = kube.kubectl_json("get", "cleanuppolicy", f"{release}-node-janitor-default")
        assert adopted["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    finally:
        kube.kubectl("delete", "cleanuppolicy", policy, "--ignore-not-found", check=False)
        kube.helm("uninstall", release, "-n", namespace, "--wait", "--timeout=120s", check=False, binary=helm)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    # crds.keep: the CRDs outlive the release (and with them every policy)
    assert kube.kubectl_json("get", "crd", POLICY_CRD)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_an_umbrella_chart_with_ours_as_a_dependency(kube: ControlPlane, helm: Path, restored_crds: None,
                                                     tmp_path: Path) -> None:  # fmt: skip
    """As Argo CD or Flux users do: ours as a file:// dependency, `global` values set (our schema accepts them)."""
    umbrella = tmp_path / "platform"
    umbrella.mkdir()
    (umbrella / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "node-janitor", "version": "0.1.0", "repository": f"file://{CHART}"}],
    }))  # fmt: skip
    (umbrella / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example.com", "labels": {"team": "platform"}},
        "node-janitor": {"crds": {"enabled": False}, "operator": {"replicas": 0}, "tests": {"enabled": False},
                         "agent": {"nodeSelector": {"nj-test/no-such-node": "true"}}},
    }))  # fmt: skip
    (umbrella / "templates").mkdir()  # the umbrella's own object, reading the global values it shares
    (umbrella / "templates" / "platform.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-platform\n"
        "data:\n  team: {{ .Values.global.labels.team | quote }}\n"
    )
    kube.helm("dependency", "build", str(umbrella), binary=helm)
    lint = kube.helm("lint", "--strict", str(umbrella), binary=helm)
    assert "0 chart(s) failed" in lint.stdout and "[ERROR]" not in lint.stdout, lint.stdout
    release = f"umbrella-{helm.parent.name.split('-')[1].split('.')[0]}"
    docs = [d for d in yaml.safe_load_all(kube.helm("template", release, str(umbrella), "-n", release,
                                                     binary=helm).stdout) if d]  # fmt: skip
    assert {d["kind"] for d in docs} >= {"Deployment", "DaemonSet", "CleanupPolicy", "ConfigMap"}
    assert not [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    kube.kubectl("create", "namespace", release)
    try:
        kube.helm("install", release, str(umbrella), "-n", release, "--wait", "--timeout=120s", binary=helm)
        deployment = kube.kubectl_json("get", "deployment", "-n", release, f"{release}-node-janitor-operator")
        assert deployment["spec"]["replicas"] == 0
        assert kube.kubectl_json("get", "cleanuppolicy", f"{release}-node-janitor-default")["spec"]["priority"] == -1000
    finally:
        kube.helm("uninstall", release, "-n", release, "--wait", "--timeout=120s", check=False, binary=helm)
        kube.kubectl("delete", "namespace", release, "--wait=false", check=False)
