"""Build OCI image archives in memory: chosen layer sizes, incompressible content, shared bases.

An archive is an OCI image layout tar (`oci-layout`, `index.json`, `blobs/sha256/...`) that
`ctr images import` takes; each manifest carries `io.containerd.image.name` so the import names it.
Everything is deterministic for a given seed, so equal layers built twice have equal digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Layer:
    """One image layer: its uncompressed tar (for the diff ID) and its gzip blob (for the digest)."""

    tar: bytes
    blob: bytes

    @property
    def diff_id(self) -> str:
        return sha256_digest(self.tar)

    @property
    def digest(self) -> str:
        return sha256_digest(self.blob)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], symlinks: Mapping[str, str] | None = None) -> Layer:
        """A layer holding `files` (path -> content, mode 0755) and `symlinks` (path -> target)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dirs: set[str] = set()
            for path in sorted([*files, *(symlinks or {})]):
                parts = path.strip("/").split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in dirs:
                        dirs.add(d)
                        info = tarfile.TarInfo(d)
                        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _EPOCH.timestamp()
                        tar.addfile(info)
            for path, data in sorted(files.items()):
                info = tarfile.TarInfo(path.strip("/"))
                info.size, info.mode, info.mtime = len(data), 0o755, _EPOCH.timestamp()
                tar.addfile(info, io.BytesIO(data))
            for path, target in sorted((symlinks or {}).items()):
                info = tarfile.TarInfo(path.strip("/"))
                info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, _EPOCH.timestamp()
                tar.addfile(info)
        # mtime=0 keeps the gzip stream (and so the digest) deterministic.
        return cls.from_tar(buf.getvalue())

    @classmethod
    def from_tar(cls, tar: bytes) -> Layer:
        """A layer of an existing uncompressed tar (e.g. a root file system), gzipped deterministically."""
        return cls(tar=tar, blob=gzip.compress(tar, compresslevel=1, mtime=0))

    @classmethod
    def random(cls, size: int, seed: int | str, path: str | None = None) -> Layer:
        """A layer with one file of `size` incompressible bytes (gzip cannot shrink it)."""
        rng = random.Random(str(seed))
        name = path or f"data/{hashlib.sha1(str(seed).encode()).hexdigest()[:12]}.bin"
        return cls.from_files({name: rng.randbytes(size)})


@dataclass(frozen=True)
class OciImage:
    """A built image: its name, blobs by digest and the digests that identify it."""

    name: str
    manifest_digest: str
    config_digest: str
    layers: tuple[Layer, ...]
    blobs: Mapping[str, bytes] = field(repr=False)
    media_type: str = MEDIA_MANIFEST  # MEDIA_INDEX: a multi-platform image (`ImageBuilder.index`)
    architecture: str = "amd64"  # a manifest's platform (linux/<architecture>)

    @property
    def id(self) -> str:
        """The image ID as CRI reports it: the config digest (of an index, its linux/amd64 manifest's, the
        platform this machine's containerd chooses)."""
        return self.config_digest

    @property
    def blob_bytes(self) -> int:
        """Bytes of content this image adds to a content store (manifest, config, compressed layers)."""
        return sum(len(b) for b in self.blobs.values())

    def write_archive(self, path: Path) -> Path:
        write_oci_archive(path, [self])
        return path


def write_oci_archive(path: Path, images: Sequence[OciImage]) -> Path:
    """Write one OCI layout tar holding `images` (shared blobs stored once)."""
    blobs: dict[str, bytes] = {}
    manifests = []
    for image in images:
        blobs.update(image.blobs)
        entry: dict[str, object] = {
            "mediaType": image.media_type,
            "digest": image.manifest_digest,
            "size": len(image.blobs[image.manifest_digest]),
            "annotations": {
                "io.containerd.image.name": image.name,
                "org.opencontainers.image.ref.name": image.name,
            },
        }
        if image.media_type == MEDIA_MANIFEST:
            entry["platform"] = {"architecture": image.architecture, "os": "linux"}
        manifests.append(entry)
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, _EPOCH.timestamp()
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", _canonical_json({"imageLayoutVersion": "1.0.0"}))
        add("index.json", _canonical_json(index))
        for digest, data in sorted(blobs.items()):
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    return path


class ImageBuilder:
    """Builds images from layers; `busybox_layer()` gives a base that runs a shell (busybox-static)."""

    def __init__(self, busybox: Path = Path("/bin/busybox")) -> None:
        self._busybox = busybox
        self._busybox_layer: Layer | None = None

    def busybox_layer(self) -> Layer:
        if self._busybox_layer is None:
            if not self._busybox.is_file():
                raise FileNotFoundError(f"{self._busybox} not found: install Debian's busybox-static")
            tools = ["sh", "sleep", "echo", "cat", "seq", "true", "dd", "head", "yes", "printf", "ls", "rm"]
            self._busybox_layer = Layer.from_files(
                {"bin/busybox": self._busybox.read_bytes()},
                symlinks={f"bin/{t}": "busybox" for t in tools},
            )
        return self._busybox_layer

    def random_images(self, prefix: str, count: int, size: int) -> list[OciImage]:
        """`count` images `example.com/<prefix><i>:v1`: busybox and a layer of `size` random (incompressible)
        bytes of their own, so each takes about twice `size` on disk (its blob and its snapshot)."""
        return [
            self.build(f"example.com/{prefix}{i}:v1", [self.busybox_layer(), Layer.random(size, f"{prefix}{i}")])
            for i in range(count)
        ]

    def build(
        self,
        name: str,
        layers: Iterable[Layer],
        *,
        cmd: Sequence[str] = ("/bin/sh",),
        created: datetime | None = None,
        labels: Mapping[str, str] | None = None,
        entrypoint: Sequence[str] = (),
        env: Sequence[str] = ("PATH=/bin",),
        user: str = "",
        working_dir: str = "",
        architecture: str = "amd64",
    ) -> OciImage:
        """An image of `layers` (lowest first) with the given process defaults (as a Containerfile's CMD,
        ENTRYPOINT, ENV, USER and WORKDIR set them; empty ones are left out), for linux/`architecture`."""
        layer_list = tuple(layers)
        process: dict[str, object] = {"Cmd": list(cmd), "Env": list(env), "Labels": dict(labels or {})}
        if entrypoint:
            process["Entrypoint"] = list(entrypoint)
        if user:
            process["User"] = user
        if working_dir:
            process["WorkingDir"] = working_dir
        config = {
            "architecture": architecture,
            "os": "linux",
            "created": (created or _EPOCH).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": process,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layer_list]},
        }
        config_blob = _canonical_json(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": sha256_digest(config_blob), "size": len(config_blob)},
            "layers": [
                {"mediaType": MEDIA_LAYER_GZIP, "digest": layer.digest, "size": len(layer.blob)} for layer in layer_list
            ],
        }
        manifest_blob = _canonical_json(manifest)
        blobs = {sha256_digest(config_blob): config_blob, sha256_digest(manifest_blob): manifest_blob}
        blobs.update({layer.digest: layer.blob for layer in layer_list})
        return OciImage(
            name=name,
            manifest_digest=sha256_digest(manifest_blob),
            config_digest=sha256_digest(config_blob),
            layers=layer_list,
            blobs=blobs,
            architecture=architecture,
        )

    def index(self, name: str, images: Sequence[OciImage]) -> OciImage:
        """A multi-platform image `name`: an OCI index of `images` (built for their platforms), in that order.
        Its ID is its linux/amd64 image's (what containerd on this machine reports); import it with
        `all_platforms=True` to have every platform's blobs present."""
        native = next((i for i in images if i.architecture == "amd64"), None)
        if native is None:
            raise ValueError("an index needs a linux/amd64 image (the platform this machine runs)")
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": i.manifest_digest,
                    "size": len(i.blobs[i.manifest_digest]),
                    "platform": {"architecture": i.architecture, "os": "linux"},
                }
                for i in images
            ],
        }
        index_blob = _canonical_json(index)
        blobs = {k: v for i in images for k, v in i.blobs.items()}
        blobs[sha256_digest(index_blob)] = index_blob
        return OciImage(
            name=name,
            manifest_digest=sha256_digest(index_blob),
            config_digest=native.config_digest,
            layers=native.layers,
            blobs=blobs,
            media_type=MEDIA_INDEX,
        )

    def pause_image(self, name: str = "registry.k8s.io/pause:3.6") -> OciImage:
        """A sandbox image that sleeps forever, made from busybox-static."""
        return self.build(name, [self.busybox_layer()], cmd=("/bin/sleep", "2147483647"))


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """containerd's snapshot names for a layer chain (the OCI ChainID of each prefix)."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else sha256_digest(f"{out[-1]} {diff_id}".encode()))
    return out
