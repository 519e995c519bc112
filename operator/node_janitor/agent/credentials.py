"""Kubernetes credentials for the node agent, read without the `kubernetes` package.

Importing any part of the `kubernetes` package imports all of it (every generated API model): +10-17 MiB of
resident memory, on every node. The agent talks to the apiserver with aiohttp (`agent/kube.py`) and needs only
the server, how to trust it and how to authenticate, which this module reads as client-go does:

- `kubeconfig` given: that one file (it must exist). Else in-cluster when $KUBERNETES_SERVICE_HOST and
  $KUBERNETES_SERVICE_PORT are set and no `context` is asked for: the ServiceAccount's token and CA (IPv6
  service hosts bracketed). Else
  $KUBECONFIG (several paths: missing ones skipped, the first file to define a cluster, user or context name or
  current-context wins; kubectl's rules) or ~/.kube/config; when in-cluster fails there, its reason is the error.
- The context: `context` if given, else current-context. Relative file paths (certificate-authority,
  client-certificate, client-key, tokenFile, an exec command with a slash) resolve against the directory of the
  file that defined them. `*-data` (base64) wins over the file.
- Bearer tokens: `token`, `tokenFile` (wins over token, as in client-go; either wins over exec) and the
  in-cluster token; files are re-read whenever they change (the kubelet rotates projected tokens hourly; the
  last good one is kept if a re-read fails), and on `invalidate()` (the client calls it on a 401).
- Exec credential plugins (client.authentication.k8s.io/v1 and v1beta1): run on first use, not interactive
  ($KUBERNETES_EXEC_INFO says so), `status.token` or a client certificate cached until `expirationTimestamp` or
  `invalidate()`.
- Not supported, refused with a clear error: auth-provider plugins (gcp, azure, oidc: removed from client-go in
  1.26, use their exec plugins), basic auth (removed from the apiserver in 1.19), interactiveMode Always.
  proxy-url is ignored (the agent talks to its apiserver directly).

A kubeconfig is parsed as JSON when it is JSON, else as YAML (PyYAML imported only then: in-cluster, the
production path, needs no YAML at all). Errors are CredentialsError, one line naming the file and the field.
The operator and `node-janitor run` keep the kubernetes client's loader (`node_janitor.controller.kubeconfig`):
they import the client for their API calls anyway; tests/agent/test_credentials.py checks both loaders agree.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "Auth",
    "ClientCert",
    "CredentialsError",
    "ExecPlugin",
    "KubeCredentials",
    "TokenFile",
    "load_credentials",
]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_TIMEOUT = 60.0
"""How long an exec plugin may take before it is killed."""


class CredentialsError(ValueError):
    """No usable credentials; one line for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its key, PEM."""

    cert: bytes
    key: bytes


@dataclass(frozen=True)
class Auth:
    """What one request authenticates with."""

    token: str | None = None
    cert: ClientCert | None = None


class TokenFile:
    """A bearer token in a file, re-read when the file changes or after `invalidate()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token: str | None = None
        self._stamp: tuple[int, ...] | None = None

    def read(self) -> str:
        """The current token. Raises CredentialsError if it cannot be read and none was read before."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            if self._token is None or stamp != self._stamp:
                token = self.path.read_text().strip()
                if not token:
                    raise CredentialsError("it is empty")
                self._token, self._stamp = token, stamp
        except (OSError, UnicodeDecodeError, CredentialsError) as exc:
            if self._token is None:
                raise _error(f"cannot read token file {self.path}", exc) from None
            # keep the last good token (client-go does too); the file is probably being replaced
        return self._token

    def invalidate(self) -> None:
        self._stamp = None


@dataclass
class ExecPlugin:
    """A client.authentication.k8s.io exec credential plugin (kubeconfig `users[].user.exec`)."""

    command: str
    args: list[str]
    env: dict[str, str]
    api_version: str
    cluster_info: dict[str, Any] | None = None
    """`spec.cluster` for $KUBERNETES_EXEC_INFO when provideClusterInfo is set."""
    install_hint: str = ""
    _auth: Auth | None = field(default=None, repr=False)
    _expiry: datetime | None = field(default=None, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)

    async def auth(self) -> Auth:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._auth is None or (self._expiry is not None and datetime.now(UTC) >= self._expiry):
                self._auth, self._expiry = await self._run()
            return self._auth

    def invalidate(self) -> None:
        self._auth = None

    async def _run(self) -> tuple[Auth, datetime | None]:
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster_info is not None:
            spec["cluster"] = self.cluster_info
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        what = f"exec plugin {self.command}"
        try:
            process = await asyncio.create_subprocess_exec(
                self.command, *self.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            hint = f" ({self.install_hint.strip().splitlines()[0]})" if self.install_hint.strip() else ""
            raise _error(what, exc, hint) from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), EXEC_TIMEOUT)
        except BaseException as exc:  # too slow, or cancelled (the agent stops): the plugin must not outlive it
            if process.returncode is None:
                process.kill()
                await process.wait()
            if isinstance(exc, TimeoutError):
                raise CredentialsError(f"{what}: no answer within {EXEC_TIMEOUT:.0f}s") from None
            raise
        if process.returncode != 0:
            last = (stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            raise CredentialsError(f"{what} exited with {process.returncode}: {last}".rstrip(": "))
        return parse_exec_credential(stdout, self.api_version, what)


def parse_exec_credential(output: bytes, api_version: str, what: str) -> tuple[Auth, datetime | None]:
    """An exec plugin's ExecCredential: (its token or client certificate, its expiry or None)."""
    try:
        credential = json.loads(output)
    except ValueError:
        raise CredentialsError(f"{what}: its output is not an ExecCredential (not JSON)") from None
    if not isinstance(credential, dict) or credential.get("kind") != "ExecCredential":
        raise CredentialsError(f"{what}: its output is not an ExecCredential")
    if credential.get("apiVersion") != api_version:
        raise CredentialsError(f"{what}: answered apiVersion {credential.get('apiVersion')!r}, not {api_version}")
    status = credential.get("status")
    if not isinstance(status, dict):
        raise CredentialsError(f"{what}: its ExecCredential has no status")
    expiry = None
    if status.get("expirationTimestamp"):
        try:
            expiry = datetime.fromisoformat(str(status["expirationTimestamp"]))
        except ValueError:
            raise CredentialsError(f"{what}: bad expirationTimestamp {status['expirationTimestamp']!r}") from None
        if expiry.tzinfo is None:
            raise CredentialsError(f"{what}: expirationTimestamp {status['expirationTimestamp']!r} has no zone")
    cert_pem, key_pem = status.get("clientCertificateData"), status.get("clientKeyData")
    if bool(cert_pem) != bool(key_pem):
        raise CredentialsError(f"{what}: clientCertificateData and clientKeyData must come together")
    cert = ClientCert(str(cert_pem).encode(), str(key_pem).encode()) if cert_pem else None
    token = str(status["token"]) if status.get("token") else None
    if token is None and cert is None:
        raise CredentialsError(f"{what}: its ExecCredential status has neither a token nor a client certificate")
    return Auth(token=token, cert=cert), expiry


@dataclass
class KubeCredentials:
    """One apiserver and how to reach it. `auth()` gives what a request authenticates with."""

    server: str
    source: str
    """Where they came from, for messages: "in-cluster" or "kubeconfig PATH, context NAME"."""
    ca_data: str | None = None
    """PEM of the CAs to trust; None: the system's."""
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = None
    token_file: TokenFile | None = None
    cert: ClientCert | None = None
    exec_plugin: ExecPlugin | None = None
    _ssl: tuple[ClientCert | None, ssl.SSLContext | None] | None = field(default=None, repr=False)

    async def auth(self) -> Auth:
        """The token and client certificate for the next request; raises CredentialsError (an exec plugin that
        fails, a token file never readable)."""
        if self.token_file is not None:
            return Auth(token=self.token_file.read(), cert=self.cert)
        if self.token is not None or self.exec_plugin is None:
            return Auth(token=self.token, cert=self.cert)
        got = await self.exec_plugin.auth()
        return Auth(token=got.token, cert=got.cert or self.cert)

    def invalidate(self) -> None:
        """The apiserver refused the credentials (401): re-read the token, run the exec plugin again."""
        if self.token_file is not None:
            self.token_file.invalidate()
        if self.exec_plugin is not None:
            self.exec_plugin.invalidate()

    def ssl_context(self, cert: ClientCert | None) -> ssl.SSLContext | None:
        """The TLS context for this server with `cert` (None for http://), the last one kept. Raises
        CredentialsError."""
        if self._ssl is None or self._ssl[0] != cert:
            self._ssl = (cert, self._make_ssl_context(cert))
        return self._ssl[1]

    def _make_ssl_context(self, cert: ClientCert | None) -> ssl.SSLContext | None:
        if not self.server.startswith("https://"):
            return None
        try:
            context = ssl.create_default_context(cadata=self.ca_data) if self.ca_data else ssl.create_default_context()
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if cert is not None:
                _load_cert_chain(context, cert)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise _error(f"{self.source}: bad TLS material", exc) from None
        return context


def _load_cert_chain(context: ssl.SSLContext, cert: ClientCert) -> None:
    """ssl takes a certificate and key only from files: written to a private directory, loaded, removed."""
    with tempfile.TemporaryDirectory(prefix="node-janitor-tls-") as directory:
        cert_path, key_path = Path(directory, "tls.crt"), Path(directory, "tls.key")
        for path, data in ((cert_path, cert.cert), (key_path, cert.key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        context.load_cert_chain(cert_path, key_path)


def load_credentials(
    kubeconfig: str | None = None,
    *,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> KubeCredentials:
    """The credentials (module docstring for where from). Raises CredentialsError."""
    env = os.environ if environ is None else environ
    if kubeconfig:
        return _from_kubeconfig([Path(kubeconfig)], context, explicit=True)
    in_cluster_error: CredentialsError | None = None
    if env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT") and not context:
        try:
            return in_cluster(env, service_account_dir)
        except CredentialsError as exc:
            in_cluster_error = exc
    paths = [Path(p) for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if not paths:
        home = env.get("HOME") or os.path.expanduser("~")
        paths = [Path(home, ".kube", "config")]
    if in_cluster_error is not None and not any(p.exists() for p in paths):
        raise in_cluster_error
    return _from_kubeconfig(paths, context, explicit=False)


def in_cluster(env: Mapping[str, str], service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeCredentials:
    """The pod's ServiceAccount: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, its token (re-read as
    it rotates) and CA."""
    host, port = env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    ca_file = service_account_dir / "ca.crt"
    token_file = TokenFile(service_account_dir / "token")
    token_file.read()  # fails now if unreadable
    credentials = KubeCredentials(
        server=f"https://{host}:{port}", source="in-cluster", ca_data=_read_text(ca_file, "in-cluster CA"),
        token_file=token_file,
    )  # fmt: skip
    credentials.ssl_context(None)  # a bad CA fails now
    return credentials


# --- kubeconfig files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    body: dict[str, Any]
    base: Path  # the directory of the file it came from
    path: Path


def _from_kubeconfig(paths: list[Path], context: str | None, *, explicit: bool) -> KubeCredentials:
    entries: dict[str, dict[str, _Entry]] = {"clusters": {}, "users": {}, "contexts": {}}
    current: str | None = None
    read: list[Path] = []
    for path in paths:
        if not explicit and not path.exists():
            continue  # kubectl skips missing files in $KUBECONFIG
        data = _read_kubeconfig(path)
        read.append(path)
        base = Path(os.path.abspath(path)).parent
        for kind, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            items = data.get(kind) or []
            if not isinstance(items, list):
                raise CredentialsError(f"kubeconfig {path}: {kind} is not a list")
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise CredentialsError(f"kubeconfig {path}: an entry of {kind} has no name")
                body = item.get(key) or {}
                if not isinstance(body, dict):
                    raise CredentialsError(f"kubeconfig {path}: {kind} {item['name']!r}: {key} is not a mapping")
                entries[kind].setdefault(item["name"], _Entry(body, base, path))
        if not current and data.get("current-context"):
            current = str(data["current-context"])
    where = ", ".join(map(str, read)) or ", ".join(map(str, paths))
    if not read:
        raise CredentialsError(f"no kubeconfig: {where} does not exist")
    name = context or current
    if not name:
        raise CredentialsError(f"kubeconfig {where}: no current-context (and no context asked for)")
    if name not in entries["contexts"]:
        raise CredentialsError(f"kubeconfig {where}: context {name!r} not found")
    ctx = entries["contexts"][name].body
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not cluster_name or cluster_name not in entries["clusters"]:
        raise CredentialsError(f"kubeconfig {where}: cluster {cluster_name!r} of context {name!r} not found")
    if user_name and user_name not in entries["users"]:
        raise CredentialsError(f"kubeconfig {where}: user {user_name!r} of context {name!r} not found")
    credentials = _cluster(entries["clusters"][cluster_name], f"kubeconfig {where}, context {name}")
    if user_name:
        _user(credentials, entries["users"][user_name], user_name)
    credentials.ssl_context(credentials.cert)  # bad TLS material fails now
    return credentials


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"cannot read kubeconfig {path}", exc) from None
    data: Any = None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = _parse_yaml(text, path)  # JSON-looking YAML (a flow mapping)
    elif text.strip():
        data = _parse_yaml(text, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CredentialsError(f"kubeconfig {path}: not a kubeconfig (its top level is not a mapping)")
    return data


def _parse_yaml(text: str, path: Path) -> Any:
    import yaml  # only for YAML files: in-cluster and JSON kubeconfigs never load it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader (the C one when PyYAML has it)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CredentialsError(f"kubeconfig {path}: malformed YAML{at}: {problem}") from None


def _cluster(entry: _Entry, source: str) -> KubeCredentials:
    body = entry.body
    server = str(body.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise CredentialsError(f"{source}: cluster server {body.get('server')!r} is not an http(s) URL")
    ca_data = _data_or_file(entry, "certificate-authority", source)
    return KubeCredentials(
        server=server, source=source, ca_data=ca_data.decode(errors="replace") if ca_data else None,
        insecure=body.get("insecure-skip-tls-verify") is True, tls_server_name=body.get("tls-server-name") or None,
    )  # fmt: skip


def _user(credentials: KubeCredentials, entry: _Entry, name: str) -> None:
    body, source = entry.body, f"{credentials.source}, user {name}"
    if body.get("auth-provider"):
        provider = (body["auth-provider"] or {}).get("name", "?")
        raise CredentialsError(f"{source}: auth-provider {provider!r} is not supported (use its exec plugin)")
    cert = _data_or_file(entry, "client-certificate", source)
    key = _data_or_file(entry, "client-key", source)
    if bool(cert) != bool(key):
        raise CredentialsError(f"{source}: client-certificate and client-key must come together")
    credentials.cert = ClientCert(cert, key) if cert and key else None
    if body.get("tokenFile"):
        credentials.token_file = TokenFile(_resolve(entry, str(body["tokenFile"])))
        try:
            credentials.token_file.read()
        except CredentialsError as exc:
            raise CredentialsError(f"{source}: {exc}") from None
    elif body.get("token"):
        credentials.token = str(body["token"])
    elif body.get("exec"):
        credentials.exec_plugin = _exec_plugin(entry, body["exec"], credentials, source)
    elif credentials.cert is None and (body.get("username") or body.get("password")):
        raise CredentialsError(f"{source}: basic auth (username/password) is not supported")


def _exec_plugin(entry: _Entry, spec: Any, credentials: KubeCredentials, source: str) -> ExecPlugin:
    what = f"{source}: exec"
    if not isinstance(spec, dict) or not spec.get("command"):
        raise CredentialsError(f"{what}: no command")
    api_version = spec.get("apiVersion")
    if api_version not in EXEC_API_VERSIONS:
        raise CredentialsError(f"{what}: apiVersion {api_version!r} is not one of {', '.join(EXEC_API_VERSIONS)}")
    if spec.get("interactiveMode") == "Always":
        raise CredentialsError(f"{what}: interactiveMode Always needs a terminal; the agent has none")
    command = str(spec["command"])
    if os.sep in command and not os.path.isabs(command):
        command = str(_resolve(entry, command))
    env: dict[str, str] = {}
    for item in spec.get("env") or []:
        if not isinstance(item, dict) or "name" not in item:
            raise CredentialsError(f"{what}: an env entry has no name")
        env[str(item["name"])] = str(item.get("value", ""))
    cluster_info = None
    if spec.get("provideClusterInfo"):
        cluster_info = {"server": credentials.server, "insecure-skip-tls-verify": credentials.insecure}
        if credentials.tls_server_name:
            cluster_info["tls-server-name"] = credentials.tls_server_name
        if credentials.ca_data:
            cluster_info["certificate-authority-data"] = base64.b64encode(credentials.ca_data.encode()).decode()
    return ExecPlugin(
        command=command, args=[str(a) for a in spec.get("args") or []], env=env, api_version=str(api_version),
        cluster_info=cluster_info, install_hint=str(spec.get("installHint") or ""),
    )  # fmt: skip


def _data_or_file(entry: _Entry, key: str, source: str) -> bytes | None:
    """`key-data` (base64; it wins) or the file `key` names, relative to its kubeconfig's directory."""
    data = entry.body.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise CredentialsError(f"{source}: {key}-data is not base64") from None
    if entry.body.get(key):
        path = _resolve(entry, str(entry.body[key]))
        try:
            return path.read_bytes()
        except OSError as exc:
            raise _error(f"{source}: cannot read {key} {path}", exc) from None
    return None


def _resolve(entry: _Entry, path: str) -> Path:
    expanded = Path(os.path.expanduser(path))
    return expanded if expanded.is_absolute() else entry.base / expanded


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"cannot read {what} {path}", exc) from None


def _error(what: str, exc: BaseException, suffix: str = "") -> CredentialsError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return CredentialsError(f"{what}: {reason}{suffix}")
