"""What runtime answers on a socket, where it keeps its files, and which images it keeps pinned: found from CRI
`Version`, `Status(verbose=true)`, `ImageFsInfo` and the runtime's configuration file.

Facts the parsing rests on (measured 2026-12-03 on the test beds' containerd 1.6.20 and 2.3.7, both started with a
version-2 config; tests/runtime/fixtures/ holds both answers):
- The verbose Status `info["config"]` is the CRI plugin's effective configuration as JSON. Both versions give
  `containerdRootDir` (containerd's root), `containerdEndpoint` (its socket), `rootDir` and `stateDir` (the CRI
  plugin's own, `<root>/io.containerd.grpc.v1.cri` and `<state>/io.containerd.grpc.v1.cri`).
- 1.6 (and 1.7, same code) also gives `sandboxImage` and `containerd.snapshotter`. 2.3 gives neither: since 2.0 the
  image settings live in the `io.containerd.cri.v1.images` plugin, which Status does not report (no
  `pinnedImages` either). On 2.x the sandbox image is known from CRI's `pinned` flag on the image, and from the
  configuration file: version 3 (2.0, 2.1) and 4 (2.2+) keep it at
  `plugins."io.containerd.cri.v1.images".pinned_images.sandbox` (other `pinned_images` keys are pinned too);
  version 2 (1.6, 1.7, and 2.x migrating it) at `plugins."io.containerd.grpc.v1.cri".sandbox_image`; version 1
  (no `version` line) at `plugins.cri.sandbox_image`.
- CRI reports the image file system's mountpoint as the snapshotter's root, `<root>/io.containerd.snapshotter.v1.
  <name>`: the root again when Status does not say.
- k3s and RKE2 run their own containerd: socket /run/k3s/containerd/containerd.sock (both), root
  /var/lib/rancher/{k3s,rke2}/agent/containerd, configuration rendered at start into
  /var/lib/rancher/{k3s,rke2}/agent/etc/containerd/config.toml (from config.toml.tmpl or config-v3.toml.tmpl
  beside it, when the administrator wrote one). Generally the configuration sits at `<root>/../etc/containerd/`
  there, and at /etc/containerd/config.toml for a plain containerd.

Pure functions parse; `discover_runtime` does the I/O (a few CRI calls and reading a small file once).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from glob import glob
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from node_janitor.defaults import CONTAINERD_ROOT
from node_janitor.runtime.records import CriStatus, CriVersion, ImageFsInfo

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "K3S_SOCKET",
    "ConfigFacts",
    "RuntimeDiscovery",
    "StatusFacts",
    "config_candidates",
    "discover_runtime",
    "layout_of",
    "parse_config",
    "parse_status",
    "read_config",
    "root_from_image_fs",
]

DEFAULT_CONFIG_PATH = Path("/etc/containerd/config.toml")
K3S_SOCKET = "/run/k3s/containerd/containerd.sock"  # k3s's and RKE2's
RANCHER_ROOTS = {"k3s": "/var/lib/rancher/k3s/agent/containerd", "rke2": "/var/lib/rancher/rke2/agent/containerd"}
RANCHER_TEMPLATES = ("config.toml.tmpl", "config-v3.toml.tmpl")  # what k3s/RKE2 render config.toml from
CRI_V2 = "io.containerd.grpc.v1.cri"  # the CRI plugin of config version 2 (containerd 1.x)
CRI_IMAGES = "io.containerd.cri.v1.images"  # its image half since containerd 2.0 (config version 3 and 4)
SNAPSHOTTER_PREFIX = "io.containerd.snapshotter.v1."
MAX_CONFIG_BYTES = 1 << 20  # a containerd config is a few KB; a bigger file is not read whole
MAX_IMPORTS = 32


@dataclass(frozen=True, slots=True)
class StatusFacts:
    """What CRI's verbose Status says of the runtime's configuration ("" when it does not say)."""

    root: str = ""
    state: str = ""
    endpoint: str = ""
    sandbox_image: str = ""
    snapshotter: str = ""
    pinned_images: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class ConfigFacts:
    """What a containerd configuration file says (after its imports); `error` when it could not be read."""

    path: str
    version: int = 0
    root: str = ""
    state: str = ""
    sandbox_image: str = ""
    pinned_images: Mapping[str, str] = field(default_factory=dict, hash=False)  # name -> image (sandbox included)
    imports: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class RuntimeDiscovery:
    """The runtime on a socket as found: name and version, layout (containerd, k3s, rke2), root and state, the
    configuration file read (if any) and the images its configuration pins (the sandbox image among them), each
    with where it was found."""

    socket: str
    runtime_name: str
    runtime_version: str
    layout: str
    root: str
    root_source: str
    state: str = ""
    image_filesystems: tuple[str, ...] = ()
    config: ConfigFacts | None = None
    sandbox_image: str = ""
    sandbox_image_source: str = ""
    pinned_images: Mapping[str, str] = field(default_factory=dict, hash=False)
    warnings: tuple[str, ...] = ()

    @property
    def configured_images(self) -> tuple[str, ...]:
        """Every image the runtime's configuration pins (the sandbox image first): no cleanup removes them."""
        return tuple(dict.fromkeys(i for i in (self.sandbox_image, *self.pinned_images.values()) if i))

    @property
    def other_pinned_images(self) -> list[str]:
        """`name=image` of each image the configuration pins besides the sandbox image."""
        return [f"{k}={v}" for k, v in sorted(self.pinned_images.items()) if v != self.sandbox_image]

    def summary(self) -> str:
        """One line: what the agent logs at start."""
        parts = [
            f"runtime={self.runtime_name} {self.runtime_version}".rstrip(),
            f"layout={self.layout}",
            f"socket={self.socket}",
            f"root={self.root or '?'} (from {self.root_source})",
            f"config={self.config.path if self.config and not self.config.error else 'none read'}"
            + (f" (version {self.config.version})" if self.config and not self.config.error else ""),
            f"sandbox_image={self.sandbox_image or '?'}"
            + (f" (from {self.sandbox_image_source})" if self.sandbox_image_source else ""),
        ]
        if others := self.other_pinned_images:
            parts.append("pinned=" + ",".join(others))
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "socket": self.socket,
            "runtimeName": self.runtime_name,
            "runtimeVersion": self.runtime_version,
            "layout": self.layout,
            "root": self.root,
            "rootSource": self.root_source,
            "state": self.state,
            "imageFilesystems": list(self.image_filesystems),
            "configPath": self.config.path if self.config else "",
            "configVersion": self.config.version if self.config else 0,
            "configError": self.config.error if self.config else "",
            "sandboxImage": self.sandbox_image,
            "sandboxImageSource": self.sandbox_image_source,
            "pinnedImages": dict(self.pinned_images),
            "warnings": list(self.warnings),
        }


# ---- pure parsing --------------------------------------------------------------------------------------------------


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _pinned(value: Any) -> dict[str, str]:
    return {str(k): v for k, v in _dict(value).items() if isinstance(v, str) and v}


def parse_status(info: Mapping[str, str]) -> StatusFacts:
    """The facts in a verbose CRI Status `info` (containerd's): its `config` JSON. Anything else (CRI-O's answer, a
    malformed one) gives empty facts, never an error."""
    try:
        config = _dict(json.loads(info.get("config") or "{}"))
    except ValueError:
        return StatusFacts()
    pinned = _pinned(config.get("pinnedImages") or config.get("pinned_images"))  # not in 2.3.7: taken if it comes
    return StatusFacts(
        root=_str(config.get("containerdRootDir")),
        state=str(PurePosixPath(_str(config.get("stateDir"))).parent) if _str(config.get("stateDir")) else "",
        endpoint=_str(config.get("containerdEndpoint")),
        sandbox_image=_str(config.get("sandboxImage")) or pinned.get("sandbox", ""),
        snapshotter=_str(_dict(config.get("containerd")).get("snapshotter")),
        pinned_images=pinned,
    )


def root_from_image_fs(fs_info: ImageFsInfo) -> str:
    """containerd's root as the image file system's mountpoint shows it (`<root>/io.containerd.snapshotter.v1.X`),
    or ""."""
    for usage in fs_info.image_filesystems:
        path = PurePosixPath(usage.mountpoint)
        if path.name.startswith(SNAPSHOTTER_PREFIX):
            return str(path.parent)
    return ""


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """containerd's merge of an imported file: tables merge key by key, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_config(text: str, path: str = "", imported: Sequence[str] = ()) -> ConfigFacts:
    """The facts in a containerd configuration's TOML text, for every config version: 1 (no `version` line), 2
    (containerd 1.x), 3 (2.0, 2.1) and 4 (2.2+). `imported`: the TOML texts of its imports, in order (they
    override it, as containerd merges them). A malformed file gives `error`, never an exception."""
    try:
        document = tomllib.loads(text)
        for extra in imported:
            document = _merge(document, tomllib.loads(extra))
    except tomllib.TOMLDecodeError as exc:
        return ConfigFacts(path=path, error=f"not TOML: {exc}")
    raw_version = document.get("version", 1)
    version = raw_version if isinstance(raw_version, int) else 1
    plugins = _dict(document.get("plugins"))
    pinned: dict[str, str] = {}
    sandbox = ""
    if version <= 1:
        sandbox = _str(_dict(plugins.get("cri")).get("sandbox_image"))
    else:
        # version 2, and a version 3 whose CRI section containerd 2.x still migrates (it migrates below version 4)
        sandbox = _str(_dict(plugins.get(CRI_V2)).get("sandbox_image")) if version < 4 else ""
        if version >= 3:
            pinned = _pinned(_dict(plugins.get(CRI_IMAGES)).get("pinned_images"))
            sandbox = pinned.get("sandbox") or sandbox
    if sandbox:
        pinned.setdefault("sandbox", sandbox)
    imports = document.get("imports")
    return ConfigFacts(
        path=path,
        version=version,
        root=_str(document.get("root")),
        state=_str(document.get("state")),
        sandbox_image=sandbox,
        pinned_images=pinned,
        imports=tuple(i for i in imports if isinstance(i, str)) if isinstance(imports, list) else (),
    )


def layout_of(socket: str, root: str) -> str:
    """k3s, rke2 (their containerd, by its root), or containerd."""
    for name, rancher_root in RANCHER_ROOTS.items():
        if root == rancher_root or root.startswith(rancher_root + "/"):
            return name
    if socket == K3S_SOCKET:
        return "k3s"  # RKE2 shares the socket; its root tells them apart when known
    return "containerd"


def config_candidates(layout: str, root: str) -> list[Path]:
    """Where the runtime's configuration file is, most likely first."""
    candidates: list[Path] = []
    if layout in RANCHER_ROOTS:
        etc = Path(root or RANCHER_ROOTS[layout]).parent / "etc" / "containerd"
        candidates += [etc / "config.toml", *(etc / t for t in RANCHER_TEMPLATES)]
    elif root and Path(root) != CONTAINERD_ROOT:
        candidates.append(Path(root).parent / "etc" / "containerd" / "config.toml")  # a rancher-like layout
    candidates.append(DEFAULT_CONFIG_PATH)
    return list(dict.fromkeys(candidates))


# ---- I/O ------------------------------------------------------------------------------------------------------------


def _read_small(path: Path) -> str:
    with path.open("rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise OSError(f"larger than {MAX_CONFIG_BYTES} bytes")
    return data.decode("utf-8", errors="replace")


def read_config(path: Path) -> ConfigFacts | None:
    """The configuration at `path` with its imports (globs, relative to its directory), None if there is no file."""
    try:
        text = _read_small(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ConfigFacts(path=str(path), error=f"cannot read: {exc}")
    first = parse_config(text, str(path))
    if first.error or not first.imports:
        return first
    texts: list[str] = []
    for pattern in first.imports:
        full = pattern if pattern.startswith("/") else str(path.parent / pattern)
        for name in sorted(glob(full))[:MAX_IMPORTS]:
            try:
                texts.append(_read_small(Path(name)))
            except OSError:
                continue
    return parse_config(text, str(path), texts)


class StatusSource(Protocol):
    async def version(self) -> CriVersion: ...
    async def status(self, *, verbose: bool = False) -> CriStatus: ...
    async def image_fs_info(self) -> ImageFsInfo: ...


async def discover_runtime(
    cri: StatusSource, socket: str, config_path: Path | None = None, host_root: Path = Path("/")
) -> RuntimeDiscovery:
    """The runtime on `socket`: CRI first (Version, verbose Status, ImageFsInfo), then its configuration file
    (`config_path`, else the layout's usual places, seen below `host_root`). What CRI says wins over the file,
    except for what CRI does not say. RuntimeClientError if CRI does not answer."""
    version = await cri.version()
    status = parse_status((await cri.status(verbose=True)).info)
    fs_info = await cri.image_fs_info()
    warnings: list[str] = []
    root, root_source = status.root, "cri status"
    if not root:
        root, root_source = root_from_image_fs(fs_info), "cri image fs"
    layout = layout_of(socket, root)
    config: ConfigFacts | None = None
    for candidate in [config_path] if config_path else config_candidates(layout, root):
        found = read_config(host_root / str(candidate).lstrip("/"))
        if found is None:
            continue
        found = replace(found, path=str(candidate))
        # The file another containerd of the host reads (its root differs; /etc/containerd's default root is
        # /var/lib/containerd): not this one's. k3s and RKE2 pass their root on the command line, not in the file.
        other_root = found.root or (str(CONTAINERD_ROOT) if candidate == DEFAULT_CONFIG_PATH else "")
        if root and other_root and not found.error and other_root != root:
            warnings.append(f"{candidate} is another containerd's configuration (root {other_root}, not {root})")
            if not config_path:
                continue
        config = found
        break
    if config_path and config is None:
        warnings.append(f"no containerd configuration at {config_path}")
    if config is not None and config.error:
        warnings.append(f"containerd configuration {config.path}: {config.error}")
    usable = config if config is not None and not config.error else None
    if not root and usable is not None and usable.root:
        root, root_source = usable.root, "config file"
    if not root:
        root_source = "nowhere"
    sandbox, sandbox_source = status.sandbox_image, "cri status" if status.sandbox_image else ""
    if not sandbox and usable is not None and usable.sandbox_image:
        sandbox, sandbox_source = usable.sandbox_image, "config file"
    pinned = dict(usable.pinned_images) if usable is not None else {}
    pinned.update(status.pinned_images)
    if sandbox:
        pinned["sandbox"] = sandbox
    return RuntimeDiscovery(
        socket=socket,
        runtime_name=version.runtime_name,
        runtime_version=version.runtime_version,
        layout=layout,
        root=root,
        root_source=root_source,
        state=status.state or (usable.state if usable is not None else ""),
        image_filesystems=tuple(u.mountpoint for u in fs_info.image_filesystems),
        config=config,
        sandbox_image=sandbox,
        sandbox_image_source=sandbox_source,
        pinned_images=pinned,
        warnings=tuple(warnings),
    )
