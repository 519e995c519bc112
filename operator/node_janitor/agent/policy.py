"""The agent's policy holder: which policy applies on this node, and the fail-closed rules.

The agent removes something only where a valid policy says so:
- `nodecleanup`: the node's NodeCleanup, as listed or watched (saved in the state directory for a restart);
- `saved`: the one saved by a previous agent, applied only while the apiserver does not answer (the agent
  keeps working on its last-seen plan when the operator or the apiserver is down);
- `none`: no NodeCleanup (the apiserver said so: a LIST without it, a DELETED event; or nothing saved and no
  answer): the agent measures and reports, and removes nothing. The saved policy is forgotten.

A NodeCleanup spec that cannot be read (a field from a newer operator, a value the models refuse) counts as
paused: the last rules held are kept for display only, nothing is removed until a readable spec arrives.
Until the NodeCleanup is listed (or the agent gave up waiting for the apiserver, `settle`), nothing acts either:
a fresh policy may be one LIST away.

`applied` is what runs, triggers and the log rotator obey; a run in progress reads it again before each action
(paused, dryRun, images.keep, logs.enabled), so a change takes effect before the next one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from node_janitor.agent.store import AgentStore
from node_janitor.api.meta import ManifestError
from node_janitor.api.nodecleanup import NodeCleanup, requested_run
from node_janitor.api.policy import PolicyRules

__all__ = ["HeldPolicy", "PolicyHolder", "PolicySource", "PolicyUpdate"]

log = logging.getLogger(__name__)

PolicySource = Literal["nodecleanup", "saved", "none"]


@dataclass(frozen=True)
class HeldPolicy:
    """The policy the agent holds and where it came from."""

    rules: PolicyRules = field(default_factory=PolicyRules)
    """As written (the last readable ones while `spec_error`; the CRD defaults, unused, when `source` is none)."""
    generation: int | None = None
    source: PolicySource = "none"
    protected_images: tuple[str, ...] = ()
    run_request: str | None = None
    """The run request it carries: the nodejanitor.io/run-request annotation, else spec.runRequest."""
    spec_error: str | None = None
    """Why the NodeCleanup's current spec cannot be read: the node is paused until it can."""

    @property
    def valid(self) -> bool:
        """Whether a valid policy says what to do (it may still say: paused, or dry run)."""
        return self.source != "none" and self.spec_error is None


@dataclass(frozen=True)
class PolicyUpdate:
    """What one NodeCleanup event changed."""

    changed: bool = False
    """The held policy changed (rules, generation, source, protected images, run request or spec error)."""
    generation_changed: bool = False
    error_changed: bool = False
    appeared: bool = False
    """The NodeCleanup exists again (or for the first time): something to report into."""


def _paused(rules: PolicyRules) -> PolicyRules:
    return rules if rules.paused else rules.model_copy(update={"paused": True})


class PolicyHolder:
    """Holds the node's policy (module docstring); saves and forgets it in `store`."""

    def __init__(self, node_name: str, store: AgentStore) -> None:
        self.node_name = node_name
        self.store = store
        self.held = HeldPolicy()
        self.settled = False
        """The NodeCleanup was listed, or the agent stopped waiting for the apiserver (`settle`)."""
        self.exists = False
        """The NodeCleanup exists as far as the apiserver said (a watch, or a status patch answered 404)."""
        self._load_saved()

    # ---- what applies --------------------------------------------------------------------------------------

    @property
    def applied(self) -> PolicyRules:
        """The rules runs, triggers and the log rotator obey: paused unless a valid policy applies."""
        held = self.held
        if not self.settled or not held.valid:
            return _paused(held.rules)
        return held.rules

    @property
    def acts(self) -> bool:
        """Whether anything may be removed or rotated now (dry runs aside)."""
        return not self.applied.paused

    def describe(self) -> str:
        held = self.held
        if not self.settled:
            return f"waiting for the NodeCleanup (saved: {held.source == 'saved'})"
        if held.source == "none":
            return "no NodeCleanup: measuring and reporting only, nothing is removed"
        if held.spec_error is not None:
            return f"the NodeCleanup spec cannot be read, paused: {held.spec_error}"
        paused = ", paused: nothing is removed" if held.rules.paused else ""
        return f"policy from {held.source} (generation {held.generation}){paused}"

    # ---- inputs --------------------------------------------------------------------------------------------

    def _parse(self, spec: Any) -> NodeCleanup:
        return NodeCleanup.from_manifest({"metadata": {"name": self.node_name}, "spec": spec})

    def _load_saved(self) -> None:
        saved = self.store.load_policy()
        if saved is None:
            return
        try:
            spec = self._parse(saved.get("spec")).spec
        except ManifestError as exc:
            log.warning("ignoring saved policy %s: %s", self.store.policy_path, _one_line(exc))
            return
        if saved.get("error"):
            log.warning("the saved NodeCleanup spec was unreadable (%s): nothing is removed", saved["error"])
            return
        generation = saved.get("generation")
        self.held = HeldPolicy(
            spec.policy,
            generation if isinstance(generation, int) else None,
            "saved",
            tuple(spec.protected_images),
            spec.run_request,
        )

    def settle(self) -> None:
        """The apiserver did not answer in time: the saved policy (if any) applies, else none."""
        if not self.settled:
            self.settled = True
            log.info("apiserver not answering: %s", self.describe())

    def observe(self, obj: dict[str, Any] | None) -> PolicyUpdate:
        """The NodeCleanup as the apiserver lists or watches it (None: it does not exist)."""
        self.settled = True
        before = self.held
        if obj is None:
            self.exists = False
            if before.source != "none" or before.spec_error is not None:
                self.store.forget_policy()
                self.held = HeldPolicy()
                log.info("no NodeCleanup for this node: nothing is removed until one exists")
            return self._update(before, appeared=False)
        appeared = not self.exists
        self.exists = True
        generation = (obj.get("metadata") or {}).get("generation")
        generation = generation if isinstance(generation, int) else None
        try:
            spec = self._parse(obj.get("spec")).spec
        except ManifestError as exc:
            error = f"generation {generation}: {_one_line(exc)}"
            if error != before.spec_error:
                log.warning("invalid NodeCleanup spec, paused until a readable one: %s", error)
                # Saved as seen: a restarted agent that cannot reach the apiserver cannot read it either, so it
                # removes nothing (it must not go back to an older plan the NodeCleanup no longer says).
                self.store.save_policy(obj.get("spec"), generation, error=error)
            # The last readable rules stay, for display only.
            self.held = HeldPolicy(
                before.rules,
                before.generation,
                "nodecleanup",
                before.protected_images,
                None,
                error,
            )
            return self._update(before, appeared=appeared)
        annotations = (obj.get("metadata") or {}).get("annotations")
        run_request = requested_run(annotations if isinstance(annotations, dict) else None, spec.run_request)
        held = HeldPolicy(spec.policy, generation, "nodecleanup", tuple(spec.protected_images), run_request)
        if (held.rules, held.generation, held.protected_images) != (
            before.rules,
            before.generation,
            before.protected_images,
        ) or before.source != "nodecleanup":
            self.store.save_policy(dict(obj.get("spec") or {}), generation)
        self.held = held
        return self._update(before, appeared=appeared)

    def _update(self, before: HeldPolicy, *, appeared: bool) -> PolicyUpdate:
        after = self.held
        return PolicyUpdate(
            changed=after != before,
            generation_changed=after.generation != before.generation or after.source != before.source,
            error_changed=after.spec_error != before.spec_error,
            appeared=appeared,
        )


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
