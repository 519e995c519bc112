"""Runtime discovery (`runtime.discovery`): the parsing of CRI Status answers and containerd configuration files of
every version on fixtures (tests/runtime/fixtures: the Status answers are our two containerds' real ones, the
`*-default.toml` their `containerd config default`), and discovery on a real containerd, whichever the lane runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.node.engine import NodeEngine
from node_janitor.runtime import open_runtime
from node_janitor.runtime.discovery import (
    DEFAULT_CONFIG_PATH,
    K3S_SOCKET,
    config_candidates,
    discover_runtime,
    layout_of,
    parse_config,
    parse_status,
    read_config,
    root_from_image_fs,
)
from node_janitor.runtime.records import CriStatus, CriVersion, FilesystemUsage, ImageFsInfo

FIXTURES = Path(__file__).parent / "fixtures"


def status_info(name: str) -> dict[str, str]:
    info: dict[str, str] = json.loads((FIXTURES / name).read_text())
    return info


def test_containerd_1_6_status_names_root_state_and_sandbox_image() -> None:
    facts = parse_status(status_info("cri-status-containerd-1.6.json"))
    assert facts.root == "/var/lib/containerd"
    assert facts.state == "/run/containerd"
    assert facts.endpoint == "/run/containerd/containerd.sock"
    assert facts.sandbox_image == "registry.k8s.io/pause:3.6"
    assert facts.snapshotter == "overlayfs"


def test_containerd_2_3_status_names_root_and_state_but_no_image_settings() -> None:
    """2.x's Status reports the CRI runtime plugin's config only: no sandbox or pinned images, no snapshotter."""
    info = status_info("cri-status-containerd-2.3.json")
    config = json.loads(info["config"])
    assert not {"sandboxImage", "pinnedImages", "pinned_images"} & set(config)
    facts = parse_status(info)
    assert (facts.root, facts.state) == ("/var/lib/containerd", "/run/containerd")
    assert facts.sandbox_image == "" and dict(facts.pinned_images) == {} and facts.snapshotter == ""


@pytest.mark.parametrize(
    "info", [{}, {"config": "not json"}, {"config": "[1, 2]"}, {"info": json.dumps({"storageDriver": "overlay"})}]
)
def test_other_status_answers_give_empty_facts(info: dict[str, str]) -> None:
    """CRI-O's answer (its `info` key), a malformed one: nothing found, no exception."""
    facts = parse_status(info)
    assert (facts.root, facts.sandbox_image, dict(facts.pinned_images)) == ("", "", {})


def test_a_future_status_with_pinned_images_is_taken() -> None:
    facts = parse_status({"config": json.dumps({"pinnedImages": {"sandbox": "pause:3.10", "x": "keep:1", "n": 1}})})
    assert facts.sandbox_image == "pause:3.10" and dict(facts.pinned_images) == {"sandbox": "pause:3.10", "x": "keep:1"}


@pytest.mark.parametrize(
    ("fixture", "version", "root", "pinned"),
    [
        ("config-v1-containerd-1.4.toml", 1, "/var/lib/containerd", {"sandbox": "k8s.gcr.io/pause:3.2"}),
        ("config-v2-containerd-1.6-default.toml", 2, "/var/lib/containerd", {"sandbox": "registry.k8s.io/pause:3.6"}),
        (
            "config-v2-containerd-1.7-eks.toml",
            2,
            "/var/lib/containerd",
            {"sandbox": "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.5"},
        ),
        (
            "config-v3-containerd-2.0.toml",
            3,
            "/var/lib/containerd",
            {"sandbox": "registry.k8s.io/pause:3.10", "extra": "registry.example/keep-me:1"},
        ),
        (
            "config-v4-containerd-2.3-default.toml",
            4,
            "/var/lib/containerd",
            {"sandbox": "registry.k8s.io/pause:3.10.2"},
        ),
        (
            "config-v3-k3s.toml",
            3,
            "/var/lib/rancher/k3s/agent/containerd",
            {"sandbox": "rancher/mirrored-pause:3.6"},
        ),
        ("config-v2-rke2.toml", 2, "", {"sandbox": "index.docker.io/rancher/mirrored-pause:3.6"}),
    ],
)
def test_every_config_version_gives_its_pinned_images(
    fixture: str, version: int, root: str, pinned: dict[str, str]
) -> None:
    facts = parse_config((FIXTURES / fixture).read_text(), fixture)
    assert facts.error == ""
    assert facts.version == version
    assert facts.root == root
    assert dict(facts.pinned_images) == pinned
    assert facts.sandbox_image == pinned["sandbox"]


def test_the_2_3_default_config_imports_its_drop_in_directory() -> None:
    facts = parse_config((FIXTURES / "config-v4-containerd-2.3-default.toml").read_text())
    assert facts.imports == ("/etc/containerd/conf.d/*.toml",)


def test_a_version_3_file_with_a_version_2_cri_section_is_migrated_a_version_4_one_is_not() -> None:
    """containerd 2.x migrates `io.containerd.grpc.v1.cri`'s sandbox_image below config version 4 only."""
    old = '[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "pause:old"\n'
    assert parse_config("version = 3\n" + old).sandbox_image == "pause:old"
    assert parse_config("version = 4\n" + old).sandbox_image == ""
    new = "[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = 'pause:new'\n"
    assert parse_config("version = 3\n" + old + new).sandbox_image == "pause:new"


def test_malformed_config_gives_an_error_not_an_exception() -> None:
    facts = parse_config("version = 2\n[plugins\n", "/etc/containerd/config.toml")
    assert facts.error.startswith("not TOML") and facts.pinned_images == {}
    # a k3s template that is not plain TOML (Go template directives)
    assert parse_config('{{ template "base" . }}\n').error


def test_imports_override_the_main_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    main = tmp_path / "config.toml"
    main.write_text(
        "version = 3\nimports = ['conf.d/*.toml']\n"
        "[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = 'pause:main'\nother = 'keep:1'\n"
    )
    (tmp_path / "conf.d" / "10-pause.toml").write_text(
        "[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = 'pause:dropin'\n"
    )
    facts = read_config(main)
    assert facts is not None
    assert dict(facts.pinned_images) == {"sandbox": "pause:dropin", "other": "keep:1"}
    assert read_config(tmp_path / "none.toml") is None


def test_layouts_and_where_their_configuration_is() -> None:
    assert layout_of(K3S_SOCKET, "/var/lib/rancher/k3s/agent/containerd") == "k3s"
    assert layout_of(K3S_SOCKET, "/var/lib/rancher/rke2/agent/containerd") == "rke2"
    assert layout_of(K3S_SOCKET, "") == "k3s"
    assert layout_of("/run/containerd/containerd.sock", "/var/lib/containerd") == "containerd"
    assert config_candidates("rke2", "/var/lib/rancher/rke2/agent/containerd") == [
        Path("/var/lib/rancher/rke2/agent/etc/containerd/config.toml"),
        Path("/var/lib/rancher/rke2/agent/etc/containerd/config.toml.tmpl"),
        Path("/var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml.tmpl"),
        DEFAULT_CONFIG_PATH,
    ]
    assert config_candidates("containerd", "/var/lib/containerd") == [DEFAULT_CONFIG_PATH]


def test_root_from_the_image_file_system() -> None:
    fs = ImageFsInfo((FilesystemUsage("/data/containerd/io.containerd.snapshotter.v1.overlayfs", 1, 1),))
    assert root_from_image_fs(fs) == "/data/containerd"
    assert root_from_image_fs(ImageFsInfo((FilesystemUsage("/var/lib/containers/storage", 1, 1),))) == ""


class StatusOnly:
    """The three CRI answers discovery reads, as a k3s or RKE2 node's containerd 2.x would give them."""

    def __init__(self, version: str, config: dict[str, str], mountpoint: str) -> None:
        self.answer = CriVersion("0.1.0", "containerd", version, "v1")
        self.info = {"config": json.dumps(config)}
        self.fs = ImageFsInfo((FilesystemUsage(mountpoint, 0, 0, datetime.now(UTC)),))

    async def version(self) -> CriVersion:
        return self.answer

    async def status(self, *, verbose: bool = False) -> CriStatus:
        return CriStatus((), self.info if verbose else {})

    async def image_fs_info(self) -> ImageFsInfo:
        return self.fs


@pytest.mark.parametrize(("layout", "fixture"), [("k3s", "config-v3-k3s.toml"), ("rke2", "config-v2-rke2.toml")])
async def test_discovery_on_a_rancher_layout_reads_its_config(tmp_path: Path, layout: str, fixture: str) -> None:
    root = f"/var/lib/rancher/{layout}/agent/containerd"
    etc = tmp_path / root.lstrip("/") / ".." / "etc" / "containerd"
    etc.mkdir(parents=True)
    (etc / "config.toml").write_text((FIXTURES / fixture).read_text())
    cri = StatusOnly("v2.0.5-k3s1", {"containerdRootDir": root}, f"{root}/io.containerd.snapshotter.v1.overlayfs")

    found = await discover_runtime(cri, K3S_SOCKET, host_root=tmp_path)

    assert (found.layout, found.root, found.root_source) == (layout, root, "cri status")
    assert found.config is not None
    assert found.config.path == f"/var/lib/rancher/{layout}/agent/etc/containerd/config.toml"
    expected = parse_config((FIXTURES / fixture).read_text()).sandbox_image
    assert (found.sandbox_image, found.sandbox_image_source) == (expected, "config file")
    assert found.configured_images == (expected,)
    assert f"layout={layout}" in found.summary() and expected in found.summary()


async def test_discovery_without_root_in_status_or_config_file(tmp_path: Path) -> None:
    """Nothing but ImageFsInfo: the root from its mountpoint; no configuration: nothing pinned by it."""
    cri = StatusOnly("v2.3.7", {}, "/data/containerd/io.containerd.snapshotter.v1.overlayfs")
    found = await discover_runtime(cri, "/run/containerd/containerd.sock", host_root=tmp_path)
    assert (found.root, found.root_source, found.layout) == ("/data/containerd", "cri image fs", "containerd")
    assert found.config is None and found.configured_images == () and found.sandbox_image == ""
    missing = await discover_runtime(cri, "/s.sock", config_path=Path("/nowhere.toml"), host_root=tmp_path)
    assert missing.warnings == ("no containerd configuration at /nowhere.toml",)


async def test_another_containerds_configuration_is_not_taken(tmp_path: Path) -> None:
    """/etc/containerd/config.toml of the host's own containerd (default root /var/lib/containerd) is not the
    configuration of a containerd whose root is elsewhere: skipped with a warning, unless it was named."""
    etc = tmp_path / "etc" / "containerd"
    etc.mkdir(parents=True)
    (etc / "config.toml").write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "p:1"\n')
    cri = StatusOnly("v2.3.7", {"containerdRootDir": "/data/containerd"}, "/data/x")
    found = await discover_runtime(cri, "/run/other.sock", host_root=tmp_path)
    assert found.config is None and found.sandbox_image == ""
    assert found.warnings == (
        "/etc/containerd/config.toml is another containerd's configuration (root /var/lib/containerd, not "
        "/data/containerd)",
    )
    named = await discover_runtime(cri, "/run/other.sock", config_path=DEFAULT_CONFIG_PATH, host_root=tmp_path)
    assert named.sandbox_image == "p:1" and len(named.warnings) == 1
    same = StatusOnly("v2.3.7", {"containerdRootDir": "/var/lib/containerd"}, "/data/x")
    assert (await discover_runtime(same, "/run/containerd/containerd.sock", host_root=tmp_path)).sandbox_image == "p:1"


async def test_discovery_on_the_real_containerd(containerd_bed: ContainerdBed) -> None:
    """On 1.6 (config v2) CRI Status names the sandbox image; on 2.3 (the same v2 file, migrated) only the
    configuration file does, and CRI flags the image pinned. Either way the planner protects it."""
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        bare = await discover_runtime(cri, bed.address, host_root=bed.base / "no-host")
        found = await discover_runtime(cri, bed.address, config_path=bed.base / "config.toml")
        assert found.root == bare.root == str(bed.root) and found.root_source == "cri status"
        assert found.state == str(bed.state)
        assert found.layout == "containerd" and found.runtime_name == "containerd"
        assert found.image_filesystems == (f"{bed.root}/io.containerd.snapshotter.v1.overlayfs",)
        assert found.config is not None and found.config.version == 2 and found.config.error == ""
        assert found.sandbox_image == bed.sandbox_image
        if bed.binaries.major >= 2:
            assert found.runtime_version.startswith("v2.")
            assert found.sandbox_image_source == "config file" and bare.sandbox_image == ""
        else:
            assert found.sandbox_image_source == bare.sandbox_image_source == "cri status"
            assert bare.sandbox_image == bed.sandbox_image

        for images in ((), found.configured_images):
            engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir,
                                configured_images=images)  # fmt: skip
            inventory = await engine.take_inventory()
            (pause,) = inventory.images
            assert inventory.always_protected(pause) in ("pinned by the runtime", "sandbox (pause) image")
