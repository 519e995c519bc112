"""NodeEngine without a runtime: what must not touch one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node_janitor.api.policy import PolicyRules
from node_janitor.engine import NodeEngine, protected_now
from node_janitor.prune import render_prune
from node_janitor.state import LastUsedStore


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
