"""The agent's API client with its own credentials loader (`node_janitor.agent.credentials`) against the real apiserver:
in-cluster (a ServiceAccount directory with real tokens and the cluster's CA, KUBERNETES_SERVICE_HOST/PORT
pointing at the test apiserver) with the token rotated under it, and an exec plugin whose first token the
apiserver refuses (401: the plugin runs again and the request is retried). Who the apiserver saw: a
SelfSubjectReview ("whoami"), which every authenticated user may create."""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from node_janitor.agent.credentials import load_credentials
from node_janitor.agent.kube import KubeClient, KubeError
from support.kube import ControlPlane

pytestmark = pytest.mark.kube

NAMESPACE = "default"


async def _whoami(client: KubeClient) -> str:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    answer = await client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review)
    return str(answer["status"]["userInfo"]["username"])


def _token(kube: ControlPlane, account: str) -> str:
    if kube.kubectl("get", "serviceaccount", account, "-n", NAMESPACE, check=False).returncode != 0:
        kube.kubectl("create", "serviceaccount", account, "-n", NAMESPACE)
    return kube.kubectl("create", "token", account, "-n", NAMESPACE).stdout.strip()


def _sa_user(account: str) -> str:
    return f"system:serviceaccount:{NAMESPACE}:{account}"


async def test_in_cluster_credentials_follow_the_rotated_token(kube: ControlPlane, tmp_path: Path) -> None:
    first, second = _token(kube, "creds-first"), _token(kube, "creds-second")
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(first)
    (sa / "ca.crt").write_bytes(kube.ca_file.read_bytes())
    address = urlsplit(kube.server)
    env = {"KUBERNETES_SERVICE_HOST": str(address.hostname), "KUBERNETES_SERVICE_PORT": str(address.port)}
    client = KubeClient(load_credentials(environ=env, service_account_dir=sa))
    try:
        assert client.server == kube.server
        assert await _whoami(client) == _sa_user("creds-first")
        new = sa / "token.new"
        new.write_text(second)
        new.rename(sa / "token")  # as the kubelet rotates a projected token
        assert await _whoami(client) == _sa_user("creds-second")
        (sa / "token").write_text("not-a-token")
        with pytest.raises(KubeError) as refused:  # retried once after re-reading, refused again: a clear error
            await _whoami(client)
        assert refused.value.status == 401
    finally:
        await client.close()


async def test_an_exec_plugin_token_refused_is_fetched_again(kube: ControlPlane, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(["expired-or-revoked", _token(kube, "creds-exec")]))
    plugin = tmp_path / "plugin"
    plugin.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""
        import json, pathlib
        tokens = pathlib.Path({str(tokens)!r})
        left = json.loads(tokens.read_text())
        tokens.write_text(json.dumps(left[1:]))
        print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                          "status": {{"token": left[0]}}}}))
    """))  # fmt: skip
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = yaml.safe_load(kube.kubeconfig.read_text())
    config["users"] = [
        {
            "name": "admin",
            "user": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "./plugin",
                    "interactiveMode": "Never",
                }
            },
        }
    ]
    path = tmp_path / "exec.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    client = KubeClient.from_config(str(path))
    try:
        assert await _whoami(client) == _sa_user("creds-exec")  # the first token got a 401: the plugin ran again
        assert json.loads(tokens.read_text()) == []
        assert await _whoami(client) == _sa_user("creds-exec")  # cached: the plugin did not run a third time
    finally:
        await client.close()


@pytest.mark.parametrize(("name", "verified"), [("kubernetes.default.svc", True), ("not-the-apiserver.example", False)])
async def test_tls_server_name_is_the_name_verified(
    kube: ControlPlane, tmp_path: Path, name: str, verified: bool
) -> None:
    """The apiserver's certificate names 127.0.0.1 and kubernetes.default.svc, not the other name."""
    config = yaml.safe_load(kube.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["tls-server-name"] = name
    path = tmp_path / "named.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    client = KubeClient.from_config(str(path))
    try:
        if verified:
            assert await _whoami(client) == "kubernetes-admin"
        else:
            with pytest.raises(KubeError, match="certificate verify failed") as refused:
                await _whoami(client)
            assert refused.value.status == 0
    finally:
        await client.close()
