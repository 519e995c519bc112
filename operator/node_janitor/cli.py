"""The `node-janitor` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node_janitor import __version__
from node_janitor.runtime import DEFAULT_CONTAINERD_ADDRESS, DEFAULT_NAMESPACE, RuntimeClientError

if TYPE_CHECKING:
    from node_janitor.api import CleanupPolicy

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad input: unreachable runtime, malformed policy, bad flags


class CliError(Exception):
    """A one-line message for the user; exit code 2."""


def _pod_log_dir(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must name a directory (an empty path would be the working directory)")
    return value


def _add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--containerd-socket",
        default=DEFAULT_CONTAINERD_ADDRESS,
        metavar="PATH",
        help=f"containerd's socket, serving both CRI and containerd's API (default {DEFAULT_CONTAINERD_ADDRESS})",
    )
    parser.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help=f"containerd namespace (default {DEFAULT_NAMESPACE})"
    )
    parser.add_argument(
        "--pod-log-dir",
        default="/var/log/pods",
        type=_pod_log_dir,
        metavar="DIR",
        help="CRI pod log directory (default /var/log/pods)",
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="node-janitor",
        description="Exact disk accounting and safe cleanup for containerd nodes.",
    )
    parser.add_argument("--version", action="version", version=f"node-janitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    df = sub.add_parser("df", help="show disk usage: images (shared/unique), containers, snapshots, content, logs")
    _add_runtime_flags(df)
    df.add_argument("-v", "--verbose", action="store_true", help="one row per image")
    df.add_argument(
        "--policy", metavar="FILE", help="a CleanupPolicy manifest: its log rules decide what the Logs row can reclaim"
    )
    df.set_defaults(handler=cmd_df)

    prune = sub.add_parser(
        "prune",
        help="reclaim space safely: garbage, then images least recently used, down to the low watermark",
        description="Plans with the policy (defaults without --policy) and applies the plan unless it is a dry run. "
        "Without disk pressure and without age rules, only garbage nothing references is removed.",
    )
    _add_runtime_flags(prune)
    prune.add_argument("--policy", metavar="FILE", help="a CleanupPolicy manifest (YAML or JSON), as kubectl takes it")
    prune.add_argument("--dry-run", action="store_true", help="plan and show, remove nothing")
    prune.add_argument(
        "--state-file", metavar="PATH", help="where to remember when images were last used (LRU across runs)"
    )
    prune.set_defaults(handler=cmd_prune)

    crd = sub.add_parser("crd", help="print the CustomResourceDefinitions (YAML) for kubectl apply -f -")
    crd.set_defaults(handler=cmd_crd)

    demo = sub.add_parser(
        "demo", help="start a private containerd with a messy demo node, then df, prune --dry-run, prune (root)"
    )
    demo.add_argument("--disk-size", default="320Mi", help="size of the demo's loop-mounted disk (default 320Mi)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _load_policy(path: str | None) -> CleanupPolicy:
    """The policy in `path` (the defaults without one); a malformed one is a CliError naming each field."""
    from node_janitor.api import CleanupPolicy, ManifestError

    try:
        return CleanupPolicy.load(path) if path else CleanupPolicy()
    except ManifestError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot read policy {path}: {exc.strerror}") from None


def cmd_df(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    from node_janitor.node import open_runtime, take_inventory
    from node_janitor.render import render_disk_report
    from node_janitor.usage import build_disk_report

    policy = _load_policy(args.policy)

    async def run() -> int:
        async with open_runtime(args.containerd_socket, args.namespace) as (cri, containerd):
            inventory = await take_inventory(cri, containerd, args.namespace, Path(args.pod_log_dir))
        now = datetime.now(UTC)
        report = build_disk_report(inventory, now, logs_policy=policy.spec.logs)
        if args.output == "json":
            print(json.dumps(report.to_json(verbose=args.verbose), indent=2, sort_keys=True))
        else:
            print(render_disk_report(report, now, verbose=args.verbose))
        return EXIT_OK

    return run()


def cmd_prune(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    from node_janitor.node import open_runtime
    from node_janitor.prune import prune, render_prune
    from node_janitor.state import LastUsedStore

    policy = _load_policy(args.policy)

    async def run() -> int:
        with _progress(enabled=args.output == "table" and sys.stderr.isatty()) as progress:
            async with open_runtime(args.containerd_socket, args.namespace) as (cri, containerd):
                report = await prune(
                    cri,
                    containerd,
                    policy.spec,
                    namespace=args.namespace,
                    pod_log_dir=Path(args.pod_log_dir),
                    dry_run=args.dry_run,
                    state=LastUsedStore(Path(args.state_file) if args.state_file else None),
                    on_plan=progress.start if not args.dry_run else None,
                    on_result=progress.advance,
                )
        if args.output == "json":
            print(json.dumps(report.to_json(), indent=2, sort_keys=True))
        else:
            print(render_prune(report))
        return EXIT_FAILURE if report.errors else EXIT_OK

    return run()


class _progress:
    """A progress bar on stderr while a plan is applied (only on a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, plan: Any) -> None:
        if not self.enabled or not plan.actions:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task("Removing", total=len(plan.actions))
        self._bar.start()

    def advance(self, result: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{result.action.kind} {result.action.id[:19]}")


def cmd_crd(args: argparse.Namespace) -> int:
    from node_janitor.api.crd import render_crds

    sys.stdout.write(render_crds())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from node_janitor.api.units import parse_quantity
    from node_janitor.devbed.containerd import DevbedError
    from node_janitor.devbed.demo import run_demo

    try:
        return run_demo(parse_quantity(args.disk_size))
    except (DevbedError, ValueError) as exc:
        raise CliError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        outcome = handler(args)
        return outcome if isinstance(outcome, int) else asyncio.run(outcome)
    except (RuntimeClientError, CliError) as exc:
        print(f"node-janitor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
