"""The engine's log passes on a real containerd: extraPaths never reach the node's containerd root and state or the
kubelet's root (learned from the runtime, wherever they are), the passes' warnings are the run's (text and JSON),
and the inventory's log row judges live files by the runtime's log paths."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from node.logs.test_cli_logs_real import LINES_THEN_SLEEP, _age, _cli, _policy
from node_janitor.cli.prune import render_prune
from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import remove_all_pods, run_pod, wait_for_state
from node_janitor.node.engine import NodeEngine, runtime_trees
from node_janitor.runtime import open_runtime
from support.enginebed import rules
from support.logbed import start_misplaced_logger, writer_image

pytestmark = pytest.mark.containerd
DAY = 86400


def _old_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"old line\n")
    _age(path, 2 * DAY)
    return path


def _trees(bed: ContainerdBed, kubelet: Path) -> tuple[list[Path], Path]:
    """An old `.log` in containerd's root, in its state and in the kubelet's root (none of them under a default
    protected tree: the bed lives in /tmp), and one in a node log directory extraPaths may clean."""
    inside = [
        _old_file(bed.root / "io.containerd.grpc.v1.cri" / "stray.log"),
        _old_file(bed.state / "stray.log"),
        _old_file(kubelet / "pods" / "stray.log"),
    ]
    return inside, _old_file(bed.base / "node-logs" / "app.log")


def _extra_paths(bed: ContainerdBed, kubelet: Path) -> list[dict[str, str]]:
    globs = [f"{bed.root}/**/*.log", f"{bed.state}/*.log", f"{kubelet}/**/*.log", f"{bed.base}/node-logs/*.log"]
    return [{"glob": g, "maxAge": "1h"} for g in globs]


async def test_the_runtime_reports_its_root_and_state(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        trees, warnings = await runtime_trees(cri)
    assert warnings == []
    assert {str(bed.root), str(bed.state)} <= set(trees)


async def test_extra_paths_never_reach_containerd_or_the_kubelet_and_say_so(
    containerd_bed: ContainerdBed, tmp_path: Path
) -> None:
    """Before, the engine's passes knew only the fixed trees (/var/lib/containerd, ...): a node whose containerd
    root is elsewhere lost its files to a glob over it, and the skipped rules' warnings were not reported."""
    bed = containerd_bed
    kubelet = tmp_path / "kubelet"
    inside, node_log = _trees(bed, kubelet)
    policy = _policy(tmp_path, {"logs": {"extraPaths": _extra_paths(bed, kubelet)}})
    code, report = await _cli(bed, "prune", "--policy", str(policy), "--kubelet-root", str(kubelet))
    assert code == 0, report["errors"]
    assert all(p.exists() for p in inside)
    assert not node_log.exists()
    assert [(a["kind"], a["id"], a["outcome"]) for a in report["actions"] if a["kind"] == "remove-node-log"] == [
        ("remove-node-log", str(node_log), "done")
    ]
    skipped = [w for w in report["warnings"] if "skipped" in w]
    assert [w.split(" ", 1)[0] for w in skipped] == ["extraPaths[0]", "extraPaths[1]", "extraPaths[2]"], report


async def test_a_pass_s_warnings_are_in_the_run_s_text(containerd_bed: ContainerdBed, tmp_path: Path) -> None:
    bed = containerd_bed
    kubelet = tmp_path / "kubelet"
    inside, _ = _trees(bed, kubelet)
    spec = {"logs": {"extraPaths": _extra_paths(bed, kubelet)[:1]}}
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir, kubelet_root=kubelet)
        report = await engine.run_once(rules(spec))
    assert report.logs is not None and report.logs.warnings
    assert report.logs.warnings[0] in report.warnings
    assert f"warning: {report.logs.warnings[0]}" in render_prune(report).splitlines()
    assert inside[0].exists()


async def test_df_judges_live_logs_by_the_runtime_s_log_path(containerd_bed: ContainerdBed) -> None:
    """A container logging to `app/3.log` at attempt 0: the layout predicts `app/0.log`; the runtime says 3.log.
    df counted it as no container's (active 0)."""
    bed = containerd_bed
    image = writer_image(bed)
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        pod = await run_pod(cri, bed.pod_log_dir, "app")
        cid, log = await start_misplaced_logger(cri, pod, image, LINES_THEN_SLEEP)
        await wait_for_state(cri, cid, "RUNNING")
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        inventory = await engine.take_inventory()
        live = {f.path: f.container_id for f in inventory.logs if f.live}
        assert live == {str(log): cid}
        report = await engine.build_disk_report()
        assert report.rows["logs"].active == 1
        await remove_all_pods(cri)


async def test_df_warns_when_the_runtime_reports_no_sandbox_for_a_pod_log_tree(containerd_bed: ContainerdBed) -> None:
    bed = containerd_bed
    quiet = bed.pod_log_dir / f"default_web_{uuid.uuid4()}" / "app" / "0.log"
    _old_file(quiet)
    _age(quiet.parent.parent, 2 * DAY)
    async with open_runtime(bed.address, bed.namespace) as (cri, containerd):
        engine = NodeEngine(cri, containerd, namespace=bed.namespace, pod_log_dir=bed.pod_log_dir)
        report = await engine.build_disk_report()
    assert any(w.startswith("the runtime reports no pod sandbox at all") for w in report.warnings), report.warnings
    assert quiet.exists()
