"""The agent's own credentials loader (`node_janitor.agent.credentials`) against real files: kubeconfigs in YAML and
JSON, certificates made by `openssl`, token files rewritten as the kubelet rotates them, exec plugins as small
scripts; the same answers as the kubernetes client's loader; and the agent's import path never importing the
`kubernetes` package (a subprocess). Against the real apiserver: tests/agent/test_agent_credentials.py."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_janitor.agent.credentials import Auth, ClientCert, CredentialsError, KubeCredentials, load_credentials

EXEC_V1 = "client.authentication.k8s.io/v1"


def _openssl_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed EC certificate and its key, made by openssl: (cert, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", f"/CN={name}", "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key = _openssl_pair(directory, "ca")
    cert, key = _openssl_pair(directory, "client")
    return {"ca": ca, "ca_key": ca_key, "cert": cert, "key": key}


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _kubeconfig(
    clusters: dict[str, dict[str, Any]],
    users: dict[str, dict[str, Any]],
    contexts: dict[str, tuple[str, str]],
    current: str | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [{"name": n, "context": {"cluster": c, "user": u}} for n, (c, u) in contexts.items()],
    }
    if current:
        config["current-context"] = current
    return config


def _write(path: Path, config: dict[str, Any], as_json: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config) if as_json else yaml.safe_dump(config))
    return path


def _auth(credentials: KubeCredentials) -> Auth:
    return asyncio.run(credentials.auth())


def _rotate(path: Path, token: str) -> None:
    """As the kubelet's atomic writer: a new file renamed over the old one."""
    new = path.with_name(path.name + ".new")
    new.write_text(token)
    new.rename(path)


NO_CLUSTER: dict[str, str] = {}  # environ without KUBERNETES_SERVICE_HOST


# --- kubeconfig files -------------------------------------------------------------------------------------


def test_a_yaml_kubeconfig_with_relative_paths_resolved_against_its_directory(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    for name in ("ca", "cert", "key"):
        (conf / "tls").mkdir(exist_ok=True)
        (conf / "tls" / pki[name].name).write_bytes(pki[name].read_bytes())
    (conf / "token").write_text("file-token\n")
    path = _write(conf / "config", _kubeconfig(
        {"c": {"server": "https://[::1]:6443/", "certificate-authority": "tls/ca.crt"}},
        {"u": {"client-certificate": "tls/client.crt", "client-key": "tls/client.key", "tokenFile": "token"}},
        {"ctx": ("c", "u")}, current="ctx",
    ))  # fmt: skip
    os.chdir(tmp_path)  # relative to the kubeconfig, not to the working directory
    credentials = load_credentials(str(path), environ=NO_CLUSTER)
    assert credentials.server == "https://[::1]:6443"
    assert credentials.ca_data == pki["ca"].read_text()
    assert credentials.cert == ClientCert(pki["cert"].read_bytes(), pki["key"].read_bytes())
    assert _auth(credentials) == Auth(token="file-token", cert=credentials.cert)
    assert credentials.ssl_context(credentials.cert) is not None


def test_data_fields_win_over_files_and_json_needs_no_yaml(tmp_path: Path, pki: dict[str, Path]) -> None:
    path = _write(tmp_path / "config.json", _kubeconfig(
        {"c": {"server": "https://127.0.0.1:1", "certificate-authority-data": _b64(pki["ca"]),
               "certificate-authority": "/nonexistent/ca.crt", "tls-server-name": "kubernetes"}},
        {"u": {"client-certificate-data": _b64(pki["cert"]), "client-key-data": _b64(pki["key"]), "token": "t"}},
        {"ctx": ("c", "u")}, current="ctx",
    ), as_json=True)  # fmt: skip
    credentials = load_credentials(str(path), environ=NO_CLUSTER)
    assert credentials.ca_data == pki["ca"].read_text() and credentials.tls_server_name == "kubernetes"
    assert _auth(credentials).token == "t" and credentials.cert is not None


def test_kubeconfig_env_with_several_files_first_wins_per_key(tmp_path: Path) -> None:
    first = _write(tmp_path / "a" / "config", _kubeconfig(
        {"shared": {"server": "https://first:1", "insecure-skip-tls-verify": True}},
        {"shared": {"token": "first-token"}},
        {"ctx": ("shared", "shared")},
    ))  # fmt: skip
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "token").write_text("second-only")
    second = _write(tmp_path / "b" / "config", _kubeconfig(
        {"shared": {"server": "https://second:2"}, "only2": {"server": "http://only2:3"}},
        {"shared": {"token": "second-token"}, "only2": {"tokenFile": "token"}},
        {"ctx": ("only2", "only2"), "other": ("only2", "only2")},
        current="ctx",
    ))  # fmt: skip
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "missing"), str(first), "", str(second)])}
    # current-context from the only file that sets it; the context "ctx" from the first file that has it
    credentials = load_credentials(environ=env)
    assert credentials.server == "https://first:1" and credentials.insecure
    assert _auth(credentials).token == "first-token"
    # another context, from the second file, its tokenFile relative to the second file's directory
    other = load_credentials(context="other", environ=env)
    assert (other.server, _auth(other).token, other.ssl_context(None)) == ("http://only2:3", "second-only", None)


def test_home_kubeconfig_when_no_env(tmp_path: Path) -> None:
    _write(tmp_path / ".kube" / "config", _kubeconfig({"c": {"server": "http://h:1"}}, {}, {"x": ("c", "")}, "x"))
    credentials = load_credentials(environ={"HOME": str(tmp_path)})
    assert credentials.server == "http://h:1" and _auth(credentials) == Auth()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("clusters: [", "malformed YAML at line 2"),
        ("- a list", "its top level is not a mapping"),
        ({"clusters": [], "contexts": []}, "no current-context"),
        ({"current-context": "nope"}, "context 'nope' not found"),
        ({"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]},
         "cluster 'c' of context 'x' not found"),
        ({"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
          "clusters": [{"name": "c", "cluster": {"server": "https://s"}}]}, "user 'u' of context 'x' not found"),
        (_kubeconfig({"c": {"server": "s:443"}}, {}, {"x": ("c", "")}, "x"), "is not an http(s) URL"),
        (_kubeconfig({"c": {"server": "https://s", "certificate-authority": "missing.crt"}}, {}, {"x": ("c", "")},
                     "x"), "cannot read certificate-authority"),
        (_kubeconfig({"c": {"server": "https://s", "certificate-authority-data": "not base64!"}}, {},
                     {"x": ("c", "")}, "x"), "certificate-authority-data is not base64"),
        (_kubeconfig({"c": {"server": "https://s", "certificate-authority-data": base64.b64encode(b"junk").decode()}},
                     {}, {"x": ("c", "")}, "x"), "bad TLS material"),
        (_kubeconfig({"c": {"server": "https://s"}}, {"u": {"tokenFile": "missing-token"}}, {"x": ("c", "u")}, "x"),
         "cannot read token file"),
        (_kubeconfig({"c": {"server": "https://s"}}, {"u": {"auth-provider": {"name": "oidc"}}}, {"x": ("c", "u")},
                     "x"), "auth-provider 'oidc' is not supported"),
        (_kubeconfig({"c": {"server": "https://s"}}, {"u": {"username": "a", "password": "b"}}, {"x": ("c", "u")},
                     "x"), "basic auth"),
        (_kubeconfig({"c": {"server": "https://s"}}, {"u": {"exec": {"command": "x", "apiVersion": "v1"}}},
                     {"x": ("c", "u")}, "x"), "apiVersion 'v1' is not one of"),
        (_kubeconfig({"c": {"server": "https://s"}}, {"u": {"exec": {
            "command": "x", "apiVersion": EXEC_V1, "interactiveMode": "Always"}}}, {"x": ("c", "u")}, "x"),
         "interactiveMode Always"),
    ],
)  # fmt: skip
def test_bad_kubeconfigs_are_one_line_errors(tmp_path: Path, config: str | dict[str, Any], message: str) -> None:
    path = tmp_path / "config"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    with pytest.raises(CredentialsError) as raised:
        load_credentials(str(path), environ=NO_CLUSTER)
    assert message in str(raised.value) and "\n" not in str(raised.value), raised.value
    assert str(path) in str(raised.value)


def test_a_missing_kubeconfig_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"cannot read kubeconfig .*missing: No such file"):
        load_credentials(str(tmp_path / "missing"), environ=NO_CLUSTER)
    with pytest.raises(CredentialsError, match=r"no kubeconfig: .*does not exist"):
        load_credentials(environ={"KUBECONFIG": str(tmp_path / "missing")})
    with pytest.raises(CredentialsError, match="context 'nope' not found"):  # --context given, not in the file
        path = _write(tmp_path / "c", _kubeconfig({"c": {"server": "http://s"}}, {}, {"x": ("c", "")}, "x"))
        load_credentials(str(path), context="nope", environ=NO_CLUSTER)


# --- in-cluster -------------------------------------------------------------------------------------------


def _service_account(tmp_path: Path, pki: dict[str, Path], token: str = "sa-token-1") -> Path:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(pki["ca"].read_bytes())
    return directory


@pytest.mark.parametrize(("host", "server"), [("10.96.0.1", "https://10.96.0.1:443"),
                                              ("fd00:10:96::1", "https://[fd00:10:96::1]:443")])  # fmt: skip
def test_in_cluster_token_re_read_as_it_rotates(tmp_path: Path, pki: dict[str, Path], host: str, server: str) -> None:
    sa = _service_account(tmp_path, pki)
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443"}
    credentials = load_credentials(environ=env, service_account_dir=sa)
    assert (credentials.server, credentials.source) == (server, "in-cluster")
    assert credentials.ca_data == pki["ca"].read_text()
    assert _auth(credentials).token == "sa-token-1"
    _rotate(sa / "token", "sa-token-2\n")
    assert _auth(credentials).token == "sa-token-2"
    (sa / "token").unlink()  # a re-read that fails keeps the last good token
    assert _auth(credentials).token == "sa-token-2"
    (sa / "token").write_text("sa-token-3")
    assert _auth(credentials).token == "sa-token-3"


def test_in_cluster_failures(tmp_path: Path, pki: dict[str, Path]) -> None:
    sa = _service_account(tmp_path, pki)
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}
    (sa / "token").chmod(0)
    if os.geteuid() == 0:  # root reads any file: an empty token then
        (sa / "token").write_text("")
    with pytest.raises(CredentialsError, match=r"^cannot read token file .*/serviceaccount/token: "):
        load_credentials(environ=env, service_account_dir=sa)
    (sa / "token").chmod(0o600)
    (sa / "token").write_text("t")
    (sa / "ca.crt").unlink()
    with pytest.raises(CredentialsError, match=r"^cannot read in-cluster CA .*ca.crt: No such file"):
        load_credentials(environ=env, service_account_dir=sa)
    # in-cluster failing, a kubeconfig there: that one (as the kubernetes client falls back)
    _write(tmp_path / ".kube" / "config", _kubeconfig({"c": {"server": "http://h:1"}}, {}, {"x": ("c", "")}, "x"))
    assert load_credentials(environ=env, service_account_dir=sa).server == "http://h:1"


# --- exec plugins -----------------------------------------------------------------------------------------


def _plugin(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "bin" / "plugin"
    script.parent.mkdir(exist_ok=True)
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


TOKEN_PLUGIN = """
    import json, os, pathlib, sys
    here = pathlib.Path(sys.argv[0]).parent
    runs = here / "runs"
    n = int(runs.read_text()) + 1 if runs.exists() else 1
    runs.write_text(str(n))
    (here / "exec-info.json").write_text(os.environ["KUBERNETES_EXEC_INFO"])
    status = {"token": f"{sys.argv[1]}-{n}"}
    if os.environ.get("EXPIRES"):
        status["expirationTimestamp"] = os.environ["EXPIRES"]
    print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}))
"""


def _exec_kubeconfig(tmp_path: Path, exec_spec: dict[str, Any], cluster: dict[str, Any] | None = None) -> Path:
    return _write(tmp_path / "config", _kubeconfig(
        {"c": cluster or {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}},
        {"u": {"exec": {"apiVersion": EXEC_V1, "interactiveMode": "Never", **exec_spec}}},
        {"x": ("c", "u")}, "x",
    ))  # fmt: skip


def test_an_exec_plugin_token_cached_until_it_expires(tmp_path: Path) -> None:
    _plugin(tmp_path, TOKEN_PLUGIN)
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = _exec_kubeconfig(tmp_path, {"command": "./bin/plugin", "args": ["tok"], "provideClusterInfo": True,
                                       "env": [{"name": "EXPIRES", "value": expires}]})  # fmt: skip
    credentials = load_credentials(str(path), environ=NO_CLUSTER)
    assert not (tmp_path / "bin" / "runs").exists()  # run on first use, not when loaded

    async def twice() -> list[Auth]:
        return [await credentials.auth(), await credentials.auth()]

    assert asyncio.run(twice()) == [Auth(token="tok-1"), Auth(token="tok-1")]  # cached: not expired
    info = json.loads((tmp_path / "bin" / "exec-info.json").read_text())
    assert info["apiVersion"] == EXEC_V1 and info["spec"]["interactive"] is False
    assert info["spec"]["cluster"] == {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}
    credentials.invalidate()  # a 401
    assert _auth(credentials).token == "tok-2"


def test_an_expired_exec_credential_is_fetched_again(tmp_path: Path) -> None:
    _plugin(tmp_path, TOKEN_PLUGIN)
    path = _exec_kubeconfig(tmp_path, {"command": str(tmp_path / "bin" / "plugin"), "args": ["e"],
                                       "env": [{"name": "EXPIRES", "value": "2020-01-01T00:00:00Z"}]})  # fmt: skip
    credentials = load_credentials(str(path), environ=NO_CLUSTER)
    assert [_auth(credentials).token for _ in range(3)] == ["e-1", "e-2", "e-3"]
    assert "cluster" not in json.loads((tmp_path / "bin" / "exec-info.json").read_text())["spec"]


def test_an_exec_plugin_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    _plugin(tmp_path, f"""
        import json
        print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                          "status": {{"clientCertificateData": {pki["cert"].read_text()!r},
                                      "clientKeyData": {pki["key"].read_text()!r}}}}}))
    """)  # fmt: skip
    path = _exec_kubeconfig(
        tmp_path,
        {"command": "bin/plugin", "apiVersion": "client.authentication.k8s.io/v1beta1"},
        {"server": "https://127.0.0.1:1", "certificate-authority-data": _b64(pki["ca"])},
    )
    credentials = load_credentials(str(path), environ=NO_CLUSTER)
    auth = _auth(credentials)
    assert auth.token is None and auth.cert == ClientCert(pki["cert"].read_bytes(), pki["key"].read_bytes())
    assert credentials.ssl_context(auth.cert) is not None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import sys; print('boom', file=sys.stderr); sys.exit(3)", "exited with 3: boom"),
        ("print('not json')", "not an ExecCredential (not JSON)"),
        (
            "import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', "
            "'kind': 'ExecCredential', 'status': {'token': 't'}}))",
            "answered apiVersion",
        ),
        (
            "import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
            "'kind': 'ExecCredential', 'status': {}}))",
            "neither a token nor a client certificate",
        ),
        (
            "import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
            "'kind': 'ExecCredential', 'status': {'token': 't', 'expirationTimestamp': 'soon'}}))",
            "bad expirationTimestamp",
        ),
    ],
)
def test_failing_exec_plugins_are_one_line_errors(tmp_path: Path, body: str, message: str) -> None:
    _plugin(tmp_path, body)
    credentials = load_credentials(str(_exec_kubeconfig(tmp_path, {"command": "./bin/plugin"})), environ=NO_CLUSTER)
    with pytest.raises(CredentialsError, match="exec plugin") as raised:
        _auth(credentials)
    assert message in str(raised.value) and "\n" not in str(raised.value), raised.value


def test_a_missing_exec_command_says_its_install_hint(tmp_path: Path) -> None:
    path = _exec_kubeconfig(tmp_path, {"command": "no-such-plugin-here", "installHint": "install it\nfrom there"})
    with pytest.raises(CredentialsError, match=r"exec plugin no-such-plugin-here: No such file .*\(install it\)$"):
        _auth(load_credentials(str(path), environ=NO_CLUSTER))


def test_a_cancelled_exec_plugin_is_killed(tmp_path: Path) -> None:
    """The agent stopping while a plugin runs: the plugin does not outlive it."""
    _plugin(tmp_path, """
        import os, pathlib, sys, time
        (pathlib.Path(sys.argv[0]).parent / "pid").write_text(str(os.getpid()))
        time.sleep(60)
    """)  # fmt: skip
    credentials = load_credentials(str(_exec_kubeconfig(tmp_path, {"command": "./bin/plugin"})), environ=NO_CLUSTER)
    pid_file = tmp_path / "bin" / "pid"

    async def cancel_while_running() -> None:
        task = asyncio.create_task(credentials.auth())
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the plugin never started"
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_while_running())
    proc = Path(f"/proc/{pid_file.read_text()}/stat")

    def alive() -> bool:  # not gone, and not dead waiting to be reaped (Z)
        try:
            return proc.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 20
    while alive():
        assert time.monotonic() < deadline, "the plugin outlived its cancelled run"
        time.sleep(0.05)


# --- the same answers as the kubernetes client's loader ---------------------------------------------------


def _upstream(path: str, context: str | None = None) -> dict[str, Any]:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
    read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
    token = configuration.get_api_key_with_prefix("BearerToken") or None
    return {"server": configuration.host, "ca": read(configuration.ssl_ca_cert), "cert": read(configuration.cert_file),
            "key": read(configuration.key_file), "verify": configuration.verify_ssl, "token": token}  # fmt: skip


def _ours(path: str, context: str | None = None) -> dict[str, Any]:
    """`path`: one file (--kubeconfig), or several as $KUBECONFIG."""
    if os.pathsep in path:
        credentials = load_credentials(context=context, environ={"KUBECONFIG": path})
    else:
        credentials = load_credentials(path, context=context, environ=NO_CLUSTER)
    auth = _auth(credentials)
    return {"server": credentials.server, "ca": credentials.ca_data.encode() if credentials.ca_data else None,
            "cert": auth.cert.cert if auth.cert else None, "key": auth.cert.key if auth.cert else None,
            "verify": not credentials.insecure, "token": f"Bearer {auth.token}" if auth.token else None}  # fmt: skip


def test_the_same_credentials_as_the_kubernetes_clients_loader(tmp_path: Path, pki: dict[str, Path]) -> None:
    (tmp_path / "tls").mkdir()
    for name in ("ca", "cert", "key"):
        (tmp_path / "tls" / pki[name].name).write_bytes(pki[name].read_bytes())
    (tmp_path / "tok").write_text("from-file")
    _plugin(tmp_path, TOKEN_PLUGIN)
    first = _write(tmp_path / "first", _kubeconfig(
        {"files": {"server": "https://[::1]:6443", "certificate-authority": "tls/ca.crt"},
         "data": {"server": "https://10.0.0.1", "certificate-authority-data": _b64(pki["ca"])},
         "insecure": {"server": "https://k:1", "insecure-skip-tls-verify": True}},
        {"certs": {"client-certificate": "tls/client.crt", "client-key": "tls/client.key"},
         "data": {"client-certificate-data": _b64(pki["cert"]), "client-key-data": _b64(pki["key"])},
         "token": {"token": "static"}, "tokenfile": {"tokenFile": str(tmp_path / "tok")},
         "exec": {"exec": {"apiVersion": EXEC_V1, "command": str(tmp_path / "bin" / "plugin"), "args": ["x"]}}},
        {"a": ("files", "certs"), "b": ("data", "data"), "c": ("insecure", "token"), "d": ("files", "tokenfile"),
         "e": ("data", "exec")},
        current="b",
    ))  # fmt: skip
    second = _write(tmp_path / "second", _kubeconfig(
        {"data": {"server": "https://second"}}, {"token": {"token": "second"}}, {"c": ("data", "token"),
                                                                                  "f": ("data", "token")}, "a",
    ))  # fmt: skip
    merged = os.pathsep.join([str(first), str(second)])
    for context in ("a", "b", "c", "d", "e", None):
        if context == "e":
            (tmp_path / "bin" / "runs").unlink(missing_ok=True)
        theirs = _upstream(str(first), context)
        if context == "e":
            (tmp_path / "bin" / "runs").unlink()  # ours runs the plugin once more: the same token
        assert _ours(str(first), context) == theirs, context
    for context in ("c", "f"):  # c from the first file: the first to define a name wins
        assert _ours(merged, context) == _upstream(merged, context), context
    # current-context: kubectl's (client-go's) rule, the first file that sets it ("b"); the Python client takes
    # the last one ("a"), a known difference of that client
    assert _ours(merged) == _upstream(merged, "b") != _upstream(merged)


# --- the agent's import path ------------------------------------------------------------------------------


def test_the_agent_never_imports_the_kubernetes_package(tmp_path: Path, pki: dict[str, Path]) -> None:
    """`node-janitor agent`'s modules, its credentials loaded in-cluster and from YAML and JSON kubeconfigs, its
    API client built: `kubernetes` never imported (10-17 MiB on every node), PyYAML only for the YAML file."""
    sa = _service_account(tmp_path, pki)
    cluster = {"c": {"server": "https://127.0.0.1:1", "certificate-authority-data": _b64(pki["ca"])}}
    users = {"u": {"client-certificate-data": _b64(pki["cert"]), "client-key-data": _b64(pki["key"])}}
    as_json = _write(tmp_path / "config.json", _kubeconfig(cluster, users, {"x": ("c", "u")}, "x"), as_json=True)
    as_yaml = _write(tmp_path / "config.yaml", _kubeconfig(cluster, users, {"x": ("c", "u")}, "x"))
    program = f"""
        import asyncio, sys
        from pathlib import Path
        import node_janitor.cli
        from node_janitor.agent import KubeClient, NodeAgent, AgentConfig
        from node_janitor.api.nodecleanup import NodeCleanup
        from node_janitor.api.units import parse_quantity
        from node_janitor.agent.credentials import load_credentials
        parse_quantity("1.5Gi")
        env = {{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}}
        clients = [KubeClient(load_credentials(environ=env, service_account_dir=Path({str(sa)!r}))),
                   KubeClient.from_config({str(as_json)!r})]
        NodeAgent(AgentConfig(node_name="n", state_dir=Path({str(tmp_path / "state")!r})), clients[0])
        async def prepare():
            for client in clients:
                await client._prepare()
                await client.close()
        asyncio.run(prepare())
        assert "yaml" not in sys.modules, "yaml"
        KubeClient.from_config({str(as_yaml)!r})
        assert "yaml" in sys.modules
        leaked = sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes."))
        assert not leaked, leaked
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(program)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_context_asked_for_skips_in_cluster(tmp_path: Path, pki: dict[str, Path]) -> None:
    """`--context` names a kubeconfig context: in a pod (service env set) it is looked up, not ignored."""
    sa = _service_account(tmp_path, pki)
    _write(tmp_path / ".kube" / "config", _kubeconfig({"c": {"server": "http://h:1"}}, {}, {"x": ("c", "")}, "x"))
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}
    assert load_credentials(environ=env, service_account_dir=sa).source == "in-cluster"
    assert load_credentials(context="x", environ=env, service_account_dir=sa).server == "http://h:1"
