"""Container logs in the CRI log tree: rotation, compression, leftovers, the node budget, orphaned pod
directories, and rules for other node logs.

The tree is kubelet's: `<root>/<namespace>_<pod>_<uid>/<container>/<attempt>.log`; file names follow kubelet's
container_log_manager (`names`), so that kubelet and node-janitor each understand the other's files.

Pure planning first (`plan_*`: a `LogTree` snapshot, settings and `now` in, ordered `LogAction`s out), then the
I/O: `scan_log_tree`/`collect_log_tree` take the snapshot, `LogJanitor` applies actions and `LogRotator` is the
fast rotation loop. The runtime, the clock and the file system root are injected, as in kubelet's
container_log_manager.go; unlike kubelet's single worker checking every 10 s, the rotator checks every
`checkInterval` and rotates many containers at once, so a fast writer stays near `maxSize`
(kubernetes#110630).

| module | what it is |
| --- | --- |
| `names` | kubelet's file names: live, rotated, compressed, temporary |
| `actions` | `LogAction`, `LogReason`, `LogActionResult`, `LogSettings` |
| `tree` | the `LogTree` snapshot and the walk that takes it (shared by prune, df and the rotator) |
| `container` | one container directory's rules: rotation at maxSize, maxFiles, compression, leftovers |
| `orphans` | pod directories of pods the runtime no longer has |
| `budget` | the node budget and log-fs pressure |
| `extra_paths` | extraPaths rules for node logs outside the pod log tree |
| `rotation`, `compression`, `removal` | the file operations |
| `janitor` | `LogJanitor`, which applies actions |
| `lock` | `LogTreeLock`, one lock for the tree (passes and the rotator, across processes) |
| `sweep` | `LogPass`, one pass of every rule (prune, and the rotator's sweep) |
| `rotator` | `LogRotator`, the fast loop |

The public API is what this module re-exports (`__all__`): code outside `logs/` imports from
`node_janitor.node.logs` only, never from its modules. Inside the package, modules share each other's public names
(no leading underscore); a name with an underscore stays in its module (tests/node/logs/test_public_api.py checks
both).
"""

from node_janitor.node.logs.actions import (
    LEFTOVER_GRACE,
    SETTLE,
    Clock,
    LogAction,
    LogActionKind,
    LogActionResult,
    LogReason,
    LogSettings,
    freed_by,
    utc_now,
)
from node_janitor.node.logs.budget import budget_excess, plan_log_reclaim
from node_janitor.node.logs.container import plan_container_logs
from node_janitor.node.logs.extra_paths import (
    ExtraLogFile,
    ExtraPathsScan,
    plan_extra_paths,
    scan_extra_paths,
    walk_extra_paths,
)
from node_janitor.node.logs.janitor import LogJanitor
from node_janitor.node.logs.lock import LogTreeLock, RunLock
from node_janitor.node.logs.names import (
    COMPRESS_SUFFIX,
    MAX_ATTEMPT,
    ROTATED_TIME_FORMAT,
    TMP_SUFFIX,
    LogFileKind,
    LogName,
    is_container_dir_name,
    parse_log_name,
    parse_pod_dir_name,
    rotated_name,
)
from node_janitor.node.logs.orphans import plan_orphaned_pods, remove_pod_log_dir
from node_janitor.node.logs.rotator import LogRotator
from node_janitor.node.logs.sweep import LogPass, LogPassReport, plan_log_rules
from node_janitor.node.logs.tree import (
    KnownLogs,
    LogPaths,
    LogRuntime,
    LogTree,
    PodLogDir,
    collect_log_tree,
    known_logs,
    known_logs_by_layout,
    pod_dir_of,
    scan_container_dir,
    scan_log_tree,
)

__all__ = [
    "COMPRESS_SUFFIX",
    "LEFTOVER_GRACE",
    "MAX_ATTEMPT",
    "ROTATED_TIME_FORMAT",
    "SETTLE",
    "TMP_SUFFIX",
    "Clock",
    "ExtraLogFile",
    "ExtraPathsScan",
    "KnownLogs",
    "LogAction",
    "LogActionKind",
    "LogActionResult",
    "LogFileKind",
    "LogJanitor",
    "LogName",
    "LogPass",
    "LogPassReport",
    "LogPaths",
    "LogReason",
    "LogRotator",
    "LogRuntime",
    "LogSettings",
    "LogTree",
    "LogTreeLock",
    "PodLogDir",
    "RunLock",
    "budget_excess",
    "collect_log_tree",
    "freed_by",
    "is_container_dir_name",
    "known_logs",
    "known_logs_by_layout",
    "parse_log_name",
    "parse_pod_dir_name",
    "plan_container_logs",
    "plan_extra_paths",
    "plan_log_reclaim",
    "plan_log_rules",
    "plan_orphaned_pods",
    "pod_dir_of",
    "remove_pod_log_dir",
    "rotated_name",
    "scan_container_dir",
    "scan_extra_paths",
    "scan_log_tree",
    "utc_now",
    "walk_extra_paths",
]
