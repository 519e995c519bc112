"""The `node-janitor` command line."""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node_janitor import __version__
from node_janitor.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, CliError
from node_janitor.defaults import (
    DEFAULT_CONTAINERD_ADDRESS,
    DEFAULT_KUBELET_ROOT,
    DEFAULT_NAMESPACE,
    DEFAULT_POD_LOG_DIR,
    DEFAULT_STATE_DIR,
)
from node_janitor.runtime import RuntimeClientError
from node_janitor.runtime.errors import NotContainerdError

if TYPE_CHECKING:
    from node_janitor.api import CleanupPolicy
    from node_janitor.node.engine import NodeEngine
    from node_janitor.runtime import ContainerdClient, CriClient
    from node_janitor.runtime.discovery import RuntimeDiscovery

__all__ = ["CliError", "build_parser", "main", "plugin_main"]


def _directory(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must name a directory (an empty path would be the working directory)")
    return value


def _absolute_directory(value: str) -> str:
    """An absolute directory other than /; the empty string stays (`--extra-paths-within=`: none at all)."""
    if value and (not value.startswith("/") or value.rstrip("/") == ""):
        raise argparse.ArgumentTypeError("must be an absolute directory other than / (or empty: none)")
    return value.rstrip("/")


def _bind_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an IP address to listen on, e.g. 0.0.0.0, 127.0.0.1 or ::") from None
    return value


class _DeprecatedNamespace(argparse.Action):
    """`--namespace`, the old spelling of `--containerd-namespace`: still taken, with a warning (kubectl and docker
    users read it as a Kubernetes namespace)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        print(f"node-janitor: warning: {option_string} is deprecated: it is containerd's namespace, not a Kubernetes "
              "one; use --containerd-namespace", file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


def _add_containerd_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--containerd-namespace", default=DEFAULT_NAMESPACE, metavar="NAME",
                        help=f"containerd's namespace of the images and containers (default {DEFAULT_NAMESPACE}); "
                             "not a Kubernetes namespace")  # fmt: skip
    parser.add_argument("--namespace", dest="containerd_namespace", action=_DeprecatedNamespace,
                        help=argparse.SUPPRESS)  # fmt: skip


def _add_containerd_socket(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--containerd-socket",
        default=DEFAULT_CONTAINERD_ADDRESS,
        metavar="PATH",
        help=f"containerd's socket, serving both CRI and containerd's API (default {DEFAULT_CONTAINERD_ADDRESS})",
    )


def _add_containerd_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--containerd-config", metavar="PATH",
                        help="containerd's configuration file, for the images it pins (default: where the runtime's "
                             "layout puts it: /etc/containerd/config.toml, k3s's and RKE2's own)")  # fmt: skip


def _add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    _add_containerd_socket(parser)
    _add_containerd_namespace(parser)
    _add_containerd_config(parser)
    parser.add_argument(
        "--pod-log-dir",
        default=str(DEFAULT_POD_LOG_DIR),
        type=_directory,
        metavar="DIR",
        help=f"CRI pod log directory (default {DEFAULT_POD_LOG_DIR})",
    )
    parser.add_argument(
        "--kubelet-root",
        default=str(DEFAULT_KUBELET_ROOT),
        type=_directory,
        metavar="DIR",
        help=f"the kubelet's root directory, never reached by extraPaths (default {DEFAULT_KUBELET_ROOT})",
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")


def build_parser(prog: str = "node-janitor") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
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

    info = sub.add_parser(
        "info",
        help="show the runtime found on the socket: name, version, layout (k3s, RKE2), root, configuration, and "
        "the images its configuration pins (the sandbox image), which no cleanup removes",
    )
    _add_containerd_socket(info)
    _add_containerd_config(info)
    info.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    info.set_defaults(handler=cmd_info)

    prune = sub.add_parser(
        "prune",
        help="reclaim space safely: garbage, then images least recently used, down to the low watermark",
        description="Plans with the policy (defaults without --policy) and applies the plan unless it is a dry run. "
        "Without disk pressure and without age rules, only garbage nothing references is removed.",
    )
    _add_runtime_flags(prune)
    prune.add_argument("--policy", metavar="FILE", help="a CleanupPolicy manifest (YAML or JSON), as kubectl takes it")
    prune.add_argument("--dry-run", action="store_true", help="plan and show, remove nothing")
    prune.add_argument("-f", "--force", action="store_true",
                       help="do not ask for confirmation (it is asked only when stdin is a terminal)")  # fmt: skip
    prune.add_argument(
        "--state-file",
        metavar="PATH",
        help="where to remember when images were last used (LRU across runs; a dry run remembers too), and a "
        "file that is not node-janitor's state is never overwritten; the run holds run.lock beside it (in the "
        "agent's --state-dir: never at once with the agent's runs)",
    )
    prune.set_defaults(handler=cmd_prune)

    crd = sub.add_parser("crd", help="print the CustomResourceDefinitions (YAML) for kubectl apply -f -")
    crd.set_defaults(handler=cmd_crd)

    _add_agent_parser(sub)

    demo = sub.add_parser(
        "demo", help="start a private containerd with a messy demo node, then df, prune --dry-run, prune (root)"
    )
    demo.add_argument("--disk-size", default="320Mi", help="size of the demo's loop-mounted disk (default 320Mi)")
    demo.set_defaults(handler=cmd_demo)
    _add_operator_commands(sub)
    return parser


def _add_agent_parser(sub: Any) -> None:
    agent = sub.add_parser(
        "agent",
        help="the node agent (a DaemonSet): watches its NodeCleanup, keeps the node's disks below the watermarks",
        description="Watches only its own NodeCleanup and Node; runs the engine above the high watermark, on the "
        "Node's DiskPressure, on spec.runRequest, on the policy's schedule and at startup; rotates logs; reports "
        "into the NodeCleanup's status, Events on the Node and /metrics.",
    )
    agent.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="this node (default $NODE_NAME)")
    agent.add_argument("--kubeconfig", metavar="PATH", help="a kubeconfig (default: in-cluster, else $KUBECONFIG)")
    agent.add_argument("--context", metavar="NAME", help="the kubeconfig context to use (default: its current-context)")
    _add_containerd_socket(agent)
    _add_containerd_namespace(agent)
    _add_containerd_config(agent)
    agent.add_argument(
        "--pod-log-dir", default=str(DEFAULT_POD_LOG_DIR), metavar="DIR", help=f"default {DEFAULT_POD_LOG_DIR}"
    )
    agent.add_argument(
        "--kubelet-root",
        default=str(DEFAULT_KUBELET_ROOT),
        type=_directory,
        metavar="DIR",
        help=f"the kubelet's root, never reached by extraPaths (default {DEFAULT_KUBELET_ROOT})",
    )
    agent.add_argument(
        "--state-dir",
        default=str(DEFAULT_STATE_DIR),
        metavar="DIR",
        help=f"last policy, pending status, images' last use (default {DEFAULT_STATE_DIR}); never reached by "
        "extraPaths",
    )
    agent.add_argument(
        "--extra-paths-within",
        action="append",
        type=_absolute_directory,
        metavar="DIR",
        help="a node directory logs.extraPaths rules may reach (repeatable; the ones the agent's pod mounts): a rule "
        "not below one of them is skipped with a warning in the report; an empty DIR: none (default: anywhere)",
    )
    agent.add_argument(
        "--metrics-port", type=int, default=9743, metavar="N", help="serves /metrics, /healthz, /readyz (default 9743)"
    )
    agent.add_argument(
        "--metrics-bind-address",
        default="0.0.0.0",
        type=_bind_address,
        metavar="ADDR",
        help="address the metrics port listens on (default 0.0.0.0)",
    )
    agent.add_argument(
        "--monitor-interval",
        default="2s",
        metavar="DURATION",
        help="how often the file systems are measured (default 2s)",
    )
    agent.add_argument(
        "--heartbeat-interval",
        default="60s",
        metavar="DURATION",
        help="how often the status is reported without a run (default 60s)",
    )
    _add_log_flags(agent)
    agent.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE") or None,
        metavar="NAMESPACE",
        help="renew a Lease named after the node there, the agent's liveness signal (default $POD_NAMESPACE; "
        "none: the status heartbeat is, every --heartbeat-interval)",
    )
    agent.set_defaults(handler=cmd_agent)


BENCH_BASELINE_ENV = "NODE_JANITOR_BENCH_BASELINE"
"""For benchmarks only: `1` runs the agent without its look-ahead (`AgentConfig.look_ahead`): the fill-rate sweep's
baseline, the agent as it was before issue 22 (docs/benchmarks.md)."""


def bench_baseline() -> bool:
    return os.environ.get(BENCH_BASELINE_ENV, "") == "1"


def cmd_agent(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    from node_janitor.agent import AgentConfig, AgentStartError, KubeClient, KubeConfigError, run_agent
    from node_janitor.agent.preflight import check_agent_api, check_runtime, check_state_dir
    from node_janitor.api.units import parse_duration

    if not args.node_name:
        raise CliError("--node-name is required (or set NODE_NAME)")
    intervals = {}
    for flag in ("monitor_interval", "heartbeat_interval"):
        try:
            seconds = parse_duration(getattr(args, flag)).total_seconds()
        except ValueError as exc:
            raise CliError(f"--{flag.replace('_', '-')}: {exc}") from None
        if seconds <= 0:
            raise CliError(f"--{flag.replace('_', '-')} must be greater than 0")
        intervals[flag] = seconds
    if not 0 < args.metrics_port < 65536:
        raise CliError(f"--metrics-port {args.metrics_port}: not a port number")
    try:
        kube = KubeClient.from_config(args.kubeconfig, args.context)
    except KubeConfigError as exc:
        raise CliError(str(exc)) from None
    config = AgentConfig(
        node_name=args.node_name,
        containerd_socket=args.containerd_socket,
        namespace=args.containerd_namespace,
        pod_log_dir=Path(args.pod_log_dir),
        kubelet_root=Path(args.kubelet_root),
        state_dir=Path(args.state_dir),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_bind_address,
        monitor_interval=intervals["monitor_interval"],
        heartbeat_interval=intervals["heartbeat_interval"],
        lease_namespace=args.lease_namespace or None,
        extra_paths_within=None if args.extra_paths_within is None else tuple(d for d in args.extra_paths_within if d),
        containerd_config=Path(args.containerd_config) if args.containerd_config else None,
        look_ahead=not bench_baseline(),
    )
    _configure_logging(args)
    if not config.look_ahead:
        logging.getLogger("node_janitor.agent").warning(
            "%s=1 (benchmarks only): pulls in flight not counted, no fast sampling", BENCH_BASELINE_ENV
        )

    async def run() -> int:
        problem = (
            check_state_dir(config.state_dir)
            or await check_runtime(config.containerd_socket)
            or await check_agent_api(kube, config.node_name)
        )
        if problem is not None:
            await kube.close()
            raise CliError(f"the agent cannot start: {problem}")
        try:
            return await run_agent(config, lambda: kube)
        except AgentStartError as exc:
            raise CliError(str(exc)) from None

    return run()


# --- logs of the agent and the operator (cli/logsetup.py) -----------------------------------------------------


def _add_log_flags(parser: argparse.ArgumentParser) -> None:
    from node_janitor.cli.logsetup import LOG_FORMATS, LOG_LEVELS

    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text (key=value) or json, one line per record on stderr (default text)")  # fmt: skip
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="default info")


def _configure_logging(args: argparse.Namespace) -> None:
    from node_janitor.cli.logsetup import configure_logging

    configure_logging(args.log_format, args.log_level)


def _load_policy(path: str | None) -> CleanupPolicy:
    """The policy in `path` (the defaults without one); a malformed one is a CliError naming each field."""
    from node_janitor.api import CleanupPolicy, ManifestError

    try:
        return CleanupPolicy.load(path) if path else CleanupPolicy()
    except ManifestError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot read policy {path}: {exc.strerror}") from None


def _engine(
    args: argparse.Namespace, cri: CriClient, containerd: ContainerdClient, configured_images: Sequence[str] = ()
) -> NodeEngine:
    """The node's engine as the runtime flags describe it (`df`, `prune`); `configured_images`: what the runtime's
    configuration pins (runtime discovery)."""
    from node_janitor.node.engine import NodeEngine
    from node_janitor.node.last_used import LastUsedStore
    from node_janitor.node.logs import RunLock

    state_file = getattr(args, "state_file", None)
    run_lock = None
    if state_file and not getattr(args, "dry_run", False):  # a dry run removes nothing and writes nothing
        run_lock = RunLock(Path(state_file).parent / "run.lock")
    return NodeEngine(
        cri,
        containerd,
        namespace=args.containerd_namespace,
        pod_log_dir=Path(args.pod_log_dir),
        kubelet_root=Path(args.kubelet_root),
        state=LastUsedStore(Path(state_file) if state_file else None),
        run_lock=run_lock,
        configured_images=configured_images,
    )


async def _discover(args: argparse.Namespace, cri: CriClient) -> RuntimeDiscovery:
    from node_janitor.runtime.discovery import discover_runtime

    config = Path(args.containerd_config) if args.containerd_config else None
    return await discover_runtime(cri, args.containerd_socket, config)


def cmd_info(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    from node_janitor.cli.render import render_runtime
    from node_janitor.runtime import CriClient, require_containerd

    async def run() -> int:
        async with CriClient(args.containerd_socket) as cri:
            require_containerd(await cri.version(), args.containerd_socket)
            discovery = await _discover(args, cri)
        if args.output == "json":
            print(json.dumps(discovery.to_json(), indent=2, sort_keys=True))
        else:
            print(render_runtime(discovery))
        return EXIT_OK

    return run()


def cmd_df(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    from node_janitor.cli.progress import RunProgress, on_terminal
    from node_janitor.cli.render import render_disk_report, render_runtime
    from node_janitor.runtime import open_runtime

    policy = _load_policy(args.policy)

    async def run() -> int:
        async with open_runtime(args.containerd_socket, args.containerd_namespace) as (cri, containerd):
            discovery = await _discover(args, cri)
            engine = _engine(args, cri, containerd, discovery.configured_images)
            now = engine.clock()
            with RunProgress(on_terminal()):
                report = await engine.build_disk_report(now, logs_policy=policy.spec.logs, keep=policy.spec.images.keep)
        if args.output == "json":
            print(json.dumps(report.to_json(verbose=args.verbose) | {"runtime": discovery.to_json()}, indent=2,
                             sort_keys=True))  # fmt: skip
        else:
            print(render_disk_report(report, now, verbose=args.verbose) + "\n\n" + render_runtime(discovery))
        return EXIT_OK

    return run()


def cmd_prune(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    from node_janitor.cli.progress import RunProgress, on_terminal
    from node_janitor.cli.prune import confirm_prune, render_prune
    from node_janitor.runtime import open_runtime

    policy = _load_policy(args.policy)
    ask = not args.dry_run and not args.force and on_terminal(sys.stdin)
    show = args.output == "table" and on_terminal()

    async def run() -> int:
        async with open_runtime(args.containerd_socket, args.containerd_namespace) as (cri, containerd):
            engine = _engine(args, cri, containerd, (await _discover(args, cri)).configured_images)
            if ask:  # what would go first; the run itself plans again
                with RunProgress(show):
                    preview = await engine.run_once(policy.spec, dry_run=True)
                if not confirm_prune(preview, sys.stdin, sys.stderr):
                    return EXIT_OK
            with RunProgress(show) as progress:
                report = await engine.run_once(
                    policy.spec,
                    dry_run=args.dry_run,
                    on_plan=progress.start if not args.dry_run else None,
                    on_result=progress.advance,
                )
        if args.output == "json":
            print(json.dumps(report.to_json(), indent=2, sort_keys=True))
        else:
            print(render_prune(report))
        return EXIT_FAILURE if report.errors else EXIT_OK

    return run()


def cmd_crd(args: argparse.Namespace) -> int:
    from node_janitor.api.crd import render_crds

    sys.stdout.write(render_crds())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from node_janitor.api.units import parse_quantity
    from node_janitor.cli.demo import run_demo
    from node_janitor.devbed.containerd import DevbedError

    try:
        return run_demo(parse_quantity(args.disk_size))
    except (DevbedError, ValueError) as exc:
        raise CliError(str(exc)) from None


# --- operator and run -----------------------------------------------------------------------------------


def _add_operator_commands(sub: Any) -> None:
    from node_janitor.cli.kubeapi import add_kube_flags
    from node_janitor.cli.run import add_run_parser
    from node_janitor.cli.status import add_status_parser
    from node_janitor.controller import DEFAULT_METRICS_PORT, DEFAULT_PEERING

    operator = sub.add_parser(
        "operator",
        help="run the operator: one NodeCleanup per node a CleanupPolicy selects, policy statuses, Events",
    )
    add_kube_flags(operator)
    operator.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, metavar="N",
                          help=f"port of /metrics, /healthz and /readyz (default {DEFAULT_METRICS_PORT})")  # fmt: skip
    operator.add_argument("--metrics-bind-address", default="0.0.0.0", type=_bind_address, metavar="ADDR",
                          help="address the metrics port listens on (default 0.0.0.0)")  # fmt: skip
    operator.add_argument("--dry-run", action="store_true", help="compute and log every write, make none")
    operator.add_argument("--peering", default=DEFAULT_PEERING, metavar="NAME",
                          help=f"the ClusterKopfPeering of the replicas (default {DEFAULT_PEERING})")  # fmt: skip
    operator.add_argument("--standalone", action="store_true", help="run without peering (a single replica)")
    _add_log_flags(operator)
    operator.add_argument("--agent-namespace", default=os.environ.get("POD_NAMESPACE") or None, metavar="NAMESPACE",
                          help="where the agents renew their Leases, their liveness signal (default $POD_NAMESPACE; "
                               "none: only their status heartbeats say they are alive)")  # fmt: skip
    operator.set_defaults(handler=cmd_operator)
    add_run_parser(sub)
    add_status_parser(sub)


def cmd_operator(args: argparse.Namespace) -> Coroutine[Any, Any, int]:

    from node_janitor.cli.errors import ApiUnreachableError
    from node_janitor.cli.kubeapi import kube_configuration
    from node_janitor.controller.app import OperatorOptions, OperatorStartError, run_operator
    from node_janitor.controller.preflight import ApiserverGone
    from node_janitor.controller.reconciler import ReconcilerSettings

    configuration = kube_configuration(args.kubeconfig, args.context)
    _configure_logging(args)  # kopf's per-object lines only at warning and above, unless --log-level debug
    options = OperatorOptions(
        metrics_host=args.metrics_bind_address,
        metrics_port=args.metrics_port,
        peering=args.peering,
        standalone=args.standalone,
        agent_namespace=args.agent_namespace or None,
        reconciler=ReconcilerSettings(dry_run=args.dry_run),
    )

    async def run() -> int:
        try:
            return await run_operator(options, configuration)
        except ApiserverGone as exc:
            raise ApiUnreachableError(f"the operator cannot start: {exc}") from None
        except OperatorStartError as exc:
            raise CliError(f"the operator cannot start: {exc}") from None

    return run()


def _tolerant_output() -> None:
    """Paths that are not UTF-8 (a pod directory named by someone else) reach reports as surrogate escapes:
    print them escaped instead of losing the report to a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None, *, prog: str = "node-janitor") -> int:
    """The exit codes are `node_janitor.cli.errors`' (docs/cli.md): 2 usage or bad input, 3 runtime unreachable,
    4 API unreachable, 1 run errors."""
    _tolerant_output()
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        outcome = handler(args)
        return outcome if isinstance(outcome, int) else asyncio.run(outcome)
    except NotContainerdError as exc:  # a runtime that answers but is not ours to clean: a wrong --containerd-socket
        print(f"node-janitor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeClientError as exc:
        print(f"node-janitor: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except CliError as exc:
        print(f"node-janitor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def plugin_main() -> int:
    """`kubectl node-janitor ...`: the kubectl-node_janitor console script (kubectl runs it with the arguments
    after `node-janitor`)."""
    return main(prog="kubectl node-janitor")
