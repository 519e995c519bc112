"""The agent's state directory (`agent.store`): atomic writes, unreadable files ignored."""

from __future__ import annotations

from pathlib import Path

from node_janitor.agent.store import AgentStore, write_atomically


def test_state_writes_are_atomic_with_unique_temporary_names(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "state")
    store.save_policy({"nodeName": "n", "policy": {"dryRun": True}}, 3)
    assert store.load_policy() == {"spec": {"nodeName": "n", "policy": {"dryRun": True}}, "generation": 3}
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["policy.json"]  # no temporary file left
    (tmp_path / "state" / "status.json").write_text("{not json")
    assert store.load_status() is None  # unreadable: ignored with a warning
    store.forget_policy()
    assert store.load_policy() is None


def test_a_refused_write_is_a_warning_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    warning = write_atomically(blocker / "x.json", {"a": 1})  # its parent is a file: ENOTDIR, even for root
    assert warning is not None and "could not write" in warning
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]
