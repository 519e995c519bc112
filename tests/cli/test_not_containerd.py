"""A socket whose CRI runtime is not containerd (CRI-O answers CRI Version with its own name; containerd's API is not
there): one clear line and exit code 2 from `df`, `prune` and `agent`, never a traceback or a half-working agent."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from node_janitor.agent.runtime_link import RuntimeLink
from node_janitor.cli import main
from node_janitor.runtime.gen.runtime.v1 import api_pb2


@contextlib.asynccontextmanager
async def cri_o(path: Path) -> AsyncIterator[None]:
    """A CRI runtime.v1 server answering Version as CRI-O does; every other method (and containerd's services)
    is UNIMPLEMENTED."""

    async def version(request: Any, context: Any) -> Any:
        return api_pb2.VersionResponse(
            version="0.1.0", runtime_name="cri-o", runtime_version="1.31.0", runtime_api_version="v1"
        )

    handler = grpc.unary_unary_rpc_method_handler(
        version,
        request_deserializer=api_pb2.VersionRequest.FromString,
        response_serializer=api_pb2.VersionResponse.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("runtime.v1.RuntimeService", {"Version": handler})]
    )
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    try:
        yield
    finally:
        await server.stop(0)


@pytest.fixture
def sock() -> Any:
    with tempfile.TemporaryDirectory(prefix="nj-") as d:  # short: unix socket paths max out at 108 bytes
        yield Path(d) / "crio.sock"


def _one_line(err: str, sock: Path) -> None:
    lines = [line for line in err.splitlines() if line.strip() and "level=" not in line]
    assert len(lines) == 1, err
    assert f"the CRI runtime at {sock} is cri-o 1.31.0, not containerd" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["df"], ["prune", "--dry-run"], ["info"]])
async def test_df_and_prune_say_it_in_one_line(
    sock: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    async with cri_o(sock):
        code = await asyncio.to_thread(main, [*command, "--containerd-socket", str(sock)])
    assert code == 2
    _one_line(capsys.readouterr().err, sock)


async def test_the_agent_does_not_start(sock: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"  # never reached: the runtime is checked first
    kubeconfig.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    args = ["agent", "--node-name", "n", "--kubeconfig", str(kubeconfig), "--containerd-socket", str(sock)]
    async with cri_o(sock):
        code = await asyncio.wait_for(asyncio.to_thread(main, [*args, "--state-dir", str(tmp_path / "state")]), 60)
    assert code == 2
    _one_line(capsys.readouterr().err, sock)


async def test_a_running_agent_s_link_stays_down_with_that_line(sock: Path) -> None:
    """containerd replaced by another runtime under a running agent: its link is down (nothing runs), and says why."""
    link = RuntimeLink(str(sock), "k8s.io")
    async with cri_o(sock):
        assert await link.probe() is False
    assert link.error is not None and "is cri-o 1.31.0, not containerd" in link.error
    await link.close()
