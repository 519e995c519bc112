"""When the agent runs: coalescing of triggers, the pressure target, and the watermark check. Pure except for
the asyncio.Event that wakes the runner."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from node_janitor.api.nodecleanup import RunTrigger, is_dry_run_request
from node_janitor.api.policy import PolicyRules, Thresholds
from node_janitor.node.inventory import FileSystemEntry

# What lastRun.trigger says when several triggers coalesced into one run: the most specific first.
TRIGGER_ORDER: tuple[RunTrigger, ...] = ("request", "pressure", "watermark", "schedule", "startup")
PRESSURE_MARGIN = 0.001
"""A pressure run's high watermark sits this far above the low one (percent): it reclaims to the low watermark
whenever the disk is above it."""
MAX_FOLLOW_UPS = 3
"""Runs in a row that may follow a run whose plan covered its target yet left the disk above the low watermark (the
disk filled while it ran, or removals freed less than measured): each plans again on what is there now."""


@dataclass(frozen=True)
class PendingRun:
    triggers: frozenset[RunTrigger]
    run_request: str | None = None
    follow_up: bool = False
    """Planned again after a run that fell short of the low watermark it had covered: it aims at the low
    watermark though the disk may be below the high one now (as a pressure run does)."""

    @property
    def dry_run_request(self) -> bool:
        return is_dry_run_request(self.run_request)

    @property
    def trigger(self) -> RunTrigger:
        return next(t for t in TRIGGER_ORDER if t in self.triggers)

    @property
    def pressure(self) -> bool:
        return "pressure" in self.triggers

    @property
    def to_low(self) -> bool:
        """Reclaims down to the low watermark whenever the disk is above it (`pressure_rules`)."""
        return self.pressure or self.follow_up


class RunQueue:
    """Triggers that arrive while a run is going on (or pending) coalesce into one more run. Real run requests
    coalesce into the newest; a dry-run request waits beside them (never replacing a real one) for a run of its
    own."""

    def __init__(self) -> None:
        self._triggers: set[RunTrigger] = set()
        self._run_request: str | None = None
        self._dry_run_request: str | None = None
        self._follow_up = False
        self._wake = asyncio.Event()
        self.running = False

    def add(self, trigger: RunTrigger, run_request: str | None = None, *, follow_up: bool = False) -> None:
        self._triggers.add(trigger)
        self._follow_up = self._follow_up or follow_up
        if run_request is not None:
            if is_dry_run_request(run_request):
                self._dry_run_request = run_request
            else:
                self._run_request = run_request
        self._wake.set()

    @property
    def pending(self) -> bool:
        return bool(self._triggers)

    @property
    def busy(self) -> bool:
        return self.running or self.pending

    async def take(self) -> PendingRun:
        """Wait for a trigger; returns everything pending (and marks a run as going on). A dry-run request
        never rides along a real run: the other triggers (and a real request) run first, the dry-run request
        stays pending for the next."""
        while not self._triggers:
            self._wake.clear()
            await self._wake.wait()
        if self._run_request is not None or self._dry_run_request is None:
            pending = PendingRun(frozenset(self._triggers), self._run_request, self._follow_up)
            self._run_request, self._follow_up = None, False
            self._triggers = {"request"} if self._dry_run_request is not None else set()
        elif others := self._triggers - {"request"}:
            pending = PendingRun(frozenset(others), follow_up=self._follow_up)
            self._triggers -= others
            self._follow_up = False
        else:
            pending = PendingRun(frozenset(self._triggers), self._dry_run_request)
            self._triggers.clear()
            self._dry_run_request = None
        self.running = True
        return pending

    def done(self) -> None:
        self.running = False


def pressure_rules(rules: PolicyRules) -> PolicyRules:
    """`rules` with the high watermarks just above the low ones: the node's DiskPressure asks for the low
    watermark even when the disk is below the high one (the kubelet's thresholds are not ours). Built without
    validation on purpose (the API's percentages are integers; the planner's are floats)."""
    t = rules.thresholds
    thresholds = t.model_copy(
        update={
            "high_percent": t.low_percent + PRESSURE_MARGIN,
            "inodes_high_percent": t.inodes_low_percent + PRESSURE_MARGIN,
        }
    )
    return rules.model_copy(update={"thresholds": thresholds})


def above(file_systems: Iterable[FileSystemEntry], thresholds: Thresholds, *, low: bool = False) -> bool:
    """Whether a file system is above the high watermark (space or inodes), or with `low`, above the low one."""
    space = thresholds.low_percent if low else thresholds.high_percent
    inodes = thresholds.inodes_low_percent if low else thresholds.inodes_high_percent
    return any(fs.used_percent > space or (fs.inodes > 0 and fs.inodes_used_percent > inodes) for fs in file_systems)
