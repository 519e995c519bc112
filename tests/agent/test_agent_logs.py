"""The fast log loop runs beside the agent's runs: a live log past logs.maxSize is rotated within a few
checkIntervals, with no cleanup run asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods, run_pod, start_container, wait_for_state
from node_janitor.runtime import open_runtime
from support.agentbed import AgentFactory, apply_nodecleanup, build_images, status, wait_for
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]


async def test_the_log_rotator_runs_beside_the_agent(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    bed = containerd_bed
    (image,) = build_images(bed, "writer", 1, size=1 << 16)
    bed.import_images([image])
    apply_nodecleanup(kube, node_name, {"logs": {"maxSize": "1Mi", "maxFiles": 3, "checkInterval": "1s"}})
    agent = agents.start(node_name, bed)
    wait_for("the startup run", lambda: status(kube, node_name).get("lastRun"))
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        pod = await run_pod(cri, bed.pod_log_dir, "writer")
        # 3 MB at once, then quiet: the live log is past maxSize until the rotator renames it
        container = await start_container(
            cri, pod, "w", image.name, "yes 0123456789abcdef | head -c 3000000; sleep 3600"
        )
        await wait_for_state(cri, container.id, "RUNNING")
        directory = container.log_path.parent

        def rotated_and_small() -> list[Path]:
            """The rotated files once the live one is under maxSize. The runtime's copier may still be writing
            when the first rotation comes (containerd 1.6 copies ~21 MB/s): the new live file then grows past
            maxSize again and is rotated at a later check."""
            rotated = [p for p in directory.iterdir() if p.name.startswith("0.log.")]
            return rotated if rotated and container.log_path.stat().st_size < 1 << 20 else []

        rotated = wait_for("a rotated log and a live one under maxSize", rotated_and_small, 20)
        assert sum(p.stat().st_size for p in rotated) >= 1 << 20
        assert agent.metric("node_janitor_actions_total", kind="rotate-log", outcome="done") >= 1
        assert status(kube, node_name)["lastRun"]["trigger"] == "startup"  # no run did it
        await remove_all_pods(cri)
