"""The real agent's /metrics port under a flood from another process: thousands of connections that trickle header
bytes and never finish their request (slowloris). /healthz still answers at once, the agent's memory stays bounded,
and the connections beyond the cap are closed by the agent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node_janitor.devbed import ContainerdBed
from node_janitor.http_endpoint import EndpointLimits
from support.agentbed import AgentFactory, apply_nodecleanup, status, wait_for
from support.kube import ControlPlane

pytestmark = [pytest.mark.containerd, pytest.mark.kube]

CONNECTIONS = 3000

# Opens CONNECTIONS sockets to the port, then for `seconds` sends each open one 2 KiB of a header line that never
# ends; prints how many the server closed. Its own fd limit is raised first (the default soft limit may be 1024).
FLOODER = r"""
import json, resource, socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 100)), hard))
socks, closed = [], 0
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    try:
        s.send(b"GET /metrics HTTP/1.1\r\nHost: flood\r\nX-Slow: ")
    except OSError:
        closed += 1
        s.close()
        continue
    socks.append(s)
print("opened", flush=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline and socks:
    alive = []
    for s in socks:
        try:
            if s.recv(65536, socket.MSG_PEEK) == b"":
                raise ConnectionResetError
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
            s.close()
            continue
        try:
            s.send(b"a" * 2048)
            alive.append(s)
        except BlockingIOError:
            alive.append(s)
        except OSError:
            closed += 1
            s.close()
    socks = alive
    time.sleep(0.3)
print(json.dumps({"closed": closed, "open": len(socks)}), flush=True)
"""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_flood_of_slow_connections_neither_blocks_healthz_nor_grows_the_agent(
    kube: ControlPlane, containerd_bed: ContainerdBed, node_name: str, agents: AgentFactory
) -> None:
    apply_nodecleanup(kube, node_name, {})
    agent = agents.start(node_name, containerd_bed)
    wait_for("the first report", lambda: status(kube, node_name).get("lastRun"), 30)
    for _ in range(3):  # the allocator's steady state after a few scrapes
        agent.metrics()
    before = _rss_mib(agent.process.pid)

    flood = subprocess.Popen(
        [sys.executable, "-c", FLOODER, str(agent.port), str(CONNECTIONS), "8"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flood.stdout is not None
        assert flood.stdout.readline().strip() == "opened"
        latencies, peak = [], before
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # the trickling phase: every probe answered, at once
            started = time.monotonic()
            code, body = agent.http("/healthz")
            latencies.append(time.monotonic() - started)
            assert (code, body) == (200, "ok\n")
            peak = max(peak, _rss_mib(agent.process.pid))
            time.sleep(0.2)  # the probes' period, not a synchronisation
        result = json.loads(flood.stdout.readline())
        flood.wait(timeout=30)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    print(f"rss before={before:.1f}MiB peak={peak:.1f}MiB probes={len(latencies)} max={max(latencies):.3f}s {result}")
    assert max(latencies) < 1.0, latencies
    cap = EndpointLimits().max_connections
    assert result["open"] <= cap and result["closed"] >= CONNECTIONS - cap, result
    assert peak - before < 16, f"RSS grew from {before:.1f} MiB to {peak:.1f} MiB"
    assert agent.http("/metrics")[0] == 200
    assert agent.process.poll() is None
