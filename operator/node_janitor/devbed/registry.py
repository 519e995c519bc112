"""A private OCI registry (distribution v3, built by hack/build-containerd.sh) on 127.0.0.1, plain HTTP, its own
temporary storage, and a small push client (the OCI distribution API over urllib), so that tests pull images
through CRI as a node really gets them.

Loopback only: the registry listens on 127.0.0.1:<free port>; its tracing exporter is switched off (it would
otherwise try an OTLP collector); the push client ignores proxy settings. A containerd bed trusts it over plain
HTTP through a `hosts.toml` in its registry config directory (`ContainerdBed.trust_plain_http_registry`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from node_janitor.devbed.containerd import DevbedError, build_cache_dir
from node_janitor.devbed.images import MEDIA_INDEX, OciImage
from node_janitor.devbed.service import Service

_ACCEPT = ", ".join(
    [
        MEDIA_INDEX,
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def registry_binary() -> Path:
    """The newest registry that hack/build-containerd.sh built."""
    cache = build_cache_dir()
    built = [d / "registry" for d in cache.glob("registry-v*") if os.access(d / "registry", os.X_OK)]
    if not built:
        raise DevbedError(f"no registry built in {cache}: run hack/build-containerd.sh")

    def key(path: Path) -> tuple[int, ...]:
        version = path.parent.name.removeprefix("registry-v")
        return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))

    return max(built, key=key)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def repository_of(name: str) -> tuple[str, str]:
    """`example.com/team/app:v1` -> (`team/app`, `v1`): an image name's path (its registry host dropped) and tag
    (`latest` when it has none)."""
    rest = name.split("@", 1)[0]
    first, _, path = rest.partition("/")
    if not path or not ("." in first or ":" in first or first == "localhost"):
        path = rest  # no registry host in the name
    repo, sep, tag = path.rpartition(":")
    if not sep or "/" in tag:
        repo, tag = path, "latest"
    return repo, tag


class Registry(Service):
    """distribution serving on 127.0.0.1; use as a context manager. `push` uploads an image built here."""

    def __init__(self, base: Path | None = None, *, binary: Path | None = None) -> None:
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="nj-registry-"))
        self.binary = binary
        self.port = 0
        self.log_path = self.base / "registry.log"
        self._proc: subprocess.Popen[bytes] | None = None
        # No proxy, whatever the environment says: the registry is on loopback.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`: the registry part of the references it serves."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def reference(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        binary = self.binary or registry_binary()
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "storage").mkdir(exist_ok=True)
        self.port = _free_port()
        config = self.base / "config.yml"
        config.write_text(self._config())
        env = dict(os.environ, OTEL_TRACES_EXPORTER="none", OTEL_SDK_DISABLED="true")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(binary), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self._proc.poll() is not None:
                raise DevbedError(f"registry exited with {self._proc.returncode}: {self._log_tail()}")
            with contextlib.suppress(OSError), self._http.open(f"{self.url}/v2/", timeout=2) as resp:
                if resp.status == 200:
                    return
            if time.monotonic() > deadline:
                raise DevbedError(f"registry did not answer on {self.url} within 30s: {self._log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self.base, ignore_errors=True)

    # -- pushing --------------------------------------------------------------------------------------
    def push(self, image: OciImage, repository: str | None = None, tag: str | None = None) -> str:
        """Upload `image` (every blob it holds, then its manifests: an index's children by digest, then the
        index) as `repository:tag` (default: from its name, host dropped); returns the reference to pull."""
        default_repo, default_tag = repository_of(image.name)
        repo, tag = repository or default_repo, tag or default_tag
        top = json.loads(image.blobs[image.manifest_digest])
        manifests = {image.manifest_digest}
        if image.media_type == MEDIA_INDEX:
            manifests |= {m["digest"] for m in top["manifests"]}
        for digest, data in image.blobs.items():
            if digest not in manifests:
                self._push_blob(repo, digest, data)
        if image.media_type == MEDIA_INDEX:
            for child in top["manifests"]:
                if child["digest"] in image.blobs:
                    self._put_manifest(repo, child["digest"], child["mediaType"], image.blobs[child["digest"]])
        self._put_manifest(repo, tag, image.media_type, image.blobs[image.manifest_digest])
        return self.reference(repo, tag)

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """The digest the registry serves for `repository:tag`, or None if it has none."""
        request = urllib.request.Request(
            f"{self.url}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": _ACCEPT}
        )
        try:
            with self._http.open(request, timeout=30) as resp:
                digest: str | None = resp.headers.get("Docker-Content-Digest")
                return digest
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def _push_blob(self, repo: str, digest: str, data: bytes) -> None:
        head = urllib.request.Request(f"{self.url}/v2/{repo}/blobs/{digest}", method="HEAD")
        with contextlib.suppress(urllib.error.HTTPError), self._http.open(head, timeout=30):
            return  # already there (a layer shared with an image pushed before)
        start = urllib.request.Request(f"{self.url}/v2/{repo}/blobs/uploads/", method="POST", data=b"")
        location = self._send(start, 202)["Location"]
        upload = urllib.parse.urljoin(f"{self.url}/", location)
        upload += ("&" if "?" in upload else "?") + urllib.parse.urlencode({"digest": digest})
        put = urllib.request.Request(
            upload, method="PUT", data=data, headers={"Content-Type": "application/octet-stream"}
        )
        self._send(put, 201)

    def _put_manifest(self, repo: str, reference: str, media_type: str, data: bytes) -> None:
        put = urllib.request.Request(
            f"{self.url}/v2/{repo}/manifests/{reference}", method="PUT", data=data, headers={"Content-Type": media_type}
        )
        self._send(put, 201)

    def _send(self, request: urllib.request.Request, expect: int) -> dict[str, str]:
        """Send `request`, expect status `expect`; returns the response's headers."""
        try:
            with self._http.open(request, timeout=120) as resp:
                resp.read()
                headers = dict(resp.headers.items())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise DevbedError(f"registry: {request.get_method()} {request.full_url}: {e.code} {detail}") from e
        if resp.status != expect:
            raise DevbedError(f"registry: {request.get_method()} {request.full_url}: {resp.status}, not {expect}")
        return headers

    # -- internals ------------------------------------------------------------------------------------
    def _config(self) -> str:
        return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.base / "storage"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{self.port}
"""

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
