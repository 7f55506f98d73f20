"""Wiring: builds the agent's parts from a loaded site config.

Data flows one way: drivers and cameras put observations on one queue; the
engine turns them into decisions (and, rarely, commands back to one bus
worker); decisions go to the decision sink (the durable outbox), and the
uplink drains the outbox. This module only connects those pieces; each lives
in its own module and knows nothing of the others' internals.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from agent.clock import Clock
from agent.events import Command, Decision, DecisionType, Observation
from agent.health import Health
from agent.health import attach as attach_health
from agent.siteconfig import LoadedSite
from agent.supervisor import Part, Supervisor

log = logging.getLogger(__name__)

GATEWAY_ZONE = (
    "_gateway"  # zone of decisions about the gateway itself (zone ids cannot start with _)
)
OBSERVATION_QUEUE_MAX = 10_000


class DecisionSink(Protocol):
    """Where decisions go; the durable outbox in production."""

    async def submit(self, decision: Decision) -> None: ...


class LogSink:
    """A sink that only logs; used where no outbox is configured (check, tests)."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    async def submit(self, decision: Decision) -> None:
        self.decisions.append(decision)
        log.warning("decision %s zone=%s: %s", decision.type.value, decision.zone, decision.reason)


@dataclass
class Agent:
    site: LoadedSite
    clock: Clock
    sink: DecisionSink
    observations: asyncio.Queue[Observation] = field(
        default_factory=lambda: asyncio.Queue(OBSERVATION_QUEUE_MAX)
    )
    commands: dict[str, asyncio.Queue[Command]] = field(default_factory=dict)  # per bus
    parts: list[Part] = field(default_factory=list)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def supervisor(self, **kw: float) -> Supervisor:
        sup = Supervisor(
            self.parts,
            clock=self.clock,
            on_fault=self._part_fault,
            on_restore=self._part_restore,
            **kw,
        )
        for p in self.parts:
            if isinstance(p, Health):  # so that a crashed part counts as restarting, not stalled
                p.bind_supervisor(sup.states)
        return sup

    # A crashed part is a fault of the gateway itself, reported like any other.
    def _part_fault(self, part: str, error: str) -> None:
        self._report(DecisionType.FAULT, part, f"gateway part {part} failed: {error}")

    def _part_restore(self, part: str) -> None:
        self._report(DecisionType.RESTORE, part, f"gateway part {part} running again")

    def _report(self, type_: DecisionType, part: str, reason: str) -> None:
        now_w, now_m = self.clock.wall(), self.clock.monotonic()
        d = Decision(
            type=type_,
            zone=GATEWAY_ZONE,
            reason=reason,
            first_seen_wall=now_w,
            first_seen_mono=now_m,
            wall=now_w,
            mono=now_m,
            details={"part": part},
        )
        task = asyncio.get_running_loop().create_task(self.sink.submit(d))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def build_agent(site: LoadedSite, clock: Clock, sink: DecisionSink | None = None) -> Agent:
    """Create every configured part. Parts are added here as they are built."""
    agent = Agent(site=site, clock=clock, sink=sink or LogSink())
    # Health watches agent.parts itself (the live list), so parts added before or
    # after this line are watched; it sends READY=1 and feeds the watchdog.
    attach_health(agent.parts, site, clock)
    return agent
