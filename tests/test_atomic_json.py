"""The one atomic JSON write (`node_janitor.atomic_json`) as both of its callers use it, on real files: the last-use
state (`LastUsedStore.save`) and the agent's state directory (`AgentStore`). A symlink planted at the target or at
the temporary name is never followed, and the write leaves no temporary file behind."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from node_janitor.agent.store import AgentStore, write_atomically
from node_janitor.atomic_json import write_json_atomically
from node_janitor.node.last_used import LastUsedStore

ID = "sha256:" + "ab" * 32
WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def save_last_used(path: Path) -> str | None:
    return LastUsedStore(path).save({ID: WHEN})


def save_agent_status(path: Path) -> str | None:
    return write_atomically(path, {"lastRun": {"ok": True}})


CALLERS: dict[str, Callable[[Path], str | None]] = {"last_used": save_last_used, "agent_store": save_agent_status}


@pytest.fixture(params=sorted(CALLERS))
def save(request: pytest.FixtureRequest) -> Callable[[Path], str | None]:
    return CALLERS[request.param]


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(
    tmp_path: Path, save: Callable[[Path], str | None]
) -> None:
    target = tmp_path / "dir" / "state.json"
    assert save(target) is None
    assert save(target) is None  # over an existing file of ours
    assert isinstance(json.loads(target.read_text()), dict)
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]
    assert target.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_symlink_at_the_target_is_neither_followed_nor_replaced(
    tmp_path: Path, save: Callable[[Path], str | None], dangling: bool
) -> None:
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_text("someone else's\n")
    target = tmp_path / "state.json"
    target.symlink_to(victim)
    warning = save(target)
    assert warning is not None and str(target) in warning and "not a regular file" in warning
    assert target.is_symlink() and os.readlink(target) == str(victim)
    assert victim.read_text() == "someone else's\n" if not dangling else not victim.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["state.json"] + ([] if dangling else ["victim"]))


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(
    tmp_path: Path, save: Callable[[Path], str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: "0badc0de")  # the temporary name, made predictable
    victim = tmp_path / "victim"
    victim.write_text("someone else's\n")
    target = tmp_path / "state.json"
    planted = tmp_path / f".state.json.{os.getpid()}.0badc0de.tmp"
    planted.symlink_to(victim)
    warning = save(target)
    assert warning is not None and str(target) in warning
    assert victim.read_text() == "someone else's\n"
    assert planted.is_symlink() and not target.exists()  # what was planted is not ours to remove either


def test_a_full_or_refusing_disk_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    reason = write_json_atomically(blocker / "x.json", {"a": 1})  # its parent is a file: refused, even for root
    assert reason == "File exists"
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]


def test_the_agent_store_logs_a_refused_write_and_keeps_going(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = AgentStore(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("{}")
    store.status_path.symlink_to(victim)
    with caplog.at_level(logging.WARNING, logger="node_janitor.agent.store"):
        store.save_status({"lastRun": {"ok": True}})
    assert any("not a regular file" in r.getMessage() for r in caplog.records)
    assert victim.read_text() == "{}" and store.status_path.is_symlink()
