"""The operator's start-up dependencies against the real apiserver: each missing one is one line naming it and
its fix, within seconds, and exit code 2 (kopf alone would wait in silence); /readyz says what it waits for
while the apiserver does not answer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.kube import REPO, ControlPlane, free_ports
from support.operator import Operator
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


def test_a_missing_peering_object_is_one_line_and_exit_code_2(kube: ControlPlane, crds: object, tmp_path: Path) -> None:
    _peering_crd(kube)
    code, took, errors = _exits(Operator(kube, tmp_path, "--peering=nj-no-such-peering"))
    print(f"exit {code} after {took:.1f} s")
    assert code == 2
    assert len(errors) == 1, errors
    assert "the ClusterKopfPeering 'nj-no-such-peering' does not exist" in errors[0], errors
    assert "--standalone" in errors[0]


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
