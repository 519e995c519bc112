"""What the agent needs before it starts, checked once, each problem one line (`AgentStartError`, exit code 2).

- The state directory: created if missing, and a file can be created in it. A full disk (ENOSPC) is not a
  problem here: the agent works hardest when the disk is full, and its writes there are warnings, never fatal.
- The apiserver's side: the NodeCleanup resource is served (the CRD is installed) and RBAC grants every right
  the agent uses. An apiserver that does not answer is not a problem here either: the agent works on its saved
  policy meanwhile (it logs the failed watches and reconnects).

- The runtime on containerd's socket, if one answers: it must be containerd (CRI-O answers CRI too, but
  node-janitor works through containerd's own API): one line naming the runtime, exit code 2. Nothing answering
  is not a problem here: containerd may start after the agent, which then waits for it with one warning line and
  /readyz answering 503 `containerd unreachable: ...` (`RuntimeLink`).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from pathlib import Path

from node_janitor.agent.kube import NODE_CLEANUPS, KubeClient, KubeError
from node_janitor.runtime import CriClient, NotContainerdError, RuntimeClientError, require_containerd

__all__ = ["check_agent_api", "check_runtime", "check_state_dir"]

RUNTIME_CHECK_TIMEOUT = 5.0


async def check_runtime(socket: str) -> str | None:
    """Why the runtime answering on `socket` can never serve the agent (it is not containerd); None when it is
    containerd, or when nothing answers yet."""
    try:
        async with CriClient(socket, timeout=RUNTIME_CHECK_TIMEOUT) as cri:
            require_containerd(await cri.version(), socket)
    except NotContainerdError as exc:
        return str(exc)
    except RuntimeClientError:
        return None
    return None


log = logging.getLogger(__name__)

CRDS_FIX = "kubectl apply -f crds/ (helm installs them with the chart)"


def check_state_dir(directory: Path) -> str | None:
    """Why the agent cannot keep its state in `directory` (None: it can)."""
    probe = directory / f".probe.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            log.warning("state directory %s: no space left; state is kept in memory until there is", directory)
            return None
        return f"the state directory {directory} is not usable: {exc.strerror or exc} (--state-dir)"
    return None


# (verb, group, resource, subresource): every right the agent uses; the chart's ClusterRole grants these.
AGENT_ACCESS = (
    ("get", "", "nodes", ""),
    ("list", "", "nodes", ""),
    ("watch", "", "nodes", ""),
    ("list", "nodejanitor.io", "nodecleanups", ""),
    ("watch", "nodejanitor.io", "nodecleanups", ""),
    ("patch", "nodejanitor.io", "nodecleanups", "status"),
    ("create", "", "events", ""),
    ("list", "", "pods", ""),  # its own node's (agent/pods.py)
    ("watch", "", "pods", ""),
)


async def check_agent_api(kube: KubeClient, node: str) -> str | None:
    """Why the agent cannot work with this apiserver (None: it can, or the apiserver does not answer now)."""
    try:
        await kube.list_one(NODE_CLEANUPS, node)
    except KubeError as exc:
        if exc.status == 404:
            return f"the nodecleanups.nodejanitor.io CRD is not installed: {CRDS_FIX}"
        if exc.status == 0 or exc.status >= 500:
            log.warning("the apiserver does not answer (%s): starting on the saved policy", exc)
            return None
        if exc.status != 403:
            return f"cannot list NodeCleanups: {exc}"
    denied = []
    for verb, group, resource, subresource in AGENT_ACCESS:
        attributes = {"verb": verb, "group": group, "resource": resource, "subresource": subresource}
        if verb in ("get", "patch"):
            attributes["name"] = node  # its own Node and NodeCleanup
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attributes}}  # fmt: skip
        try:
            answer = await kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
        except KubeError as exc:
            log.warning("cannot review the agent's rights (%s): starting anyway", exc)
            return None
        if not (answer or {}).get("status", {}).get("allowed"):
            what = f"{resource}/{subresource}" if subresource else resource
            denied.append(f"{verb} {what}{'.' + group if group else ''}")
    if denied:
        return f"RBAC does not let the agent {', '.join(denied)}: bind it the chart's agent ClusterRole"
    return None
