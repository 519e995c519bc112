"""The pure log planning functions, over hand-built log trees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from node_janitor.api.policy import ExtraLogPath, LogsPolicy
from node_janitor.node.inventory import LogFileEntry
from node_janitor.node.logs import (
    ExtraLogFile,
    LogActionKind,
    LogFileKind,
    LogReason,
    LogSettings,
    LogTree,
    PodLogDir,
    budget_excess,
    parse_log_name,
    plan_container_logs,
    plan_extra_paths,
    plan_log_reclaim,
    plan_log_rules,
    rotated_name,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
MiB = 1 << 20
POD = "/logs/default_web_uid-1"


def _f(name: str, size: int = MiB, *, age: float = 600, pod: str = POD, container: str = "app", **kw) -> LogFileEntry:
    ns, pod_name, uid = pod.rsplit("/", 1)[1].split("_")
    return LogFileEntry(
        path=f"{pod}/{container}/{name}",
        size=size,
        pod_namespace=ns,
        pod_name=pod_name,
        pod_uid=uid,
        container=container,
        modified_at=NOW - timedelta(seconds=age),
        length=kw.pop("length", size),
        **kw,
    )


def _live(name: str = "0.log", size: int = MiB, **kw) -> LogFileEntry:
    return _f(name, size, age=0, live=True, container_id=kw.pop("cid", "c-live"), container_state="RUNNING", **kw)


def _rot(attempt: int, minutes_ago: int, *, gz: bool = False, **kw) -> LogFileEntry:
    name = rotated_name(f"{attempt}.log", NOW - timedelta(minutes=minutes_ago)) + (".gz" if gz else "")
    return _f(name, age=minutes_ago * 60, **kw)


def _kinds(actions):
    return [(a.kind, a.path.rsplit("/", 1)[1], a.reason) for a in actions]


@pytest.mark.parametrize(
    ("name", "kind", "attempt", "rotated_at"),
    [
        ("0.log", LogFileKind.LOG, 0, None),
        ("12.log", LogFileKind.LOG, 12, None),
        ("3.log.20260301-115959", LogFileKind.ROTATED, 3, datetime(2026, 3, 1, 11, 59, 59, tzinfo=UTC)),
        ("3.log.20260301-115959.000042", LogFileKind.ROTATED, 3, datetime(2026, 3, 1, 11, 59, 59, 42, tzinfo=UTC)),
        ("3.log.20260301-115959.gz", LogFileKind.COMPRESSED, 3, datetime(2026, 3, 1, 11, 59, 59, tzinfo=UTC)),
        (
            "3.log.20260301-115959.000042.gz",
            LogFileKind.COMPRESSED,
            3,
            NOW.replace(hour=11, minute=59, second=59, microsecond=42),
        ),
        ("3.log.20260301-115959.tmp", LogFileKind.TMP, 3, datetime(2026, 3, 1, 11, 59, 59, tzinfo=UTC)),
        (
            "3.log.20260301-115959.000042.5f3a9c0e12ab34cd.tmp",
            LogFileKind.TMP,
            3,
            NOW.replace(hour=11, minute=59, second=59, microsecond=42),
        ),
        (
            ".3.log.20260301-115959.000042.5f3a9c0e12ab34cd.draft",  # a compression's draft, out of kubelet's glob
            LogFileKind.TMP,
            3,
            NOW.replace(hour=11, minute=59, second=59, microsecond=42),
        ),
        (".3.log.draft", LogFileKind.OTHER, -1, None),
        ("notes.tmp", LogFileKind.OTHER, -1, None),  # no compression of ours writes that
        ("4294967295.log", LogFileKind.LOG, 2**32 - 1, None),
        ("99999999999999999999999999.log", LogFileKind.OTHER, -1, None),  # beyond CRI's uint32 attempt
        ("4294967296.log", LogFileKind.OTHER, -1, None),
        ("3.log.20261399-000000", LogFileKind.OTHER, -1, None),  # no such date
        ("app.log", LogFileKind.OTHER, -1, None),
        ("0.log.old", LogFileKind.OTHER, -1, None),
    ],
)
def test_parse_log_name(name, kind, attempt, rotated_at):
    parsed = parse_log_name(name)
    assert (parsed.kind, parsed.attempt, parsed.rotated_at) == (kind, attempt, rotated_at)


def test_rotated_names_are_kubelets_timestamp_plus_microseconds_and_sort_by_time():
    base = datetime(2026, 3, 1, 11, 59, 59, 999_999, tzinfo=UTC)
    names = [rotated_name("/x/0.log", base + timedelta(microseconds=i)) for i in (0, 1, 250_000)]
    assert names[0] == "/x/0.log.20260301-115959.999999"
    assert names[1] == "/x/0.log.20260301-120000.000000"
    assert names == sorted(names) and len(set(names)) == 3
    assert all(parse_log_name(n.rsplit("/", 1)[1]).kind is LogFileKind.ROTATED for n in names)


def test_settings_from_policy_and_validation():
    s = LogSettings.from_policy(LogsPolicy.model_validate({"maxSize": "1Mi", "maxFiles": 3, "nodeBudget": "1Gi"}))
    assert (s.max_size, s.max_files, s.node_budget, s.orphan_grace) == (MiB, 3, 1 << 30, timedelta(hours=1))
    with pytest.raises(ValueError, match="maxFiles"):
        LogSettings(max_files=0)
    with pytest.raises(ValueError, match="maxSize"):
        LogSettings(max_size=0)


def test_live_file_below_max_size_is_left_alone():
    assert plan_container_logs([_live(size=MiB - 1)], LogSettings(max_size=MiB), NOW) == []


def test_live_file_at_max_size_is_rotated_first():
    actions = plan_container_logs([_live(size=MiB)], LogSettings(max_size=MiB), NOW)
    assert len(actions) == 1
    rotate = actions[0]
    assert (rotate.kind, rotate.reason, rotate.container_id) == (LogActionKind.ROTATE, LogReason.MAX_SIZE, "c-live")
    assert rotate.if_at_least == MiB and not rotate.discard and rotate.bytes == 0
    assert rotate.refs == ("default/web", "app")


def test_only_a_running_container_is_rotated():
    exited = _f("0.log", 5 * MiB, container_id="c1", container_state="EXITED")
    unknown = _f("1.log", 5 * MiB)  # a file no container of the runtime names
    actions = plan_container_logs([exited, unknown], LogSettings(max_size=MiB), NOW)
    assert [a for a in actions if a.kind == LogActionKind.ROTATE] == []


def test_max_files_counts_the_rotation_about_to_happen_and_keeps_the_newest_rotated_plain():
    files = [
        _live(size=2 * MiB),
        _rot(0, 1),  # newest rotated, plain: becomes second newest once the live file rotates
        _rot(0, 2, gz=True),
        _rot(0, 3),  # plain, settled: compressed
        _rot(0, 4, gz=True),  # beyond maxFiles once the rotation happens
        _rot(0, 5, gz=True),
    ]
    actions = plan_container_logs(files, LogSettings(max_size=MiB, max_files=5), NOW)
    names = _kinds(actions)
    assert names[0][0] == LogActionKind.ROTATE
    assert {(k, r) for k, _, r in names[1:3]} == {(LogActionKind.REMOVE, LogReason.MAX_FILES)}
    assert {n for _, n, _ in names[1:3]} == {files[4].path.rsplit("/", 1)[1], files[5].path.rsplit("/", 1)[1]}
    compressed = sorted(n for k, n, _ in names if k == LogActionKind.COMPRESS)
    # The live file's rotated copy will be the newest: the current newest plain file and the older plain one go.
    assert compressed == sorted([files[1].path.rsplit("/", 1)[1], files[3].path.rsplit("/", 1)[1]])
    assert all(a.bytes == files[4].size for a in actions if a.kind == LogActionKind.REMOVE)


def test_without_rotation_the_newest_rotated_file_stays_plain():
    files = [_live(size=10), _rot(0, 1), _rot(0, 2), _rot(0, 3)]
    actions = plan_container_logs(files, LogSettings(max_size=MiB, max_files=5), NOW)
    assert sorted(a.path for a in actions) == sorted([files[2].path, files[3].path])
    assert all(a.kind == LogActionKind.COMPRESS for a in actions)


def test_a_rotated_file_still_settling_is_not_compressed_yet():
    fresh = _rot(0, 0)  # just rotated: the runtime's old writer may still be flushing into it
    files = [_live(size=2 * MiB), fresh]
    actions = plan_container_logs(files, LogSettings(max_size=MiB, max_files=5), NOW)
    assert [a.kind for a in actions] == [LogActionKind.ROTATE]
    later = plan_container_logs(files, LogSettings(max_size=MiB, max_files=5), NOW + timedelta(seconds=3))
    assert [a.kind for a in later] == [LogActionKind.ROTATE, LogActionKind.COMPRESS]


def test_compress_off_keeps_everything_plain():
    files = [_live(size=10), _rot(0, 1), _rot(0, 2), _rot(0, 3)]
    assert plan_container_logs(files, LogSettings(max_files=5, compress=False), NOW) == []


def test_max_files_one_rotates_the_live_file_away():
    files = [_live(size=3 * MiB), _rot(0, 1), _rot(0, 2, gz=True)]
    actions = plan_container_logs(files, LogSettings(max_size=MiB, max_files=1), NOW)
    rotate = actions[0]
    assert rotate.kind == LogActionKind.ROTATE and rotate.discard and rotate.bytes == 3 * MiB
    assert sorted(a.path for a in actions[1:]) == sorted([files[1].path, files[2].path])
    assert all(a.reason == LogReason.MAX_FILES for a in actions[1:])


def test_leftovers_stale_tmp_and_plain_copy_beside_its_gz():
    rotated = _rot(0, 10)
    copy_gz = _f(rotated.path.rsplit("/", 1)[1] + ".gz", 100_000, age=600)
    stale_tmp = _f(rotated.path.rsplit("/", 1)[1] + ".tmp", 5000, age=3600)
    fresh_tmp = _f(_rot(0, 20).path.rsplit("/", 1)[1] + ".tmp", 5000, age=1)  # a compression in progress
    other = _f("notes.txt", 10, age=99999)
    actions = plan_container_logs([_live(size=10), rotated, copy_gz, stale_tmp, fresh_tmp, other], LogSettings(), NOW)
    assert sorted((a.path, a.reason) for a in actions) == sorted(
        [(rotated.path, LogReason.COMPRESSED_COPY), (stale_tmp.path, LogReason.STALE_TMP)]
    )


def test_old_restarts_beyond_max_files_go_but_the_runtimes_own_files_stay():
    # A crashlooping container: attempt 12 runs; attempt 11 exited and the runtime still knows it
    # (`kubectl logs --previous` reads 11.log); attempts 0..10 are leftovers kubelet did not remove.
    files = [_live("12.log", 100, cid="c12")]
    files.append(_f("11.log", 100, age=60, container_id="c11", container_state="EXITED"))
    files += [_f(f"{i}.log", 100, age=600 - i) for i in range(11)]
    files.append(_f(rotated_name("10.log", NOW - timedelta(hours=2)), 100, age=7200))
    actions = plan_container_logs(files, LogSettings(max_files=3), NOW)
    removed = sorted(a.path.rsplit("/", 1)[1] for a in actions)
    assert all(a.reason == LogReason.MAX_FILES for a in actions)
    kept = {"12.log", "11.log", "10.log"}
    assert removed == sorted({f.path.rsplit("/", 1)[1] for f in files} - kept)
    # Protection wins over the count: a runtime-known file is never removed, even beyond maxFiles.
    actions = plan_container_logs(files, LogSettings(max_files=1), NOW)
    assert "11.log" not in {a.path.rsplit("/", 1)[1] for a in actions}
    assert "12.log" not in {a.path.rsplit("/", 1)[1] for a in actions}


def _pod(uid: str, *, known: bool, age: float, files: int = 1) -> tuple[PodLogDir, list[LogFileEntry]]:
    path = f"/logs/ns_p-{uid}_{uid}"
    mine = [_f(f"{i}.log", 1000, age=age, pod=path, orphaned=not known) for i in range(files)]
    return PodLogDir(path, "ns", f"p-{uid}", uid, known, NOW - timedelta(seconds=age), 1000 * files), mine


def test_orphaned_pod_directories_go_after_the_grace_and_live_ones_stay():
    old_orphan, f1 = _pod("u1", known=False, age=7200, files=3)
    new_orphan, f2 = _pod("u2", known=False, age=60)
    alive_old, f3 = _pod("u3", known=True, age=99999)
    tree = LogTree("/logs", tuple(f1 + f2 + f3), (old_orphan, new_orphan, alive_old))
    actions = plan_log_rules(tree, LogSettings(orphan_grace=timedelta(hours=1)), NOW)
    assert [(a.kind, a.path, a.bytes, a.reason) for a in actions] == [
        (LogActionKind.REMOVE_POD_DIR, old_orphan.path, 3000, LogReason.ORPHANED_POD)
    ]
    assert plan_log_rules(tree, LogSettings(remove_orphaned=False), NOW) == []


def test_tree_from_inventory_files_derives_pods():
    _, f1 = _pod("u1", known=False, age=7200, files=2)
    _, f2 = _pod("u2", known=True, age=10)
    tree = LogTree.from_files("/logs", f1 + f2)
    assert [(p.uid, p.known, p.size) for p in tree.pods] == [("u1", False, 2000), ("u2", True, 1000)]
    assert tree.total_bytes == 3000


def test_budget_reclaims_oldest_rotated_files_first_and_an_exited_containers_log_after_them():
    a_live = _live("0.log", 5 * MiB, container="a", cid="ca")
    b_live = _live("0.log", 2 * MiB, container="b", cid="cb")
    a_old = _rot(0, 50, gz=True, container="a")
    b_old = _rot(0, 40, container="b")
    a_new = _rot(0, 5, container="a")
    prev = _f("0.log", MiB, age=45 * 60, container="c", container_id="cx", container_state="EXITED")
    # A compression in progress: not a candidate.
    tmp = _f("0.log.20260301-115950.000000.0a1b2c3d.tmp", MiB, age=1, container="a")
    tree = LogTree("/logs", (a_live, b_live, a_old, b_old, a_new, prev, tmp))
    total = tree.total_bytes
    assert budget_excess(tree, [], total - 2 * MiB) == 2 * MiB
    actions = plan_log_reclaim(tree, 2 * MiB, LogReason.NODE_BUDGET, NOW)
    # Oldest first, whatever the container; `kubectl logs --previous` (prev, older than b_old) after them all.
    assert [a.path for a in actions] == [a_old.path, b_old.path]
    assert {a.reason for a in actions} == {LogReason.NODE_BUDGET}
    everything = plan_log_reclaim(tree, 4 * MiB, LogReason.NODE_BUDGET, NOW)
    assert [a.path for a in everything] == [a_old.path, b_old.path, a_new.path, prev.path]
    # Then, for the budget alone, the largest live files are rotated away.
    live = plan_log_reclaim(tree, 11 * MiB, LogReason.NODE_BUDGET, NOW)[4:]
    assert [(a.kind, a.container_id, a.discard, a.bytes) for a in live] == [
        (LogActionKind.ROTATE, "ca", True, 5 * MiB),
        (LogActionKind.ROTATE, "cb", True, 2 * MiB),
    ]
    assert plan_log_reclaim(tree, 0, LogReason.NODE_BUDGET, NOW) == []


def test_log_fs_pressure_never_takes_a_live_log_nor_an_existing_containers_log():
    """Pressure takes files no container writes, and nothing else, however much is asked."""
    a_live = _live("0.log", 5 * MiB, container="a", cid="ca")
    a_old = _rot(0, 50, container="a")
    prev = _f("0.log", MiB, age=45 * 60, container="c", container_id="cx", container_state="EXITED")
    gone = _f("1.log", MiB, age=30 * 60, container="c")  # an attempt whose container the runtime no longer has
    tree = LogTree("/logs", (a_live, a_old, prev, gone))
    actions = plan_log_reclaim(tree, 100 * MiB, LogReason.LOG_FS_PRESSURE, NOW)
    # a_old, though older, is the running container's tail: last.
    assert [(a.kind, a.path) for a in actions] == [
        (LogActionKind.REMOVE, gone.path),
        (LogActionKind.REMOVE, a_old.path),
    ]


def test_budget_is_fair_per_pod_a_chatty_pod_gives_up_its_own_files_first():
    """One chatty pod over the budget loses its own old files, then its own live file, before a quiet pod loses
    its `--previous` log, however old that is."""
    chatty, quiet = "/logs/default_chatty_uid-2", "/logs/default_quiet_uid-3"
    c_live = _live("1.log", 4 * MiB, pod=chatty, cid="c1")
    c_rotated = [_rot(1, m, pod=chatty) for m in (30, 20, 10)]
    q_prev = _f("0.log", MiB, age=3 * 3600, pod=quiet, container_id="q0", container_state="EXITED")
    q_live = _live("1.log", MiB, pod=quiet, cid="q1")
    tree = LogTree("/logs", (c_live, *c_rotated, q_prev, q_live))
    actions = plan_log_reclaim(tree, 7 * MiB, LogReason.NODE_BUDGET, NOW)
    assert [(a.kind, a.path) for a in actions] == [
        *((LogActionKind.REMOVE, f.path) for f in c_rotated),
        (LogActionKind.ROTATE, c_live.path),
    ]
    # Once the chatty pod holds no more than the quiet one, they take turns (the larger first).
    more = plan_log_reclaim(tree, 8 * MiB, LogReason.NODE_BUDGET, NOW)
    assert [a.path for a in more][4:] == [q_prev.path]


def test_budget_takes_a_running_containers_tail_last():
    """A writer just rotated (its new live file nearly empty) keeps its newest rotated file while anything else
    is left: it is never left with none of its lines because another writer's files are newer."""
    a_live = _live("0.log", 0, container="a", cid="ca")
    b_live = _live("0.log", 0, container="b", cid="cb")
    a_old, a_tail = _rot(0, 30, container="a"), _rot(0, 20, container="a")
    b_old, b_mid, b_tail = _rot(0, 10, container="b"), _rot(0, 5, container="b"), _rot(0, 1, container="b")
    tree = LogTree("/logs", (a_live, b_live, a_old, a_tail, b_old, b_mid, b_tail))
    actions = plan_log_reclaim(tree, 3 * MiB, LogReason.NODE_BUDGET, NOW)
    assert [a.path for a in actions] == [a_old.path, b_old.path, b_mid.path]  # not a_tail, though older
    everything = plan_log_reclaim(tree, 5 * MiB, LogReason.NODE_BUDGET, NOW)
    assert [a.path for a in everything][3:] == [a_tail.path, b_tail.path]  # the tails, oldest first, at last


def test_budget_counts_what_the_rules_already_remove():
    old_orphan, f1 = _pod("u1", known=False, age=7200, files=3)
    tree = LogTree("/logs", tuple(f1), (old_orphan,))
    rules = plan_log_rules(tree, LogSettings(), NOW)
    assert budget_excess(tree, rules, 0) == 0
    assert plan_log_reclaim(tree, 1, LogReason.NODE_BUDGET, NOW, planned=rules) == []


def test_extra_paths_max_age_and_max_size_keep_the_newest():
    rules = [
        ExtraLogPath.model_validate({"glob": "/var/log/app/*.log", "maxAge": "1h"}),
        ExtraLogPath.model_validate({"glob": "/var/log/big/*", "maxSize": "3Mi"}),
    ]
    files = [
        ExtraLogFile(0, "/var/log/app/old.log", 10, NOW - timedelta(hours=2)),
        ExtraLogFile(0, "/var/log/app/new.log", 10, NOW - timedelta(minutes=5)),
        *(ExtraLogFile(1, f"/var/log/big/{i}", MiB, NOW - timedelta(minutes=10 - i)) for i in range(5)),
        ExtraLogFile(1, "/var/log/big/huge", 50 * MiB, NOW),
    ]
    actions = plan_extra_paths(files, rules, NOW)
    assert [(a.path, a.reason) for a in actions] == [
        ("/var/log/app/old.log", LogReason.MAX_AGE),
        *((f"/var/log/big/{i}", LogReason.EXTRA_MAX_SIZE) for i in range(5)),
    ]
    assert all(a.kind == LogActionKind.REMOVE_NODE_LOG for a in actions)  # the newest stays, however big
