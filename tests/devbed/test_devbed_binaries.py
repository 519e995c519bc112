"""Which containerd a bed runs: NJ_CONTAINERD selects a built 2.x (the newest of its minor) or Debian's 1.6, and a
built containerd starts its own shim, never Debian's 1.6 one in /usr/bin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed, DevbedError, containerd_binaries
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.runtime import CriClient


def _fake_build(cache: Path, version: str) -> Path:
    d = cache / f"containerd-v{version}"
    d.mkdir(parents=True)
    for name in ("containerd", "ctr", "containerd-shim-runc-v2"):
        (d / name).write_text("#!/bin/sh\n")
        (d / name).chmod(0o755)
    return d


def test_selection_picks_the_newest_build_of_the_asked_minor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_JANITOR_CACHE", str(tmp_path))
    for version in ("2.3.7", "2.3.10", "2.4.2", "2.30.1"):
        _fake_build(tmp_path, version)
    (tmp_path / "containerd-v2.3.99").mkdir()  # an interrupted build: no binaries, never chosen

    monkeypatch.delenv("NJ_CONTAINERD", raising=False)
    assert containerd_binaries().version == "2.3.10"  # the default: 2.3 (10 > 7 as numbers, 2.30 is not 2.3)
    monkeypatch.setenv("NJ_CONTAINERD", "2.4")
    chosen = containerd_binaries()
    assert (chosen.version, chosen.bin_dir, chosen.major) == ("2.4.2", tmp_path / "containerd-v2.4.2", 2)
    assert chosen.path("ctr") == str(tmp_path / "containerd-v2.4.2" / "ctr")
    assert chosen.env()["PATH"].split(os.pathsep)[0] == str(tmp_path / "containerd-v2.4.2")
    assert containerd_binaries("2.3.7").bin_dir == tmp_path / "containerd-v2.3.7"

    monkeypatch.setenv("NJ_CONTAINERD", "1.6")
    system = containerd_binaries()
    assert (system.bin_dir, system.path("containerd"), system.major) == (None, "containerd", 1)
    assert system.env()["PATH"] == os.environ["PATH"]

    with pytest.raises(DevbedError, match=r"containerd 2\.2 is not built .*hack/build-containerd\.sh"):
        containerd_binaries("2.2")
    assert containerd_binaries(str(tmp_path / "containerd-v2.4.2")).version == "2.4.2"
    with pytest.raises(DevbedError, match="no containerd, ctr, containerd-shim-runc-v2 there"):
        containerd_binaries(str(tmp_path / "containerd-v2.3.99"))


@pytest.mark.containerd
async def test_the_bed_runs_the_selected_containerd_and_its_own_shim(containerd_bed: ContainerdBed) -> None:
    binaries = containerd_bed.binaries
    builder = containerd_bed.builder
    image = builder.build("example.com/shim-check:v1", [builder.busybox_layer()])
    containerd_bed.import_images([image])
    async with CriClient(containerd_bed.address) as cri:
        assert (await cri.version()).runtime_version.removeprefix("v").startswith(binaries.version)
        pod = await run_pod(cri, containerd_bed.pod_log_dir, "shim-check")
        started = await start_container(cri, pod, "c", image.name, "sleep 600")
        await wait_for_state(cri, started.id, "RUNNING")
        exes = {os.readlink(f"/proc/{pid}/exe") for pid in containerd_bed.shim_pids()}
        await remove_all_pods(cri)
    shim_dir = binaries.bin_dir or Path("/usr/bin")
    assert exes == {str(shim_dir / "containerd-shim-runc-v2")}
