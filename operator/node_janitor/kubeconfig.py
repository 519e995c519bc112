"""Kubernetes credentials for the operator, the agent and `node-janitor run`: one loader for all three."""

from __future__ import annotations

from typing import Any


def load_configuration(kubeconfig: str | None) -> Any:
    """A kubernetes.client.Configuration: from `kubeconfig` if given, else in-cluster (the ServiceAccount),
    else $KUBECONFIG or ~/.kube/config. Raises kubernetes.config.ConfigException (or OSError, ValueError for an
    unreadable or malformed file)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration
