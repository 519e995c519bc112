"""The agent's Kubernetes API access: aiohttp against the apiserver, credentials from `agent.credentials` (a
kubeconfig, or the in-cluster ServiceAccount with its token re-read as it rotates, exec plugins), never the
`kubernetes` package (importing any of it costs the agent 10-17 MiB: tests/agent/test_credentials.py checks).

Only what the agent needs: list and watch ONE object by name (field selector `metadata.name=NAME`, so other
nodes' objects never reach it), merge-patch a status subresource, create an Event and merge-patch it (a repeat's
count). aiohttp rather than the
`kubernetes` client in threads: a watch is then cancelled at once on SIGTERM, and nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from node_janitor.agent.credentials import ClientCert, CredentialsError, KubeCredentials, load_credentials

log = logging.getLogger(__name__)

WATCH_SECONDS = 240
"""Server-side timeout of one watch request; it is then resumed from the last resourceVersion."""
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)


class KubeError(Exception):
    """The apiserver refused or could not be reached; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status


class Gone(KubeError):
    """410 Gone: the resourceVersion is too old, list again."""


class KubeConfigError(ValueError):
    """No usable Kubernetes credentials (one line for the user)."""


@dataclass(frozen=True)
class Resource:
    """One kind of cluster-scoped object, by API path."""

    path: str  # e.g. /api/v1/nodes, /apis/nodejanitor.io/v1alpha1/nodecleanups
    kind: str


NODES = Resource("/api/v1/nodes", "Node")
NODE_CLEANUPS = Resource("/apis/nodejanitor.io/v1alpha1/nodecleanups", "NodeCleanup")


class AgentKube(Protocol):
    """The agent's port to the apiserver: what `NodeAgent` and `follow_object` call. `KubeClient` is the real one
    (pinned below); tests pass a small in-memory fake (tests/support/agentbed.py's `MemoryKube`)."""

    async def list_one(self, resource: Resource, name: str) -> tuple[dict[str, Any] | None, str]: ...
    def watch_one(
        self, resource: Resource, name: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...
    async def patch_status(self, resource: Resource, name: str, status: dict[str, Any]) -> Any: ...
    async def create_event(self, namespace: str, event: dict[str, Any]) -> Any: ...
    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> Any: ...
    async def list_objects(self, path: str, field_selector: str) -> tuple[list[dict[str, Any]], str]: ...
    def watch_objects(
        self, path: str, field_selector: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...
    async def renew_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> Any: ...
    async def close(self) -> None: ...


class KubeClient:
    """An aiohttp session to one apiserver. Create with `from_config`, close with `close()`."""

    def __init__(self, credentials: KubeCredentials) -> None:
        self.credentials = credentials
        self.server = credentials.server
        self._session: aiohttp.ClientSession | None = None
        self._session_cert: ClientCert | None = None
        self._extra: dict[str, Any] = (
            {"server_hostname": credentials.tls_server_name} if credentials.tls_server_name else {}
        )

    @classmethod
    def from_config(cls, kubeconfig: str | None, context: str | None = None) -> KubeClient:
        """From `kubeconfig`, else in-cluster, else $KUBECONFIG or ~/.kube/config (`node_janitor.agent.credentials`);
        `context`: that kubeconfig context instead of its current-context. Raises KubeConfigError (one line)."""
        try:
            return cls(load_credentials(kubeconfig, context=context))
        except CredentialsError as exc:
            raise KubeConfigError(f"cannot load Kubernetes credentials: {exc}") from None

    async def _prepare(self, content_type: str | None = None) -> tuple[aiohttp.ClientSession, dict[str, str]]:
        """The session (a new one when an exec plugin's client certificate changed) and the request headers with
        the current token. Raises KubeError (status 0) when the credentials cannot be had now."""
        try:
            auth = await self.credentials.auth()
            context = self.credentials.ssl_context(auth.cert)
        except CredentialsError as exc:
            raise KubeError(f"credentials: {exc}") from None
        if self._session is None or self._session.closed or auth.cert != self._session_cert:
            if self._session is not None:
                await self._session.close()
            connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
            self._session, self._session_cert = aiohttp.ClientSession(connector=connector), auth.cert
        headers = {"Accept": "application/json", "User-Agent": "node-janitor-agent"}
        if auth.token:
            headers["Authorization"] = f"Bearer {auth.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return self._session, headers

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request; the decoded JSON answer. Raises KubeError (status 0 when the apiserver is unreachable).
        A 401 makes the credentials re-read (a rotated token, an expired exec credential) and is tried once more."""
        data = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            session, headers = await self._prepare(content_type if data is not None else None)
            try:
                async with session.request(
                    method, self.server + path, params=params, data=data, timeout=REQUEST_TIMEOUT, headers=headers,
                    **self._extra,
                ) as response:  # fmt: skip
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise KubeError(f"{method} {path}: apiserver unreachable: {exc or type(exc).__name__}") from None
            if status == 401:
                self.credentials.invalidate()
                if attempt == 1:
                    continue
            if status >= 400:
                raise _error(status, text, f"{method} {path}")
            return json.loads(text) if text else None
        raise AssertionError("unreachable")  # pragma: no cover

    async def list_one(self, resource: Resource, name: str) -> tuple[dict[str, Any] | None, str]:
        """The object named `name` (None if absent) and the list's resourceVersion to watch from."""
        answer = await self.request("GET", resource.path, params={"fieldSelector": f"metadata.name={name}"})
        items = answer.get("items") or []
        return (items[0] if items else None), str(answer["metadata"]["resourceVersion"])

    async def list_objects(self, path: str, field_selector: str) -> tuple[list[dict[str, Any]], str]:
        """The objects under `path` that `field_selector` selects (e.g. this node's pods) and the list's
        resourceVersion to watch from."""
        answer = await self.request("GET", path, params={"fieldSelector": field_selector})
        return list(answer.get("items") or []), str(answer["metadata"]["resourceVersion"])

    def watch_one(
        self, resource: Resource, name: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) for each change of `name` after `resource_version`; BOOKMARKs are yielded too (their
        object carries only the new resourceVersion). Ends when the server closes the watch; raises Gone on 410."""
        return self.watch_objects(resource.path, f"metadata.name={name}", resource_version)

    async def watch_objects(
        self, path: str, field_selector: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) for each change under `path` that `field_selector` selects, after `resource_version`
        (BOOKMARKs too). Ends when the server closes the watch; raises Gone on 410."""
        params = {
            "watch": "true",
            "fieldSelector": field_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=WATCH_SECONDS + 30)
        session, headers = await self._prepare()
        try:
            async with session.get(
                self.server + path, params=params, headers=headers, timeout=timeout, **self._extra
            ) as response:
                if response.status == 401:
                    self.credentials.invalidate()  # the next attempt re-reads them
                if response.status >= 400:
                    raise _error(response.status, await response.text(), f"watch {path}")
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _watch_event(json.loads(line))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(f"watch {path}: apiserver unreachable: {exc or type(exc).__name__}") from None

    async def patch_status(self, resource: Resource, name: str, status: dict[str, Any]) -> Any:
        """Merge-patch the status subresource."""
        return await self.request(
            "PATCH",
            f"{resource.path}/{name}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def create_event(self, namespace: str, event: dict[str, Any]) -> Any:
        """The created Event (its generated name in metadata.name)."""
        return await self.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event)

    async def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        """Merge-patch an Event (a repeat: its count, lastTimestamp, message; `agent.events`)."""
        return await self.request(
            "PATCH", f"/api/v1/namespaces/{namespace}/events/{name}", body=patch,
            content_type="application/merge-patch+json",
        )  # fmt: skip

    async def renew_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> Any:
        """Merge-patch the Lease's spec (one small write); create it when there is none (404)."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        try:
            return await self.request(
                "PATCH", f"{path}/{name}", body={"spec": lease["spec"]}, content_type="application/merge-patch+json"
            )
        except KubeError as exc:
            if exc.status != 404:
                raise
        return await self.request("POST", path, body=lease)


def _satisfies_agent_kube(client: KubeClient) -> AgentKube:
    return client  # mypy checks that KubeClient is an AgentKube


def _error(status: int, text: str, what: str) -> KubeError:
    try:
        message = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        message = text
    cls = Gone if status == 410 else KubeError
    return cls(f"{what}: {status} {message}", status)


def _watch_event(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind, obj = str(event.get("type")), event.get("object") or {}
    if kind == "ERROR":
        raise _error(int(obj.get("code") or 0), json.dumps(obj), "watch")
    return kind, obj


class Backoff:
    """Exponential backoff with jitter: 0.2 s doubling up to `cap`."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first, self.cap, self._next = first, cap, first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        delay, self._next = self._next, min(self.cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


async def follow_object(
    client: AgentKube,
    resource: Resource,
    name: str,
    on_change: Callable[[str, dict[str, Any] | None], Awaitable[None] | None],
    on_connection: Callable[[bool], None] | None = None,
) -> None:
    """List, then watch, one object for ever: `on_change(event_type, object_or_None)` for the listed state
    ("LIST") and each ADDED/MODIFIED/DELETED. Resumes from the last resourceVersion after a watch ends, lists
    again on 410 Gone, reconnects with backoff when the apiserver is away. Never returns (cancel it)."""
    backoff = Backoff()
    resource_version: str | None = None
    while True:
        try:
            if resource_version is None:
                obj, resource_version = await client.list_one(resource, name)
                await _call(on_change, "LIST", obj)
            if on_connection:
                on_connection(True)
            async for kind, obj in client.watch_one(resource, name, resource_version):
                resource_version = str(obj.get("metadata", {}).get("resourceVersion") or resource_version)
                if kind != "BOOKMARK":
                    await _call(on_change, kind, obj if kind != "DELETED" else None)
            backoff.reset()
        except Gone:
            log.info("watch expired resource=%s name=%s: listing again", resource.kind, name)
            resource_version = None
        except KubeError as exc:
            if on_connection:
                on_connection(False)
            delay = backoff.next()
            log.warning("watch failed resource=%s name=%s retry_in=%.1fs: %s", resource.kind, name, delay, exc)
            await asyncio.sleep(delay)


async def _call(callback: Callable[..., Awaitable[None] | None], *args: Any) -> None:
    result = callback(*args)
    if result is not None:
        await result
