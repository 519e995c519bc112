"""NodeEngine without a runtime: what must not touch one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.api.policy import PolicyRules
from node_janitor.cli.prune import render_prune
from node_janitor.node.engine import NodeEngine, protected_now
from node_janitor.node.last_used import LastUsedStore


class Untouchable:
    """A runtime client that fails the test on any use (a paused run must not even list)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a paused run used the runtime: {name}")


async def test_paused_touches_neither_the_runtime_nor_the_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    engine = NodeEngine(Untouchable(), Untouchable(), state=LastUsedStore(state), pod_log_dir=tmp_path)  # type: ignore[arg-type]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    report = await engine.run_once(PolicyRules(paused=True), now, protected_images=lambda: ["x"])
    assert report.paused and report.plan.actions == () and report.errors == [] and report.execution is None
    assert report.to_json()["paused"] is True and report.to_json()["actions"] == []
    assert "Paused" in render_prune(report)
    assert not state.exists() and not engine.lock.locked()


def test_the_protected_set_is_read_when_asked() -> None:
    current = ["a"]
    assert protected_now(lambda: current) == ("a",)
    current.append("b")
    assert protected_now(lambda: current) == ("a", "b")
    assert protected_now(("c",)) == ("c",)


def test_a_pod_log_directory_is_a_file_system_of_its_own_only_at_the_top_of_one() -> None:
    """Logs pay for a file system's pressure only when it is theirs: the pod log directory is where a file system
    is mounted from its top (a disk for the logs), not a directory of a larger one, nor the DaemonSet's bind mount
    of such a directory (mountinfo's root field is then the directory's path in the node's root disk)."""
    from node_janitor.node.engine import is_file_system_root

    mountinfo = "\n".join(
        [
            "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw",
            "35 22 259:2 / /var/log/pods rw,relatime shared:9 - xfs /dev/nvme1n1 rw",  # a disk of its own
            "36 22 259:1 /var/log/pods /agent/pods rw,relatime - ext4 /dev/nvme0n1p1 rw",  # hostPath of a directory
            "37 22 0:50 / /mnt/my\\040logs rw,relatime - tmpfs tmpfs rw",  # a space, escaped
            "38 22 0:51 / /agent/over rw - tmpfs tmpfs rw",
            "39 22 259:1 /var/log/pods /agent/over rw - ext4 /dev/nvme0n1p1 rw",  # mounted over: the last one counts
        ]
    )
    assert is_file_system_root("/var/log/pods", mountinfo)
    assert is_file_system_root("/mnt/my logs", mountinfo)
    assert not is_file_system_root("/agent/pods", mountinfo)
    assert not is_file_system_root("/agent/over", mountinfo)
    assert not is_file_system_root("/var/log", mountinfo)  # a directory of the root disk
    assert not is_file_system_root("/var/log/pods", "")  # nothing known: not its own
