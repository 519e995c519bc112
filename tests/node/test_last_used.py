"""The last-use state file: never someone else's file, never a crash on bad values, writes that never collide."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node_janitor.node.inventory import ContainerEntry, ImageEntry, Inventory
from node_janitor.node.last_used import STATE_KIND, LastUsedStore, observe_last_used

ID = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "content",
    [
        b"127.0.0.1 localhost\n",  # a text file given by mistake
        b"\xff\xfe not utf-8",
        b'["a", "list"]',
        b'{"apiVersion": "v1", "kind": "ConfigMap"}',
        b'{"kind": "something-else", "lastUsed": {}}',
        b'{"lastUsed": [1, 2]}',
        b"[" * 100_000,  # deeply nested: not a RecursionError
        b"{" + b" " * (17 * 2**20) + b"}",  # too large to be ours
    ],
)
def test_a_file_that_is_not_our_state_is_never_overwritten(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state"
    path.write_bytes(content)
    store = LastUsedStore(path)
    known, warning = store.load()
    assert known == {} and warning and "will not be" in warning
    warning = store.save({ID: WHEN})
    assert warning is not None and "did not save" in warning
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


def test_entries_of_the_wrong_type_are_a_warning_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps({"lastUsed": {ID: WHEN.isoformat(), OTHER: 5, "x": "2026-11-30T12:00:00", "y": "yesterday"}})
    )
    store = LastUsedStore(path)
    known, warning = store.load()
    assert known == {ID: WHEN}
    assert warning is not None and "5" in warning and "2 more" in warning
    assert store.save(known) is None  # our file, with bad entries: rewritten with the good ones
    assert json.loads(path.read_text()) == {"kind": STATE_KIND, "lastUsed": {ID: WHEN.isoformat()}}
    assert LastUsedStore(path).load() == ({ID: WHEN}, None)


def test_an_old_state_file_without_kind_is_ours(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"lastUsed": {ID: WHEN.isoformat()}}))
    store = LastUsedStore(path)
    assert store.load() == ({ID: WHEN}, None)
    assert store.save({OTHER: WHEN}) is None
    assert json.loads(path.read_text())["lastUsed"] == {OTHER: WHEN.isoformat()}


def test_concurrent_saves_never_interleave_and_leave_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    squatter = tmp_path / "state.json.tmp"  # the old fixed temp name: someone else's file now
    squatter.write_text("not ours")
    stores = [LastUsedStore(path) for _ in range(8)]
    for store in stores:
        store.load()
    payloads = [{f"sha256:{i:064x}": WHEN} for i in range(8)]
    warnings: list[str | None] = []
    threads = [
        threading.Thread(target=lambda s=s, p=p: warnings.extend(s.save(p) for _ in range(20)))
        for s, p in zip(stores, payloads, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert warnings == [None] * 160
    known, warning = LastUsedStore(path).load()
    assert warning is None and known in payloads  # one whole write won, none interleaved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.tmp"]
    assert squatter.read_text() == "not ours"


def test_a_symlink_or_directory_is_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    link = tmp_path / "state.json"
    link.symlink_to(target)
    store = LastUsedStore(link)
    assert store.load()[1] is not None  # "precious" is not JSON
    assert store.save({ID: WHEN}) is not None
    assert target.read_text() == "precious"
    directory = tmp_path / "dir"
    directory.mkdir()
    store = LastUsedStore(directory)
    _, warning = store.load()
    assert warning is not None
    assert store.save({ID: WHEN}) is not None and directory.is_dir()


def _node(*containers: ContainerEntry) -> Inventory:
    images = (
        ImageEntry(id=ID, names=("example.com/a:v1",), targets=("sha256:" + "01" * 32,)),
        ImageEntry(id=OTHER, names=("example.com/b:v1",), targets=("sha256:" + "02" * 32,)),
    )
    return Inventory(taken_at=WHEN, images=images, containers=containers)


def test_last_use_in_the_future_is_clamped_to_now() -> None:
    """A state file written on a clock ahead, or a container whose createdAt a skewed runtime put in the future:
    that image would look used "later than now" and outlive every other one in LRU order."""
    later = WHEN + timedelta(days=400)
    job = ContainerEntry(id="c1", image="example.com/b:v1", state="EXITED", created_at=later, finished_at=later)
    inventory = _node(job)
    assert observe_last_used(inventory, WHEN, {ID: later}) == {ID: WHEN, OTHER: WHEN}
    assert inventory.last_used(OTHER, {}) == WHEN  # the planner's and df's view
    assert inventory.last_used(ID, {ID: later}) == WHEN
    earlier = WHEN - timedelta(days=1)
    assert observe_last_used(_node(), WHEN, {ID: earlier}) == {ID: earlier}  # the past is kept as it is
