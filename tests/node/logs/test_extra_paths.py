"""extraPaths on a real file system (temporary host roots): the walk follows no directory symlink, ends on
loops, is bounded and can be stopped, never enters a protected tree, and removals follow no link. No CRI is
involved: `FakeCri` only fills LogJanitor's and LogPass's runtime argument, which extraPaths never call."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from node_janitor.api import CleanupPolicy, ManifestError
from node_janitor.api.policy import ExtraLogPath
from node_janitor.node.logs import LogJanitor, LogPass, LogSettings, plan_extra_paths, walk_extra_paths
from node_janitor.node.outcome import Outcome
from support.logfakes import FakeCri


def _rule(glob: str, **limits: str) -> ExtraLogPath:
    return ExtraLogPath.model_validate({"glob": glob, **(limits or {"maxAge": "1s"})})


def _unchecked(glob: str) -> ExtraLogPath:
    """A rule as an older operator (or a hand-edited NodeCleanup) might hand over: not validated."""
    return ExtraLogPath.model_construct(glob=glob, max_age=None, max_size=0)


def _files(host: Path, *names: str, age: float = 3600) -> list[Path]:
    out = []
    for name in names:
        path = host / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 4096)
        t = time.time() - age
        os.utime(path, (t, t))
        out.append(path)
    return out


def _rel(host: Path, files: list) -> list[str]:  # type: ignore[type-arg]
    return [os.path.relpath(f.path, host) for f in files]


@pytest.mark.parametrize(
    ("glob", "problem"),
    [
        ("/var/log/**/*.log", "reaches /var/log/pods: extraPaths never touch"),
        ("/**/*.log", "reaches /var/lib/containerd: extraPaths never touch"),
        ("/var/*/containerd/**", "reaches /var/lib/containerd: extraPaths never touch"),
        ("/run/containerd/io.containerd.runtime.v2.task/*/*.log", "reaches /run/containerd: extraPaths never touch"),
        ("/var/lib/kubelet/pods/*/volumes/*.log", "reaches /var/lib/kubelet: extraPaths never touch"),
        ("/etc/*.log", "reaches /etc: extraPaths never touch"),
        ("/var/lib/rancher/*/server/db/**", "reaches /var/lib/rancher/k3s/server/db: extraPaths never touch"),
        ("/var/lib/rancher/rke2/server/db/etcd/*", "reaches /var/lib/rancher/rke2/server/db: extraPaths never touch"),
        ("/*/*.conf", "reaches /bin: extraPaths never touch"),
        ("/var/log/../../etc/x", "no '.' or '..' components"),
        ("/var/log/a**b/x", "'**' must be a whole component (/**/)"),
    ],
)
def test_globs_that_reach_protected_trees_are_refused(glob: str, problem: str) -> None:
    manifest = {
        "apiVersion": "nodejanitor.io/v1alpha1",
        "kind": "CleanupPolicy",
        "metadata": {"name": "p"},
        "spec": {"logs": {"extraPaths": [{"glob": glob, "maxAge": "1h"}]}},
    }
    with pytest.raises(ManifestError) as failure:
        CleanupPolicy.from_manifest(manifest)
    assert failure.value.errors == [f"spec.logs.extraPaths[0].glob: {problem}"] or any(
        e.startswith(f"spec.logs.extraPaths[0].glob: {problem}") for e in failure.value.errors
    ), failure.value.errors


@pytest.mark.parametrize(
    "glob", ["/var/log/*.log", "/var/log/journal/**/*.journal", "/run/log/journal/*/*.journal", "/opt/app/logs/**"]
)
def test_ordinary_node_log_globs_are_fine(glob: str) -> None:
    assert _rule(glob).glob == glob


def test_directory_symlinks_are_never_followed(tmp_path: Path) -> None:
    """Files outside the glob's tree were deleted through `link -> elsewhere`."""
    host = tmp_path / "host"
    [mine] = _files(host, "var/log/app/old.log")
    [theirs] = _files(host, "srv/data/old.log")
    (host / "var/log/app/link").symlink_to(host / "srv/data", target_is_directory=True)
    (host / "var/log/app/file-link.log").symlink_to(theirs)
    scan = walk_extra_paths([_rule("/var/log/app/**/*.log")], host, [])
    assert _rel(host, scan.files) == ["var/log/app/old.log"]
    settings = LogSettings(extra_paths=(_rule("/var/log/app/**/*.log"),))
    logs = LogPass(FakeCri(tmp_path / "pods"), tmp_path / "pods", settings, host_root=host)
    actions = asyncio.run(logs.extra())
    assert [a.path for a in actions] == [str(mine)] and not mine.exists() and theirs.exists()


def test_symlink_loops_end_quickly(tmp_path: Path) -> None:
    """Two directory symlinks pointing at each other (and one at its parent) once made the walk go forever."""
    host = tmp_path / "host"
    _files(host, "var/log/app/a.log")
    (host / "var/log/app/ping").symlink_to("pong", target_is_directory=True)
    (host / "var/log/app/pong").symlink_to("ping", target_is_directory=True)
    (host / "var/log/app/up").symlink_to("..", target_is_directory=True)
    (host / "var/log/app/back").symlink_to("../app", target_is_directory=True)  # with `up`: 2^depth paths
    with ThreadPoolExecutor(1) as pool:
        scan = pool.submit(walk_extra_paths, [_rule("/var/log/app/**/*.log")], host, []).result(timeout=20)
    assert _rel(host, scan.files) == ["var/log/app/a.log"] and scan.warnings == []


def test_the_walk_is_bounded_and_stops_when_asked(tmp_path: Path) -> None:
    host = tmp_path / "host"
    for d in range(20):
        (host / f"var/log/big/d{d}").mkdir(parents=True)
        for f in range(50):
            (host / f"var/log/big/d{d}/f{f}.log").touch()
    rules = [_rule("/var/log/big/**/*.log")]
    assert len(walk_extra_paths(rules, host, []).files) == 1000
    bounded = walk_extra_paths(rules, host, [], max_entries=300)
    assert len(bounded.files) < 300
    assert bounded.warnings == [
        "extraPaths: the walk stopped after 300 entries at rule 0 (/var/log/big/**/*.log); "
        "narrower globs would let it finish"
    ]
    stop = threading.Event()
    stop.set()  # what LogPass.extra does when its task is cancelled (Ctrl-C, the agent stopping)
    assert walk_extra_paths(rules, host, [], stop=stop).files == []


def test_protected_trees_are_skipped_at_run_time_too(tmp_path: Path) -> None:
    """Validation refuses these globs; a rule that got past it (not validated) is skipped, not walked, and the
    node's own containerd root, wherever it is, is never entered."""
    host = tmp_path / "host"
    [conf] = _files(host, "etc/app.conf")
    [db] = _files(host, "data/containerd/io.containerd.metadata.v1.bolt/meta.db")
    [mine] = _files(host, "data/app/old.db")
    rules = (_unchecked("/etc/*.conf"), _unchecked("/data/**/*.db"))
    scan = walk_extra_paths(rules, host, [host / "data/containerd"])
    assert scan.warnings == [
        "extraPaths[0] (/etc/*.conf) skipped: reaches /etc: extraPaths never touch the runtime's, the kubelet's "
        "or the system's files",
        "extraPaths[1] (/data/**/*.db) skipped: reaches /data/containerd: extraPaths never touch the runtime's, "
        "the kubelet's or the system's files",
    ]
    assert scan.files == [] and conf.exists() and db.exists() and mine.exists()
    # Narrowed to what is not containerd's, the rule works.
    scan = walk_extra_paths((_unchecked("/data/app/*.db"),), host, [host / "data/containerd"])
    assert _rel(host, scan.files) == ["data/app/old.db"]


def test_a_removal_follows_no_link_swapped_in_after_the_walk(tmp_path: Path) -> None:
    host = tmp_path / "host"
    [planned] = _files(host, "var/log/app/old.log")
    [theirs] = _files(host, "srv/data/old.log")
    rules = [_rule("/var/log/app/*.log")]
    actions = plan_extra_paths(walk_extra_paths(rules, host, []).files, rules, datetime.now(UTC))
    assert [a.path for a in actions] == [str(planned)]
    planned.unlink()
    (host / "var/log/app").rmdir()
    (host / "var/log/app").symlink_to(host / "srv/data", target_is_directory=True)  # a race, or an attacker
    [result] = asyncio.run(LogJanitor(FakeCri(tmp_path / "pods"), host_root=host).apply(actions))
    assert result.outcome is Outcome.SKIPPED and result.message == "a symlink or a file on the way; not followed"
    assert theirs.exists()


def test_names_that_are_not_utf8_are_left_alone(tmp_path: Path) -> None:
    host = tmp_path / "host"
    [ok] = _files(host, "var/log/app/ok.log")
    odd = host / "var/log/app" / os.fsdecode(b"caf\xe9.log")
    odd.write_bytes(b"x")
    scan = walk_extra_paths([_rule("/var/log/app/*.log")], host, [])
    assert [f.path for f in scan.files] == [str(ok)]
    assert scan.warnings == ["extraPaths: 1 names that are not UTF-8 were left alone"]


def test_rules_outside_the_directories_the_agent_reaches_are_skipped(tmp_path: Path) -> None:
    """In its pod the agent sees the node only where the DaemonSet mounts it (`--extra-paths-within`): a rule
    elsewhere would walk the container's own files, so it is skipped with a warning naming what is served."""
    host = tmp_path / "host"
    [app] = _files(host, "var/log/app.log")
    [other] = _files(host, "opt/app/logs/old.log")
    rules = (_rule("/var/log/*.log"), _rule("/opt/app/logs/*.log"), _rule("/var/*.log"), _rule("/var/log"))
    scan = walk_extra_paths(rules, host, [], within=["/var/log"])
    assert _rel(host, scan.files) == ["var/log/app.log"]
    assert scan.warnings == [
        f"extraPaths[{i}] ({g}) skipped: outside the node directories this agent can reach (/var/log)"
        for i, g in ((1, "/opt/app/logs/*.log"), (2, "/var/*.log"), (3, "/var/log"))
    ]
    assert app.exists() and other.exists()  # a walk removes nothing
    assert _rel(host, walk_extra_paths(rules[:2], host, []).files) == ["var/log/app.log", "opt/app/logs/old.log"]
