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
from typing import TYPE_CHECKING, Protocol

from agent import __version__
from agent.clock import Clock
from agent.engine import EngineRunner
from agent.events import Command, Decision, DecisionType, Observation
from agent.health import Health
from agent.health import attach as attach_health
from agent.outbox import Outbox
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import PanelBus
from agent.supervisor import Part, Supervisor
from agent.uplink import Uplink
from drivers.bus import BusWorker
from drivers.panel import PanelReader

if TYPE_CHECKING:
    from vision.detector import Detector

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
    outbox: Outbox | None = None
    commands: dict[str, asyncio.Queue[Command]] = field(default_factory=dict)  # device -> its bus
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

    def route_command(self, command: Command) -> None:
        """Hand an engine command to the worker of the bus the target device is on."""
        queue = self.commands.get(command.target)
        if queue is None:
            log.error("command %s for unknown device %s dropped", command.action, command.target)
            return
        try:
            queue.put_nowait(command)
        except asyncio.QueueFull:
            log.error("command queue of %s full; %s dropped", command.target, command.action)

    async def close(self) -> None:
        """Release what outlives the parts (the outbox's database)."""
        for task in list(self._pending):
            await asyncio.gather(task, return_exceptions=True)
        if self.outbox is not None:
            await self.outbox.close()

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


def build_agent(
    site: LoadedSite,
    clock: Clock,
    sink: DecisionSink | None = None,
    *,
    detector: Detector | None = None,
) -> Agent:
    """Create every configured part.

    ``sink`` replaces the durable outbox (tests); then no uplink is started
    either, since the uplink drains the outbox. ``detector`` replaces the
    shipped model (tests).
    """
    cfg = site.config
    outbox: Outbox | None = None
    if sink is None:
        storage = cfg.storage
        outbox = Outbox(
            storage.state_dir / "outbox.db",
            max_rows=storage.outbox_max_rows,
            max_bytes=int(storage.outbox_max_mb * 1024 * 1024),
            clock=clock,
        )
        sink = outbox
    agent = Agent(site=site, clock=clock, sink=sink, outbox=outbox)

    for bus in cfg.buses:
        if isinstance(bus, PanelBus):
            agent.parts.append(PanelReader(bus, site, agent.observations, clock))
            continue
        worker = BusWorker(bus, site, agent.observations, clock)
        agent.parts.append(worker)
        for dev in bus.devices:
            agent.commands[dev.name] = worker.commands

    if cfg.cameras:
        # imported here: OpenCV, onnxruntime and numpy cost ~50 MB of RSS, which
        # a gateway without cameras should not carry (bench/footprint.py)
        from vision.camera import CameraWorker
        from vision.detector import Detector

        # one model for every camera: onnxruntime sessions are safe to share
        # between threads, and one copy keeps memory small
        det = detector or Detector.load(threads=1)
        for cam in cfg.cameras:
            agent.parts.append(CameraWorker(cam, det, agent.observations, clock))

    agent.parts.append(
        EngineRunner.for_site(site, agent.observations, agent.sink, agent.route_command, clock)
    )
    if outbox is not None and cfg.uplink is not None:
        agent.parts.append(Uplink(cfg.uplink, cfg, outbox, clock, __version__))
    # Health watches agent.parts itself (the live list); it sends READY=1 and
    # feeds the watchdog only while every part makes progress.
    attach_health(agent.parts, site, clock)
    return agent
