"""Kubernetes credentials for the operator and `node-janitor run`: the kubernetes client's own loaders.

Not for the node agent: any import of the `kubernetes` package imports all of it (10-17 MiB on every node); the
agent reads its credentials with `node_janitor.agent.credentials`, the same files by the same rules (kubectl's; a test
compares both). The operator and `run` import the client for their API calls anyway, and kopf re-logs-in from
this Configuration."""

from __future__ import annotations

from typing import Any


def load_configuration(kubeconfig: str | None, context: str | None = None) -> Any:
    """A kubernetes.client.Configuration: from `kubeconfig` if given, else in-cluster (the ServiceAccount),
    else $KUBECONFIG or ~/.kube/config. `context` names a kubeconfig context (instead of its current-context);
    with one, in-cluster is not tried (it has no contexts). Raises kubernetes.config.ConfigException (or OSError,
    ValueError for an unreadable or malformed file)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig or context:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration
