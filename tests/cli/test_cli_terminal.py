"""On a terminal (a real pty) and off it: `prune` asks before removing unless -f, and never when stdin is not a
terminal; progress goes to stderr only when stderr is a terminal."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from node_janitor.devbed import ContainerdBed, Layer
from node_janitor.runtime import open_runtime
from support.terminal import Terminal

pytestmark = pytest.mark.containerd

MiB = 1 << 20
DEADLINE = 120.0


def _setup(bed: ContainerdBed, tmp_path: Path, name: str) -> tuple[list[str], str]:
    """An unused image of 12 MiB and a policy under pressure at once (high 2%, low 1% of the bed's 487 MiB disk: every
    unused image may go)."""
    b = bed.builder
    image = b.build(f"example.com/{name}:v1", [b.busybox_layer(), Layer.random(12 * MiB, name)])
    bed.import_images([image])
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "apiVersion": "nodejanitor.io/v1alpha1", "kind": "CleanupPolicy", "metadata": {"name": "t"},
        "spec": {"thresholds": {"highPercent": 2, "lowPercent": 1}, "images": {"minAge": "0s"}},
    }))  # fmt: skip
    command = [sys.executable, "-m", "node_janitor", "prune", "--containerd-socket", bed.address,
               "--pod-log-dir", str(bed.pod_log_dir), "--policy", str(policy)]  # fmt: skip
    return command, image.id


def _present(bed: ContainerdBed, image_id: str) -> bool:
    async def ids() -> set[str]:
        async with open_runtime(bed.address, bed.namespace) as (cri, _):
            return {i.id for i in await cri.list_images()}

    return image_id in asyncio.run(ids())


def test_prune_asks_on_a_terminal_and_no_keeps_everything(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    command, image = _setup(containerd_bed, tmp_path, "asked-no")
    terminal = Terminal(command)
    terminal.wait_for(b"[y/N] ")
    assert b"Would remove image: example.com/asked-no:v1" in terminal.shown
    terminal.type("n")
    code, out, shown = terminal.finish()
    assert code == 0 and "Nothing removed." in shown and out == ""
    assert _present(containerd_bed, image)


def test_prune_asks_on_a_terminal_and_yes_removes(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    command, image = _setup(containerd_bed, tmp_path, "asked-yes")
    terminal = Terminal(command)
    terminal.wait_for(b"[y/N] ")
    assert b"Taking the inventory" in terminal.shown  # the progress, on the terminal's stderr
    terminal.type("y")
    code, out, _ = terminal.finish()
    assert code == 0 and "Removed image: example.com/asked-yes:v1" in out
    assert not _present(containerd_bed, image)


def test_prune_force_and_a_stdin_that_is_no_terminal_never_ask(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    command, image = _setup(containerd_bed, tmp_path, "forced")
    terminal = Terminal([*command, "-f"])
    code, out, shown = terminal.finish()
    assert code == 0 and "[y/N]" not in shown and "Removed image: example.com/forced:v1" in out
    assert not _present(containerd_bed, image)

    command, image = _setup(containerd_bed, tmp_path, "piped")
    terminal = Terminal(command, stdin_tty=False)  # stderr still a terminal: nobody to ask all the same
    code, out, shown = terminal.finish()
    assert code == 0 and "[y/N]" not in shown and "Removed image: example.com/piped:v1" in out
    assert not _present(containerd_bed, image)


def test_no_progress_when_stderr_is_not_a_terminal(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    command, image = _setup(containerd_bed, tmp_path, "quiet")
    result = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert result.returncode == 0 and result.stderr == ""
    assert "Would remove image: example.com/quiet:v1" in result.stdout
    df = [sys.executable, "-m", "node_janitor", "df", "--containerd-socket", containerd_bed.address]
    result = subprocess.run(df, capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert result.returncode == 0 and result.stderr == ""
    terminal = Terminal(df)
    code, out, shown = terminal.finish()
    assert code == 0 and "Taking the inventory" in shown and out.startswith("TYPE")
    assert _present(containerd_bed, image)
