"""Applying log actions and the rotation loop, on temporary directories with a fake CRI."""

from __future__ import annotations

import asyncio
import glob
import gzip
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node_janitor.api.policy import LogsPolicy
from node_janitor.node.logs import (
    LogAction,
    LogActionKind,
    LogFileKind,
    LogJanitor,
    LogPass,
    LogReason,
    LogRotator,
    LogSettings,
    LogTreeLock,
    parse_log_name,
    remove_pod_log_dir,
    scan_log_tree,
)
from node_janitor.node.logs.compression import GzipDraft, commit_gzip_draft, gzip_file, write_gzip_draft
from node_janitor.node.outcome import Outcome
from node_janitor.runtime import CriContainerStatus, RuntimeClientError
from support.logfakes import T0, FakeClock, FakeCri, fake_uid

KiB = 1 << 10


def _rotate(path: Path, cid: str, **kw) -> LogAction:
    return LogAction(LogActionKind.ROTATE, str(path), LogReason.MAX_SIZE, 0, container_id=cid, **kw)


def _read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture
def cri(tmp_path: Path) -> FakeCri:
    return FakeCri(tmp_path / "pods")


async def test_rotation_renames_then_reopens_with_kubelets_name(cri: FakeCri) -> None:
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    log.write_bytes(b"x" * 100)
    janitor = LogJanitor(cri, clock=FakeClock(T0.replace(microsecond=123)))
    [result] = await janitor.apply([_rotate(log, "c1", if_at_least=100)])
    assert result.outcome is Outcome.DONE, result.message
    assert result.rotated_path == str(log) + ".20260301-120000.000123"
    assert _read(result.rotated_path) == b"x" * 100 and result.rotated_length == 100
    assert log.exists() and log.stat().st_size == 0  # the runtime reopened a fresh file
    assert cri.calls == ["ContainerStatus c1", "ReopenContainerLog c1"]
    # A second rotation in the same microsecond (a frozen clock) does not overwrite the first.
    log.write_bytes(b"y" * 100)
    [again] = await janitor.apply([_rotate(log, "c1")])
    assert again.rotated_path.endswith(".000124") and _read(result.rotated_path) == b"x" * 100
    assert janitor.counts["rotate-log max-size done"] == 2


async def test_a_failed_reopen_renames_the_file_back(cri: FakeCri) -> None:
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    log.write_bytes(b"keep me\n")
    cri.fail_reopen.add("c1")
    [result] = await LogJanitor(cri).apply([_rotate(log, "c1")])
    assert result.outcome is Outcome.FAILED and "renamed back" in result.message
    assert log.read_bytes() == b"keep me\n"
    assert sorted(p.name for p in log.parent.iterdir()) == ["0.log"]


@pytest.mark.parametrize("gone", [False, True])
async def test_a_log_the_runtime_no_longer_runs_is_never_reopened(cri: FakeCri, gone: bool) -> None:
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    log.write_bytes(b"z" * 10)
    if gone:
        del cri.containers["c1"]
    else:
        cri.containers["c1"].state = "EXITED"
    [result] = await LogJanitor(cri).apply([_rotate(log, "c1")])
    assert result.outcome is Outcome.SKIPPED and "not reopened" in result.message
    assert cri.reopened == [] and log.read_bytes() == b"z" * 10


async def test_a_container_that_now_logs_elsewhere_is_not_rotated(cri: FakeCri) -> None:
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    cri.containers["c1"].log_path = str(log.parent / "9.log")
    [result] = await LogJanitor(cri).apply([_rotate(log, "c1")])
    assert result.outcome is Outcome.SKIPPED and cri.reopened == []


async def test_rotation_with_discard_removes_the_rotated_file(cri: FakeCri) -> None:
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    log.write_bytes(os.urandom(64 * KiB))
    [result] = await LogJanitor(cri).apply([_rotate(log, "c1", discard=True)])
    assert result.outcome is Outcome.DONE and result.freed >= 64 * KiB
    assert sorted(p.name for p in log.parent.iterdir()) == ["0.log"]


async def test_compression_writes_a_tmp_then_renames_and_keeps_the_mtime(cri: FakeCri, tmp_path: Path) -> None:
    rotated = tmp_path / "0.log.20260301-115900.000000"
    data = b"".join(b"2026-03-01T11:59:00.000000000Z stdout F line %d\n" % i for i in range(20000))
    rotated.write_bytes(data)
    _age(rotated, 600)
    mtime = rotated.stat().st_mtime_ns
    [result] = await LogJanitor(cri).apply([LogAction(LogActionKind.COMPRESS, str(rotated), LogReason.COMPRESS, 0)])
    assert result.outcome is Outcome.DONE and result.freed > 0
    gz = Path(str(rotated) + ".gz")
    assert _names(tmp_path) == [gz.name]
    assert gzip.decompress(_read(gz)) == data
    assert os.stat(gz).st_mtime_ns == mtime
    assert parse_log_name(gz.name).kind == "compressed"


async def test_removals_count_already_gone_as_done(cri: FakeCri, tmp_path: Path) -> None:
    target = tmp_path / "x.log"
    target.write_bytes(b"1" * 5000)
    link = tmp_path / "link.log"
    link.symlink_to(target)
    results = await LogJanitor(cri).apply(
        [
            LogAction(LogActionKind.REMOVE, str(target), LogReason.MAX_FILES, 5000),
            LogAction(LogActionKind.REMOVE, str(target), LogReason.MAX_FILES, 5000),
            LogAction(LogActionKind.REMOVE, str(link), LogReason.MAX_FILES, 0),
        ]
    )
    assert [r.outcome for r in results] == [Outcome.DONE, Outcome.DONE, Outcome.SKIPPED]
    assert results[0].freed >= 4096 and results[1].message == "already gone"
    assert link.is_symlink()


async def test_the_gate_is_asked_right_before_each_action(cri: FakeCri, tmp_path: Path) -> None:
    """The agent's policy as of now (paused, a dry run or logs disabled since the pass was planned): a reason from
    the gate skips the action, the file stays."""
    files = [tmp_path / f"{i}.log" for i in range(3)]
    for f in files:
        f.write_bytes(b"1" * 5000)
    janitor = LogJanitor(cri)
    janitor.gate = lambda: None if files[0].exists() else "the policy is paused now"  # paused after the first
    results = await janitor.apply([LogAction(LogActionKind.REMOVE, str(f), LogReason.MAX_FILES, 5000) for f in files])
    assert [r.outcome for r in results] == [Outcome.DONE, Outcome.SKIPPED, Outcome.SKIPPED]
    assert results[1].message == "the policy is paused now" and results[1].freed == 0
    assert [f.exists() for f in files] == [False, True, True]


async def test_a_pod_directory_is_not_removed_if_its_pod_is_back(cri: FakeCri) -> None:
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    action = LogAction(LogActionKind.REMOVE_POD_DIR, str(log.parent.parent), LogReason.ORPHANED_POD, 0)
    [result] = await LogJanitor(cri).apply([action])
    assert result.outcome is Outcome.SKIPPED and log.exists()
    cri.remove_pod(pod.id)
    [result] = await LogJanitor(cri).apply([action])
    assert result.outcome is Outcome.SKIPPED and result.message == "the runtime reports no pod sandbox at all"
    cri.add_pod("other", "u2")
    [result] = await LogJanitor(cri).apply([action])
    assert result.outcome is Outcome.DONE and not log.parent.parent.exists()


async def test_scan_marks_live_exited_and_orphaned_files(cri: FakeCri) -> None:
    pod = cri.add_pod("web", "u1")
    live = cri.add_container("c1", pod, "app", attempt=1)
    prev = live.parent / "0.log"
    prev.write_bytes(b"old")
    done = cri.add_container("c2", pod, "job", state="EXITED")
    orphan = cri.root / f"default_gone_{fake_uid('u9')}" / "app" / "0.log"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x" * 10)
    (cri.root / "not-a-pod-dir").mkdir()
    (live.parent / "link.log").symlink_to(orphan)
    tree = scan_log_tree(cri.root, await cri.list_containers(), await cri.list_pod_sandboxes())
    by_path = {f.path: f for f in tree.files}
    assert set(by_path) == {str(live), str(prev), str(done), str(orphan)}
    assert by_path[str(live)].live and by_path[str(live)].container_id == "c1"
    assert not by_path[str(prev)].live and by_path[str(prev)].container_id == ""
    assert not by_path[str(done)].live and by_path[str(done)].container_state == "EXITED"
    assert by_path[str(orphan)].orphaned and by_path[str(orphan)].length == 10
    assert {(p.uid, p.known) for p in tree.pods} == {(fake_uid("u1"), True), (fake_uid("u9"), False)}


async def test_a_log_pass_applies_rules_then_budget_then_live_files(cri: FakeCri) -> None:
    pod = cri.add_pod("web", "u1")
    a = cri.add_container("ca", pod, "a")
    b = cri.add_container("cb", pod, "b")
    a.write_bytes(os.urandom(300 * KiB))
    b.write_bytes(os.urandom(100 * KiB))
    old = a.parent / "0.log.20260301-100000.000000"
    old.write_bytes(os.urandom(200 * KiB))
    _age(old, 7200)
    gone = cri.root / f"default_old_{fake_uid('u0')}" / "app" / "0.log"
    gone.parent.mkdir(parents=True)
    gone.write_bytes(os.urandom(50 * KiB))
    _age(gone, 7200)
    _age(gone.parent, 7200)
    _age(gone.parent.parent, 7200)
    settings = LogSettings(max_size=1 << 30, node_budget=250 * KiB, orphan_grace=timedelta(hours=1))

    dry = await LogPass(cri, cri.root, settings, dry_run=True).run()
    assert [(x.kind, x.reason) for x in dry.rules] == [(LogActionKind.REMOVE_POD_DIR, LogReason.ORPHANED_POD)]
    assert [(x.path, x.reason) for x in dry.reclaim] == [(str(old), LogReason.NODE_BUDGET)]
    assert [(x.container_id, x.discard) for x in dry.live] == [("ca", True)]
    assert gone.exists() and old.exists() and cri.reopened == []  # a dry run changes nothing

    real = await LogPass(cri, cri.root, settings).run()
    assert [(r.action.kind, r.outcome) for r in real.results] == [
        (LogActionKind.REMOVE_POD_DIR, Outcome.DONE),
        (LogActionKind.REMOVE, Outcome.DONE),
        (LogActionKind.ROTATE, Outcome.DONE),  # the live file is rotated away: its older file is gone already
    ]
    assert not gone.parent.parent.exists() and not old.exists()
    assert cri.reopened == ["ca"]
    assert sorted(p.name for p in a.parent.iterdir()) == ["0.log"]
    tree = scan_log_tree(cri.root, await cri.list_containers(), await cri.list_pod_sandboxes())
    assert tree.total_bytes <= 250 * KiB


async def test_rotator_check_rotates_due_containers_in_parallel_and_tidies(cri: FakeCri) -> None:
    clock = FakeClock(datetime.now(UTC))  # near the files' real mtimes
    policy = LogsPolicy.model_validate({"maxSize": "64Ki", "maxFiles": 3, "checkInterval": "100ms"})
    rotator = LogRotator(cri, cri.root, policy, clock=clock)
    pod = cri.add_pod("web", "u1")
    logs = {cid: cri.add_container(cid, pod, cid) for cid in ("big1", "big2", "small")}
    done_pod = cri.add_pod("job", "u2")
    exited = cri.add_container("exited", done_pod, "job", state="EXITED")
    exited.write_bytes(b"e" * 200 * KiB)
    for _ in range(4):
        for cid in ("big1", "big2"):
            _append(logs[cid], b"x" * 70 * KiB)
        logs["small"].write_bytes(b"s" * 10)
        results = await rotator.check()
        assert sorted(r.action.container_id for r in results) == ["big1", "big2"]
        assert all(r.outcome is Outcome.DONE for r in results)
        clock.advance(5)  # rotated files settle
        await rotator.close()  # let the background tidying finish
    assert "exited" not in cri.reopened and "small" not in cri.reopened
    for cid in ("big1", "big2"):
        names = sorted(p.name for p in logs[cid].parent.iterdir())
        kinds = [parse_log_name(n).kind for n in names]
        # maxFiles 3: the live file, the newest rotated file (plain), one older compressed.
        assert len(names) == 3 and kinds.count("log") == 1 and kinds.count("rotated") == 1, names
        assert kinds.count("compressed") == 1, names
    assert rotator.errors == []
    # The status of each container is asked once, not on every check.
    assert sum(1 for c in cri.calls if c == "ContainerStatus small") == 1


async def test_rotator_run_stops_when_asked(cri: FakeCri) -> None:
    policy = LogsPolicy.model_validate({"maxSize": "1Ki", "checkInterval": "10ms"})
    rotator = LogRotator(cri, cri.root, policy, sweep_interval=timedelta(milliseconds=50))
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    stop = asyncio.Event()
    task = asyncio.create_task(rotator.run(stop))
    for _ in range(5):
        _append(log, b"x" * 2 * KiB)
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert cri.reopened.count("c1") >= 3
    assert cri.calls.count("ListPodSandbox") >= 1  # sweeps ran too


async def test_rotator_knows_when_writes_may_have_passed_the_budget(cri: FakeCri) -> None:
    policy = LogsPolicy.model_validate({"maxSize": "1Mi", "nodeBudget": "100Ki"})
    rotator = LogRotator(cri, cri.root, policy, sweep_interval=timedelta(hours=1))
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    _append(log, b"x" * 10 * KiB)
    await rotator.check()
    assert not rotator.over_budget  # no sweep yet: nothing known about the tree
    await rotator.sweep()
    assert not rotator.over_budget
    _append(log, b"x" * 100 * KiB)
    await rotator.check()
    assert rotator.over_budget  # so the loop sweeps now, not at the next sweep interval
    await rotator.sweep()
    assert not rotator.over_budget and cri.reopened == ["c1"]  # the live file was rotated away


async def test_the_budget_takes_files_rotated_meanwhile_before_any_live_file(cri: FakeCri) -> None:
    """A live file's lines go last: rotating it away while an older rotated file of the same container stays
    would cut a hole in that container's lines (seen on the real bed: the rotator rotated between the budget's
    two steps, and the budget then discarded the newest lines)."""
    pod = cri.add_pod("web", "u1")
    a = cri.add_container("ca", pod, "a")
    b = cri.add_container("cb", pod, "b")
    a.write_bytes(os.urandom(100 * KiB))
    b.write_bytes(os.urandom(100 * KiB))
    logs = LogPass(cri, cri.root, LogSettings(max_size=1 << 30, node_budget=250 * KiB))
    assert await logs.reclaim(0) == []  # 200 KiB: under the budget
    rotated = a.parent / "0.log.20260301-115900.000000"  # the rotator rotates `a`, which goes on writing
    a.rename(rotated)
    _age(rotated, 60)
    a.write_bytes(os.urandom(100 * KiB))
    actions = await logs.reclaim(0)
    assert [(x.kind, x.path) for x in actions] == [(LogActionKind.REMOVE, str(rotated))]
    assert cri.reopened == [] and a.stat().st_size == b.stat().st_size == 100 * KiB


async def test_live_files_over_the_budget_are_rotated_away_largest_first(cri: FakeCri) -> None:
    pod = cri.add_pod("web", "u1")
    a = cri.add_container("ca", pod, "a")
    b = cri.add_container("cb", pod, "b")
    a.write_bytes(os.urandom(300 * KiB))
    b.write_bytes(os.urandom(200 * KiB))
    logs = LogPass(cri, cri.root, LogSettings(max_size=1 << 30, node_budget=250 * KiB))
    actions = await logs.reclaim(0)
    assert [(x.kind, x.discard) for x in actions] == [(LogActionKind.ROTATE, True)]
    assert cri.reopened == ["ca"]
    assert _names(a.parent) == ["0.log"] and a.stat().st_size == 0  # `a` writes on into a new file
    assert _names(b.parent) == ["0.log"] and b.stat().st_size == 200 * KiB
    assert await logs.total_bytes() <= 250 * KiB


def test_compression_writes_a_temporary_file_of_its_own(tmp_path: Path) -> None:
    """The temporary file was `<rotated>.tmp`, opened with O_TRUNC: a link planted there (or another compression
    of the same file) was written through."""
    rotated = tmp_path / "0.log.20260301-100000.000000"
    data = b"2026-03-01T10:00:00Z stdout F line\n" * 5000
    rotated.write_bytes(data)
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep me")
    (tmp_path / (rotated.name + ".tmp")).symlink_to(outside)
    outcome, _, freed = gzip_file(str(rotated), 6)
    assert outcome is Outcome.DONE and freed > 0
    assert outside.read_bytes() == b"keep me"
    gz = tmp_path / (rotated.name + ".gz")
    assert not gz.is_symlink() and gzip.decompress(gz.read_bytes()) == data
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == [rotated.name + ".tmp"]


def _kubelet_cleanup_unused_logs(live_log: Path) -> None:
    """What the kubelet does before each rotation of its own (`cleanupUnusedLogs` in kubelet's
    pkg/kubelet/logs/container_log_manager.go): of the files matching `<live log>*`, each `*.tmp` and each plain
    file whose `.gz` twin exists is removed."""
    logs = glob.glob(glob.escape(str(live_log)) + "*")
    for name in logs:
        if name.endswith(".tmp") or (not name.endswith(".gz") and name + ".gz" in logs):
            os.remove(name)


def test_a_compression_draft_survives_the_kubelet_s_log_cleanup(tmp_path: Path) -> None:
    """Issue 18: the draft was `<rotated>.<unique>.tmp`, which the kubelet deletes beside a container's logs when
    it rotates too; the copy then failed to go in place. A draft's name is now out of the kubelet's glob."""
    live = tmp_path / "0.log"
    live.write_bytes(b"")
    rotated = tmp_path / "0.log.20260301-100000.000000"
    data = b"2026-03-01T10:00:00Z stdout F line\n" * 5000
    rotated.write_bytes(data)
    draft = write_gzip_draft(str(rotated), 6)
    assert isinstance(draft, GzipDraft)
    assert parse_log_name(os.path.basename(draft.tmp)).kind is LogFileKind.TMP  # a leftover, if we die here
    _kubelet_cleanup_unused_logs(live)
    outcome, message, freed = commit_gzip_draft(draft)
    assert (outcome, message) == (Outcome.DONE, "") and freed > 0
    assert gzip.decompress((tmp_path / (rotated.name + ".gz")).read_bytes()) == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.log", rotated.name + ".gz"]


def test_two_compressions_of_one_file_at_once_leave_one_good_copy(tmp_path: Path) -> None:
    rotated = tmp_path / "0.log.20260301-100000.000000"
    data = os.urandom(4 << 20)  # incompressible: long enough for both to be writing at once
    for _ in range(3):
        rotated.write_bytes(data)
        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(str(f.result()[0]) for f in [pool.submit(gzip_file, str(rotated), 1) for _ in "ab"])
        assert "done" in outcomes and set(outcomes) <= {"done", "skipped"}
        gz = tmp_path / (rotated.name + ".gz")
        assert gzip.decompress(gz.read_bytes()) == data
        assert sorted(p.name for p in tmp_path.iterdir()) == [gz.name]
        gz.unlink()


def test_an_orphaned_pod_directory_goes_file_by_file_and_follows_no_link(tmp_path: Path) -> None:
    root = tmp_path / "pods"
    pod = root / f"default_web_{fake_uid('u1')}"
    (pod / "app").mkdir(parents=True)
    (pod / "app" / "0.log").write_bytes(b"x" * 5000)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "0.log").write_bytes(b"precious")
    (pod / "sidecar").symlink_to(elsewhere, target_is_directory=True)
    outcome, message, freed = remove_pod_log_dir(str(pod))
    assert outcome is Outcome.SKIPPED and message == "left what is not a log: sidecar" and freed > 0
    assert (elsewhere / "0.log").read_bytes() == b"precious" and not (pod / "app").exists()
    (pod / "sidecar").unlink()
    assert remove_pod_log_dir(str(pod))[0] is Outcome.DONE and not pod.exists()


async def test_a_file_a_pass_removes_never_escapes_as_its_compressed_copy(cri: FakeCri) -> None:
    """A budget step planned to remove a rotated file while a compression was turning it into `.gz`: the lines
    escaped the plan under the new name, and the budget removed newer files in their place (a hole in a
    writer's lines, seen on the real bed). The copy is put in place under the tree lock, after the step."""
    pod = cri.add_pod("web", "u1")
    log = cri.add_container("c1", pod, "app")
    rotated = log.parent / "0.log.20260301-100000.000000"
    rotated.write_bytes(os.urandom(2 << 20))
    lock = LogTreeLock(cri.root)
    janitor = LogJanitor(cri, tree_lock=lock)
    compress = LogAction(LogActionKind.COMPRESS, str(rotated), LogReason.COMPRESS, 0)
    remove = LogAction(LogActionKind.REMOVE, str(rotated), LogReason.NODE_BUDGET, 2 << 20)
    async with lock.hold():  # a pass's step: its snapshot saw the plain file
        compressing = asyncio.create_task(janitor.apply_one(compress))
        for _ in range(3000):  # until the copy is being written (30 s at most)
            if any(parse_log_name(p.name).kind is LogFileKind.TMP for p in log.parent.iterdir()):
                break
            await asyncio.sleep(0.01)
        removed = await janitor.apply_one(remove)
    compressed = await asyncio.wait_for(compressing, 30)
    assert removed.outcome is Outcome.DONE and removed.freed > 0
    assert (compressed.outcome, compressed.message) == (Outcome.DONE, "already gone")
    assert _names(log.parent) == ["0.log"]  # neither the file nor a copy of it


async def test_a_container_that_stops_during_its_rotation_is_no_failure(tmp_path: Path) -> None:
    """Seen on the real bed when writers are stopped while the rotator runs: the runtime refuses to reopen the
    log of a container that just stopped. The file is renamed back and the rotation skipped, not failed."""

    class StopsMeanwhile(FakeCri):
        async def reopen_container_log(self, container_id: str) -> None:
            self.containers[container_id].state = "EXITED"  # the kubelet stopped it after our status check
            await super().reopen_container_log(container_id)

    cri = StopsMeanwhile(tmp_path / "pods")
    log = cri.add_container("c1", cri.add_pod("web", "u1"), "app")
    log.write_bytes(b"x" * 100)
    [result] = await LogJanitor(cri).apply([_rotate(log, "c1")])
    assert result.outcome is Outcome.SKIPPED
    assert result.message == "the container stopped during the rotation; renamed back"
    assert _names(log.parent) == ["0.log"] and log.read_bytes() == b"x" * 100


@pytest.mark.parametrize("fails", [1, 2], ids=["once", "twice"])
async def test_a_live_log_whose_status_failed_is_checked_again_before_any_removal(tmp_path: Path, fails: int) -> None:
    """Issue 18: a running container's ContainerStatus failed while the tree was walked, so its live file looked
    like nobody's, and the node budget removed it. The runtime is asked again right before the removal: it names
    the file (the status answers now), or it still cannot tell (a second failure); the file stays either way."""
    cri = FakeCri(tmp_path / "pods")
    pod = cri.add_pod("web", "u1")
    live = cri.add_container("c1", pod, "app")
    live.write_bytes(os.urandom(100 * KiB))
    _age(live, 60)  # quiet for a minute: past the settle time of a fresh, unlisted log
    old = live.parent / "0.log.20260301-100000.000000"
    old.write_bytes(os.urandom(50 * KiB))
    _age(old, 3600)
    logs = LogPass(cri, cri.root, LogSettings(max_size=1 << 30, node_budget=0))
    original = cri.container_status
    failed: list[str] = []

    async def failing(container_id: str) -> CriContainerStatus:  # transient: a busy runtime, a deadline
        if len(failed) < fails:
            failed.append(container_id)
            raise RuntimeClientError("DeadlineExceeded: context deadline exceeded")
        return await original(container_id)

    cri.container_status = failing  # type: ignore[method-assign]
    actions = await logs.reclaim(0)
    assert [a.path for a in actions] == [str(old), str(live)]  # the walk could not tell the live file
    results = {r.action.path: r for r in logs.report.results}
    assert results[str(old)].outcome is Outcome.DONE
    kept = results[str(live)]
    assert kept.outcome is Outcome.SKIPPED, kept
    assert kept.message.startswith("cannot tell" if fails == 2 else "the runtime names it as the log of container c1")
    assert live.stat().st_size == 100 * KiB


async def test_the_budget_s_last_resort_removes_the_exited_container_s_log_it_names(cri: FakeCri) -> None:
    """The runtime's own log of an exited container (`kubectl logs --previous`) goes for the budget only after
    the pod's other files, and the plan names that container: the last check lets it go, and only it."""
    pod = cri.add_pod("job", "u1")
    previous = cri.add_container("c0", pod, "app", attempt=0, state="EXITED")
    previous.write_bytes(os.urandom(100 * KiB))
    _age(previous, 600)
    rotated = previous.parent / "0.log.20260301-100000.000000"
    rotated.write_bytes(os.urandom(50 * KiB))
    _age(rotated, 3600)
    logs = LogPass(cri, cri.root, LogSettings(max_size=1 << 30, node_budget=0))
    await logs.reclaim(0)
    assert [(r.action.path, r.outcome) for r in logs.report.results] == [
        (str(rotated), Outcome.DONE),
        (str(previous), Outcome.DONE),
    ]
