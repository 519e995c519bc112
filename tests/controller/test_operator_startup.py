"""The operator's start-up dependencies against the real apiserver: each missing one is one line naming it and
its fix, within seconds, and exit code 2 (kopf alone would wait in silence); /readyz says what it waits for
while the apiserver does not answer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from support.kube import REPO, ControlPlane, free_ports
from support.operator import START_DEADLINE, Operator
from support.poll import wait_for

pytestmark = pytest.mark.kube

PEERING_CRD = "crd/clusterkopfpeerings.kopf.dev"


def _exits(op: Operator, timeout: float = 20) -> tuple[int, float, list[str]]:
    """Its exit code, how long it ran and its error lines."""
    started = time.monotonic()
    try:
        code = wait_for("the operator to exit", lambda: op.process.poll(), timeout, retry_on=())
    except BaseException:
        print(op.log_tail())
        op.stop()
        raise
    op.stop()
    errors = [line for line in op.log_text().splitlines() if "error" in line.lower()]
    return code, time.monotonic() - started, errors


def _peering_crd(kube: ControlPlane) -> None:
    kube.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", PEERING_CRD)


def test_a_missing_peering_object_is_created(kube: ControlPlane, crds: object, tmp_path: Path) -> None:
    """The chart renders no ClusterKopfPeering (helm could make it only as a post-install hook, which `helm install
    --wait` runs after the operator is ready: it timed out). The operator creates it and starts."""
    _peering_crd(kube)
    kube.kubectl("delete", "clusterkopfpeering", "nj-new-peering", "--ignore-not-found")
    op = Operator(kube, tmp_path, "--peering=nj-new-peering")
    try:
        wait_for(
            "the operator's /readyz", lambda: op.process.poll() is None and op.get("/readyz")[0] == 200, START_DEADLINE
        )
        peering = kube.kubectl_json("get", "clusterkopfpeering", "nj-new-peering")
        assert peering["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "node-janitor-operator"
        # kopf keeps its record in it: the peering is in use, not only created
        wait_for("the operator's keep-alive in the peering", lambda: kube.kubectl_json(
            "get", "clusterkopfpeering", "nj-new-peering").get("status"), 30)  # fmt: skip
    finally:
        op.stop()
        kube.kubectl("delete", "clusterkopfpeering", "nj-new-peering", "--ignore-not-found")


def test_a_peering_deleted_while_it_runs_is_created_again(
    kube: ControlPlane, crds: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `helm upgrade` from a chart that rendered the peering deletes it (it is no longer in the release), as may
    a person: kopf's keep-alive then patches nothing, in silence, and replicas stop seeing each other. The
    operator checks it (every 60 s; 1 s here) and creates it again."""
    _peering_crd(kube)
    monkeypatch.setenv("NODE_JANITOR_PEERING_CHECK_SECONDS", "1")
    op = Operator(kube, tmp_path, "--peering=nj-kept-peering")
    try:
        wait_for("the operator's /readyz", lambda: op.process.poll() is None and op.get("/readyz")[0] == 200,
                 START_DEADLINE)  # fmt: skip
        first = kube.kubectl_json("get", "clusterkopfpeering", "nj-kept-peering")["metadata"]["uid"]
        kube.kubectl("delete", "clusterkopfpeering", "nj-kept-peering")
        got = lambda: kube.kubectl("get", "clusterkopfpeering", "nj-kept-peering", "-o", "json", check=False)  # noqa: E731
        again = json.loads(wait_for("the peering created again", lambda: (r := got()).returncode == 0 and r.stdout, 30))
        assert again["metadata"]["uid"] != first
        assert "event=peering-missing name=nj-kept-peering" in op.log_text()
        assert op.process.poll() is None
    finally:
        op.stop()
        kube.kubectl("delete", "clusterkopfpeering", "nj-kept-peering", "--ignore-not-found")


def test_a_missing_peering_object_it_may_not_create_is_one_line_and_exit_code_2(
    kube: ControlPlane, crds: object, tmp_path: Path
) -> None:
    from node_janitor.controller.preflight import required_access

    _peering_crd(kube)
    # every right the operator checks, and not create on clusterkopfpeerings
    rules = [{"apiGroups": [a.group], "resources": [f"{a.resource}/{a.subresource}" if a.subresource else a.resource],
              "verbs": [a.verb], **({"resourceNames": [a.name]} if a.name else {})}
             for a in required_access("nj-no-such-peering")]  # fmt: skip
    sa, ns = "nj-startup-nocreate", "default"
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": sa}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": sa},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": sa},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]},
    ]  # fmt: skip
    for obj in objects:
        kube.kubectl("apply", "-f", "-", input=json.dumps(obj))
    try:
        token = kube.kubectl("create", "token", sa, "-n", ns).stdout.strip()
        config = kube.token_kubeconfig(token, sa)
        code, took, errors = _exits(Operator(kube, tmp_path, f"--kubeconfig={config}", "--peering=nj-no-such-peering"))
        print(f"exit {code} after {took:.1f} s")
        assert code == 2
        assert len(errors) == 1, errors
        assert "the ClusterKopfPeering 'nj-no-such-peering' does not exist and the operator may not create it" in (
            errors[0]), errors  # fmt: skip
        assert "--standalone" in errors[0]
    finally:
        kube.kubectl("delete", "clusterrolebinding,clusterrole", sa, "--ignore-not-found")
        kube.kubectl("delete", "serviceaccount", sa, "-n", ns, "--ignore-not-found")


def test_a_missing_peering_crd_is_one_line_and_exit_code_2(kube: ControlPlane, crds: object, tmp_path: Path) -> None:
    """As docs/install.md's `kubectl apply -f crds/` leaves it: kopf's peering CRD is in deploy/crds/ only."""
    kube.kubectl("delete", PEERING_CRD, "--ignore-not-found", "--wait=true")
    try:
        wait_for("the peering CRD gone", lambda: "clusterkopfpeerings" not in kube.kubectl("api-resources").stdout)
        code, took, errors = _exits(Operator(kube, tmp_path, "--peering=node-janitor"))
        print(f"exit {code} after {took:.1f} s")
        assert code == 2
        assert len(errors) == 1, errors
        assert "kopf's peering CRD (clusterkopfpeerings.kopf.dev) is not installed" in errors[0], errors
        assert "--standalone" in errors[0]
    finally:
        _peering_crd(kube)


def test_missing_rbac_is_one_line_naming_the_rights(kube: ControlPlane, crds: object, tmp_path: Path) -> None:
    kube.kubectl("create", "serviceaccount", "nj-startup-nobody", "-n", "default")
    try:
        token = kube.kubectl("create", "token", "nj-startup-nobody", "-n", "default").stdout.strip()
        nobody = kube.token_kubeconfig(token, "nj-startup-nobody")
        code, _, errors = _exits(Operator(kube, tmp_path, f"--kubeconfig={nobody}", "--standalone"))
        assert code == 2
        assert len(errors) == 1, errors
        assert "RBAC does not let the operator list cleanuppolicies.nodejanitor.io, watch cleanuppolicies" in errors[0]
        assert "create events" in errors[0]
    finally:
        kube.kubectl("delete", "serviceaccount", "nj-startup-nobody", "-n", "default")


def test_readyz_says_it_waits_for_the_apiserver(kube: ControlPlane, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    text = kube.kubeconfig.read_text()
    server = next(line.split("server:", 1)[1].strip() for line in text.splitlines() if "server:" in line)
    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text(text.replace(server, f"https://127.0.0.1:{port}"))
    op = Operator(kube, tmp_path, f"--kubeconfig={nowhere}", "--standalone")
    try:
        # The first answer may still be "checking start-up dependencies"; both are 503. Wait for the one that
        # names the apiserver, and check every answer seen on the way was "not ready".
        seen: list[int] = []

        def waiting() -> tuple[int, str] | None:
            status, body = op.get("/readyz")
            if status:
                seen.append(status)
            return (status, body) if "waiting for the apiserver" in body else None

        status, body = wait_for("/readyz naming the apiserver", waiting, 20)
        assert status == 503 and f"waiting for the apiserver at https://127.0.0.1:{port}" in body, body
        assert set(seen) == {503}, seen
        assert op.process.poll() is None
        waiting = [line for line in op.log_text().splitlines() if "event=start-waiting" in line]
        assert len(waiting) == 1, op.log_tail()
    finally:
        op.stop()
