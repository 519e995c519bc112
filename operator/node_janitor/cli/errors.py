"""The CLI's exit codes and the errors that choose them (docs/cli.md lists them for users).

| code | meaning |
| --- | --- |
| 0 | done (for `run --wait`: every agent answered without errors) |
| 1 | a run reported errors (`prune`, `run --wait`): some actions failed, the rest was done |
| 2 | usage or bad input: a bad flag or value, a malformed policy, no kubeconfig, no NodeCleanup, not containerd |
| 3 | the container runtime is unreachable or unusable (no socket, nobody listening, not CRI `runtime.v1`) |
| 4 | the Kubernetes API is unreachable (connection refused, timeout, 5xx) or refuses the credentials (401, 403) |
| 130 | interrupted (Ctrl-C) |
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "EXIT_API",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "ApiUnreachableError",
    "CliError",
    "api_error",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_RUNTIME: Final = 3
EXIT_API: Final = 4
EXIT_INTERRUPTED: Final = 130


class CliError(Exception):
    """A one-line message for the user; exit code 2 (usage or bad input)."""

    exit_code: int = EXIT_USAGE


class ApiUnreachableError(CliError):
    """The Kubernetes API cannot be reached or refuses us; exit code 4."""

    exit_code = EXIT_API


def api_error(exc: BaseException, doing: str, server: str = "") -> CliError:
    """The CliError for an exception of the kubernetes client while `doing` (e.g. "list NodeCleanups") on `server`:
    a transport failure, a timeout, a 5xx, 401 or 403 is ApiUnreachableError; any other answer is bad input."""
    from kubernetes.client import ApiException

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        reason = f"{exc.status} {exc.reason}" if exc.status else str(exc.reason)
        message = f"cannot {doing}: {reason}"
        if status == 0 or status in (401, 403) or status >= 500:
            return ApiUnreachableError(message)
        return CliError(message)
    detail = re.sub(r"<[^>]*>:\s*", "", str(getattr(exc, "reason", None) or exc))  # urllib3's "<...Connection at 0x>: "
    detail = " ".join(detail.split()) or type(exc).__name__
    at = f" at {server}" if server else ""
    return ApiUnreachableError(f"cannot {doing}: the Kubernetes API{at} is unreachable: {detail}")
