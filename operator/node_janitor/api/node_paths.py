"""Absolute globs over a node's files (`logs.extraPaths`): their syntax, and the trees no glob may reach.

The walk that applies them (`node_janitor.node.logs.extra_paths`) follows the same rules: components are matched
with `fnmatch` (`*`, `?`, `[...]`; a wildcard never matches a leading dot unless the pattern's component starts
with one, as in `glob`), `**` matches any number of directories, and directory symlinks are never followed.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from node_janitor.defaults import CONTAINERD_ROOT, CONTAINERD_STATE, DEFAULT_KUBELET_ROOT, DEFAULT_POD_LOG_DIR

PROTECTED_TREES: tuple[str, ...] = (
    # the runtime's and the kubelet's own state
    str(CONTAINERD_ROOT),
    str(CONTAINERD_STATE),
    str(DEFAULT_KUBELET_ROOT),
    "/var/lib/etcd",
    "/var/lib/rancher/k3s/server/db",  # k3s's and RKE2's datastore (kine's SQLite, or their embedded etcd)
    "/var/lib/rancher/rke2/server/db",
    str(DEFAULT_POD_LOG_DIR),
    "/var/log/containers",  # kubelet's links to the pod logs
    # system trees
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/sbin",
    "/sys",
    "/usr",
)
"""Trees no extraPaths glob may reach, whatever the node: refused when a policy is read, skipped by the walk (which
also skips the node's own containerd root and state, kubelet root and pod log directory when they are elsewhere)."""

MAX_GLOB_LENGTH = 1024
MAX_EXTRA_PATHS = 32  # rules per policy: bounds the cost of the CRD's CEL rule per glob


def glob_parts(glob: str) -> list[str]:
    """The components of an absolute glob (`/var/log/**/*.log` -> var, log, **, *.log)."""
    return [p for p in glob.split("/") if p]


def is_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def match_part(name: str, pattern: str) -> bool:
    """One path component against one glob component (`glob`'s rule for hidden files)."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatchcase(name, pattern)


def reaches_below(parts: Sequence[str], tree: Sequence[str]) -> bool:
    """Can a file strictly below the directory `tree` (components) match the glob `parts`? Conservative about
    hidden names (a wildcard is taken to match them too), so that a refusal never depends on them."""
    if not tree:
        return bool(parts)
    if not parts:
        return False
    head = parts[0]
    if head == "**":
        return reaches_below(parts[1:], tree) or reaches_below(parts, tree[1:])
    return fnmatchcase(tree[0], head) and reaches_below(parts[1:], tree[1:])


def glob_problem(glob: str, protected: Sequence[str] = PROTECTED_TREES) -> str | None:
    """Why `glob` may not be an extraPaths glob, or None."""
    if not glob.startswith("/"):
        return "must be an absolute path"
    if len(glob) > MAX_GLOB_LENGTH:
        return f"at most {MAX_GLOB_LENGTH} characters"
    parts = glob_parts(glob)
    if not parts:
        return "must name files, not /"
    if any(p in (".", "..") for p in parts):
        return "no '.' or '..' components"
    if any("**" in p and p != "**" for p in parts):
        return "'**' must be a whole component (/**/)"
    for tree in protected:
        if reaches_below(parts, glob_parts(tree)):
            return f"reaches {tree}: extraPaths never touch the runtime's, the kubelet's or the system's files"
    return None


# --- the same rules in CEL, for the CRD (so that the apiserver refuses what `glob_problem` refuses) ----------------
def _chars(text: str) -> str:
    """RE2 for glob text that matches exactly `text`: each character itself or `?`."""
    return "".join(f"[{c}?]" for c in text)


def _suffixes(text: str) -> str:
    """RE2 for glob text that matches any suffix of `text` (the empty one included)."""
    regex = ""
    for c in text:
        regex = f"(?:{regex})?[{c}?]" if regex else f"[{c}?]"
    return f"(?:{regex})?" if regex else ""


def _component_regex(name: str) -> str:
    """RE2 for the glob components (no `[...]`, at most one `*`) that match the file name `name`."""
    return (
        "(?:"
        + "|".join([_chars(name)] + [_chars(name[:i]) + r"\*" + _suffixes(name[i:]) for i in range(len(name) + 1)])
        + ")"
    )


def reach_regex(tree: str) -> str:
    """RE2 over a glob: it can match a file below `tree` (`reaches_below`), for globs whose components down to the
    tree's depth have no `[...]` and at most one `*` each (`glob_problem` refuses the others too: the regex that
    covers them would cost the apiserver too much). A whole `**` component on the way reaches everything below."""
    regex = r"/+[^/]"
    for name in reversed(glob_parts(tree)):
        regex = rf"/+(?:\*\*(?:/|$)|{_component_regex(name)}{regex})"
    return "^" + regex


CEL_GLOB_RULES: tuple[dict[str, Any], ...] = (
    {"rule": "self.glob.matches('[^/]')", "message": "must name files, not /"},
    {"rule": "!self.glob.matches('(^|/)[.][.]?(/|$)')", "message": "no '.' or '..' components"},
    {"rule": "!self.glob.matches('[^/][*][*]|[*][*][^/]')", "message": "'**' must be a whole component (/**/)"},
    *(
        {
            "rule": f"!self.glob.matches({reach_regex(tree)!r})",
            "message": f"reaches {tree}: extraPaths never touch the runtime's, the kubelet's or the system's files",
        }
        for tree in PROTECTED_TREES
    ),
)
"""`glob_problem`'s rules as the CRD's CEL rules on an extraPaths rule (the length and the leading / are the glob's
own schema: maxLength, pattern)."""


def glob_within(glob: str, trees: Sequence[str]) -> bool:
    """Can the glob match only files strictly below one of the directories `trees`? (Its leading components
    name one of them literally: no wildcard before the tree ends.)"""
    parts = glob_parts(glob)
    for tree in trees:
        tree_parts = glob_parts(tree)
        if len(parts) > len(tree_parts) and all(
            not is_magic(p) and p == t for p, t in zip(parts, tree_parts, strict=False)
        ):
            return True
    return False
