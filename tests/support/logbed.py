"""Helpers for log tests on the real containerd bed: numbered-line writers, reading a container's log files back
(live, rotated and compressed) and checking that every line is there exactly once, in order."""

from __future__ import annotations

import asyncio
import gzip
import os
import statistics
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from node_janitor.api.policy import LogsPolicy
from node_janitor.devbed import ContainerdBed
from node_janitor.devbed.pods import RunningPod, remove_all_pods, run_pod, start_container
from node_janitor.node.logs import LogActionResult, LogFileKind, LogRotator, parse_log_name
from node_janitor.runtime import ContainerSpec, CriClient, CriContainer, CriContainerStatus, CriSandbox, open_runtime

# A busybox shell loop printing 0, 1, 2... as fast as it can (TESTBED.md: 6-13 MB/s of CRI log, unloaded).
NUMBERED_LINES = "i=0; while true; do echo $i; i=$((i+1)); done"
FAST_NUMBERED_LINES = "exec seq 0 2000000000"  # busybox seq: as fast as containerd takes the lines


def ordered_log_files(container_dir: Path) -> list[Path]:
    """A container's log files oldest first: attempts in order, each one's rotated files by time, then its live
    file. Leftover `.tmp` files and plain copies beside their `.gz` are not log content and are left out."""
    entries = []
    names = set(os.listdir(container_dir))
    for name in names:
        parsed = parse_log_name(name)
        if parsed.kind in (LogFileKind.TMP, LogFileKind.OTHER):
            continue
        if parsed.kind is LogFileKind.ROTATED and name + ".gz" in names:
            continue
        live = parsed.kind is LogFileKind.LOG
        entries.append(((parsed.attempt, live, parsed.rotated_at.timestamp() if parsed.rotated_at else 0.0), name))
    return [container_dir / name for _, name in sorted(entries)]


def read_log(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def uncompressed_length(path: Path) -> int:
    return len(read_log(path))


def stdout_messages(files: list[Path]) -> list[str]:
    """The complete stdout lines across `files`: CRI lines are `<time> <stream> <P|F> <message>`, and a line
    the runtime split (`P` fragments, e.g. at a rotation) is joined with the fragments that follow it."""
    out: list[str] = []
    partial = ""
    for path in files:
        for raw in read_log(path).decode().splitlines():
            _, stream, tag, message = [*raw.split(" ", 3), ""][:4]
            if stream != "stdout":
                continue
            if tag == "P":
                partial += message
            else:
                out.append(partial + message)
                partial = ""
    if partial:
        out.append(partial)
    return out


def check_numbered(messages: list[str]) -> tuple[int, int]:
    """The lines must be consecutive integers (each once, in order); returns the first and last.

    The writers are killed (a shell as PID 1 ignores SIGTERM) and the shell writes its output in buffers that do
    not end at line ends, so the very last line may be cut short: it must then be the start of the next number.
    """
    assert messages, "no lines at all"
    # When maxFiles removed the oldest files, the first kept line may be the end of a line a rotation split
    # into a partial record (`P`, removed with its file) and its continuation: "3111" of 163111.
    if len(messages) > 1 and messages[0] != str(int(messages[1]) - 1):
        assert str(int(messages[1]) - 1).endswith(messages[0]), f"first line {messages[0]!r} before {messages[1]}"
        messages = messages[1:]
    if len(messages) > 1 and messages[-1] != str(int(messages[-2]) + 1):
        assert str(int(messages[-2]) + 1).startswith(messages[-1]), f"last line {messages[-1]!r} after {messages[-2]}"
        messages = messages[:-1]
    numbers = [int(m) for m in messages]
    first = numbers[0]
    for i, n in enumerate(numbers):
        if n != first + i:
            raise AssertionError(f"line {i}: expected {first + i}, got {n} (around: {numbers[max(0, i - 3) : i + 3]})")
    return first, numbers[-1]


@dataclass
class RecordingCri:
    """The real CriClient, with every ReopenContainerLog recorded (monotonic time, container id)."""

    cri: CriClient
    reopens: list[tuple[float, str]] = field(default_factory=list)

    async def list_containers(self) -> list[CriContainer]:
        return await self.cri.list_containers()

    async def list_pod_sandboxes(self) -> list[CriSandbox]:
        return await self.cri.list_pod_sandboxes()

    async def container_status(self, container_id: str) -> CriContainerStatus:
        return await self.cri.container_status(container_id)

    async def reopen_container_log(self, container_id: str) -> None:
        self.reopens.append((time.monotonic(), container_id))
        await self.cri.reopen_container_log(container_id)


@dataclass
class Overshoot:
    """How far rotated files went past maxSize (uncompressed bytes)."""

    max_size: int
    sizes: list[int]

    @property
    def worst(self) -> int:
        return max(self.sizes) - self.max_size if self.sizes else 0

    def summary(self) -> str:
        if not self.sizes:
            return "no rotated files"
        over = sorted(s - self.max_size for s in self.sizes)
        return (
            f"{len(self.sizes)} rotated files; past maxSize by: max {over[-1] / 1024:.0f} KiB, "
            f"median {statistics.median(over) / 1024:.0f} KiB, p90 {over[int(0.9 * (len(over) - 1))] / 1024:.0f} KiB"
        )


def rotated_sizes(container_dirs: list[Path]) -> list[int]:
    sizes = []
    for d in container_dirs:
        for path in ordered_log_files(d):
            if parse_log_name(path.name).kind is not LogFileKind.LOG:
                sizes.append(uncompressed_length(path))
    return sizes


def writer_image(bed: ContainerdBed) -> str:
    b = bed.builder
    image = b.build("example.com/logs/writer:v1", [b.busybox_layer()])
    bed.import_images([image])
    return image.name


async def start_misplaced_logger(cri: CriClient, pod: RunningPod, image: str, script: str) -> tuple[str, Path]:
    """Container `app` at attempt 0 logging to `app/3.log`, where kubelet's layout predicts `app/0.log`: only the
    runtime's log path says which file is live. Its id and that file."""
    spec = ContainerSpec(name="app", image=image, command=["/bin/sh", "-c"], args=[script], log_path="app/3.log")
    cid = await cri.create_container(pod.sandbox_id, spec, pod.spec)
    await cri.start_container(cid)
    return cid, pod.log_dir / "app" / "3.log"


def files_in(container_dir: Path) -> int:
    """Log files (not a `.tmp` being written, nor a plain copy whose `.gz` is done)."""
    return len(ordered_log_files(container_dir))


@dataclass
class WriterRun:
    dirs: list[Path]  # each writer's container log directory
    reopens: list[tuple[float, str]]  # every ReopenContainerLog: (monotonic time, container id)
    stopped: dict[str, float]  # container id -> when it was stopped (monotonic)
    results: list[LogActionResult]  # everything the rotator did
    most_files: list[int]  # the most files any container had, sampled every 100 ms
    errors: list[str]


async def run_writers(
    bed: ContainerdBed,
    policy: LogsPolicy,
    seconds: float,
    writers: int = 3,
    *,
    sweep: float = 10.0,
    script: str = NUMBERED_LINES,
) -> WriterRun:
    """The rotator runs; `writers` containers of one pod print numbered lines for `seconds`; then they are
    killed while the rotator goes on for a few checks (it must not reopen their logs), and it is stopped."""
    image = writer_image(bed)
    results: list[LogActionResult] = []
    async with open_runtime(bed.address, bed.namespace) as (cri, _):
        recording = RecordingCri(cri)
        rotator = LogRotator(
            recording, bed.pod_log_dir, policy, sweep_interval=timedelta(seconds=sweep), on_result=results.append
        )
        stop = asyncio.Event()
        task = asyncio.create_task(rotator.run(stop))
        pod = await run_pod(cri, bed.pod_log_dir, "writers")
        started = [await start_container(cri, pod, f"w{i}", image, script) for i in range(writers)]
        dirs = [c.log_path.parent for c in started]
        most: list[int] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            most.append(max(await asyncio.to_thread(lambda: [files_in(d) for d in dirs])))
        stopped: dict[str, float] = {}
        for c in started:
            await cri.stop_container(c.id)
            stopped[c.id] = time.monotonic()
        await asyncio.sleep(4 * policy.check_interval.total_seconds() + 0.3)
        stop.set()
        await asyncio.wait_for(task, 60)
        await remove_all_pods(cri)
    return WriterRun(dirs, recording.reopens, stopped, results, most, rotator.errors)
