"""The Kubernetes side of the CLI (`run`, `status`, `operator`): kubeconfig and context flags, the client, and
the errors of its calls as exit codes (`errors.api_error`)."""

from __future__ import annotations

import argparse
import logging
from typing import Any, Final

from node_janitor.cli.errors import CliError

__all__ = ["KUBECONFIG_HELP", "REQUEST_TIMEOUT", "add_kube_flags", "custom_objects", "kube_configuration",
           "transport_errors"]  # fmt: skip

KUBECONFIG_HELP: Final = "a kubeconfig (default: in-cluster, else $KUBECONFIG or ~/.kube/config)"
CONTEXT_HELP: Final = "the kubeconfig context to use (default: its current-context)"
REQUEST_TIMEOUT: Final = (10.0, 60.0)
"""Connect and read timeouts of one API call (a watch has its own read deadline)."""


def add_kube_flags(parser: argparse.ArgumentParser) -> None:
    """`--kubeconfig` and `--context`, as kubectl spells them."""
    parser.add_argument("--kubeconfig", metavar="PATH", help=KUBECONFIG_HELP)
    parser.add_argument("--context", metavar="NAME", help=CONTEXT_HELP)


def kube_configuration(kubeconfig: str | None, context: str | None = None) -> Any:
    """A kubernetes.client.Configuration; a missing or malformed kubeconfig or an unknown context is a CliError."""
    from kubernetes.config import ConfigException

    from node_janitor.controller.kubeconfig import load_configuration

    try:
        configuration = load_configuration(kubeconfig, context)
    except (ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "not in a cluster, and no $KUBECONFIG or ~/.kube/config"
        if context and not kubeconfig:
            where = "$KUBECONFIG or ~/.kube/config"
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].strip("'")
        raise CliError(f"no Kubernetes configuration ({where}): {reason}") from None
    configuration.retries = 1  # an unreachable apiserver answers in one failed connect, not four
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retry warnings would be lines beside ours
    return configuration


def custom_objects(configuration: Any) -> Any:
    """A kubernetes CustomObjectsApi on `configuration`."""
    from kubernetes import client

    return client.CustomObjectsApi(client.ApiClient(configuration))


def transport_errors() -> tuple[type[BaseException], ...]:
    """What the kubernetes client raises besides ApiException when it cannot talk to the apiserver."""
    import urllib3
    from kubernetes.client import ApiException

    return (ApiException, urllib3.exceptions.HTTPError, OSError)
