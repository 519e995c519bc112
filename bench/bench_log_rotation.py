"""Measure how far past maxSize fast writers get with the rotator, on a private containerd (root needed).

    .venv/bin/python -m bench.bench_log_rotation --max-size 1Mi --interval 100ms --writers 3 --seconds 10

Prints the writers' rate, how far rotated files went past maxSize, and the delays between checks. It also checks
that no line was lost or doubled. Not a test (pytest does not collect it): the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from node_janitor.api.policy import LogsPolicy
from node_janitor.devbed import ContainerdBed, ImageBuilder
from node_janitor.node.logs import LogRotator
from tests.support.logbed import (
    FAST_NUMBERED_LINES,
    NUMBERED_LINES,
    Overshoot,
    check_numbered,
    ordered_log_files,
    read_log,
    rotated_sizes,
    run_writers,
    stdout_messages,
)


async def measure(args: argparse.Namespace) -> None:
    policy = LogsPolicy.model_validate(
        {"maxSize": args.max_size, "maxFiles": 100000, "checkInterval": args.interval, "compress": not args.no_compress}
    )
    gaps: list[float] = []
    check = LogRotator.check

    async def timed_check(self: LogRotator):  # type: ignore[no-untyped-def]
        gaps.append(time.monotonic())
        return await check(self)

    LogRotator.check = timed_check  # type: ignore[method-assign]
    total = 0
    with (
        tempfile.TemporaryDirectory(prefix="nj-measure-") as base,
        ContainerdBed(Path(base), disk_size=args.disk_mib << 20, builder=ImageBuilder()) as bed,
    ):
        script = FAST_NUMBERED_LINES if args.fast else NUMBERED_LINES
        run = await run_writers(bed, policy, args.seconds, args.writers, script=script)
        for d in run.dirs:
            files = ordered_log_files(d)
            first, _last = check_numbered(stdout_messages(files))
            assert first == 0, f"{d.name}: starts at {first}"
            total += sum(len(read_log(f)) for f in files)
        sizes = rotated_sizes(run.dirs)
    LogRotator.check = check  # type: ignore[method-assign]
    over = Overshoot(policy.max_size, sizes)
    steps = [b - a for a, b in itertools.pairwise(gaps)]
    rate = total / args.seconds / len(run.dirs) / 1e6
    print(f"maxSize {args.max_size}, checkInterval {args.interval}, {args.writers} writers for {args.seconds}s")
    print(f"  writing: {rate:.1f} MB/s per writer (CRI log bytes), no line lost or doubled")
    print(f"  {over.summary()}")
    print(
        f"  check period: median {statistics.median(steps) * 1000:.0f} ms, "
        f"p99 {sorted(steps)[int(0.99 * (len(steps) - 1))] * 1000:.0f} ms, max {max(steps) * 1000:.0f} ms"
    )
    rotations = [r for r in run.results if r.action.kind == "rotate-log" and r.outcome == "done"]
    print(f"  {len(rotations)} rotations, errors: {run.errors or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-size", default="1Mi")
    parser.add_argument("--interval", default="100ms")
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--disk-mib", type=int, default=2048)
    parser.add_argument("--no-compress", action="store_true")
    parser.add_argument("--fast", action="store_true", help="writers run busybox seq instead of a shell loop")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
