"""Wiring: builds the agent's parts from a loaded site config.

Data flows one way: drivers and cameras put observations on one queue; the
engine turns them into decisions (and, rarely, commands back to one bus
worker); decisions go to the decision sink (the durable outbox), and the
uplink drains the outbox. This module only connects those pieces; each lives
in its own module and knows nothing of the others' internals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from agent import __version__
from agent.clock import Clock
from agent.engine import EngineRunner
from agent.events import (
    Command,
    Decision,
    DecisionType,
    Observation,
    gateway_decision,
)
from agent.health import METRICS, Health
from agent.health import attach as attach_health
from agent.outbox import Outbox, SavedState
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import PanelBus
from agent.supervisor import Part, Supervisor
from agent.uplink import Uplink
from drivers.bus import BusWorker
from drivers.panel import PanelReader

if TYPE_CHECKING:  # vision (OpenCV, onnxruntime: ~50 MB) is imported only when cameras exist
    from vision.camera import CameraWorker
    from vision.detector import Detector

log = logging.getLogger(__name__)

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


def _load_model(choice: str | Path) -> tuple[Detector | None, str | None]:
    """The configured vision model, or, when it cannot be loaded (missing, damaged),
    the shipped one, with what went wrong; (None, problem) when none loads. A
    broken model file must never stop the gateway: detectors matter more."""
    from vision.detector import DEFAULT_MODEL, Detector, ModelError, model_path

    wanted = model_path(choice)
    try:
        return Detector.load(wanted, threads=1), None
    except ModelError as e:
        first = str(e)
    if wanted != DEFAULT_MODEL:
        try:
            det = Detector.load(DEFAULT_MODEL, threads=1)
        except ModelError:
            pass
        else:
            problem = (
                f"vision model {wanted.name} unusable ({first}); "
                f"cameras run on {DEFAULT_MODEL.name}"
            )
            log.error("%s: replace %s or fix vision.model in the site config", problem, wanted)
            return det, problem
    problem = f"no usable vision model ({first}); cameras cannot confirm anything"
    fix = (
        "reinstall firegate" if wanted == DEFAULT_MODEL else f"replace {wanted} or fix vision.model"
    )
    log.error("%s: %s", problem, fix)
    return None, problem


def _is_camera(part: Part) -> TypeGuard[CameraWorker]:
    mod = sys.modules.get("vision.camera")  # not imported: no camera configured
    return mod is not None and isinstance(part, mod.CameraWorker)


def _jpeg(image: Any) -> bytes | None:
    from vision.camera import snapshot_jpeg  # loaded already: a camera exists

    return snapshot_jpeg(image, None)


def _status_of(part: Part) -> Any:
    fn = getattr(part, "status", None)
    return fn() if callable(fn) else None


class CountingSink:
    """Counts decisions by type (metrics), then hands them to the real sink."""

    def __init__(self, inner: DecisionSink) -> None:
        self.inner = inner

    async def submit(self, decision: Decision) -> None:
        METRICS.decisions.inc(type=decision.type.value)
        await self.inner.submit(decision)

    async def submit_batch(self, decisions: list[Decision], state: SavedState | None) -> bool:
        """The inner sink's batch (one transaction with ``state``), or one by one
        (False: ``state`` was not stored)."""
        for d in decisions:
            METRICS.decisions.inc(type=d.type.value)
        batch = getattr(self.inner, "submit_batch", None)
        if batch is not None:
            return bool(await batch(decisions, state))
        for d in decisions:
            await self.inner.submit(d)
        return False

    async def saved_state(self, name: str) -> SavedState | None:
        read = getattr(self.inner, "saved_state", None)
        return await read(name) if read is not None else None


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
    # found while building (a damaged vision model): a FAULT each when the supervisor starts
    startup_faults: list[str] = field(default_factory=list)
    gb_outbox: Outbox | None = None  # the GB/T 26875.3 uplink's own, beside MQTT's

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
        for reason in self.startup_faults:
            self._report(DecisionType.FAULT, "vision", reason)
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

    def collect_metrics(self) -> None:
        """Mirror the parts' own counters into the metrics registry (at scrape time,
        so that parts keep no metrics code on their hot paths)."""
        for part in self.parts:
            if isinstance(part, BusWorker):
                for name, dev in part.status()["devices"].items():
                    METRICS.polls.set_total(
                        dev["polls_ok"] + dev["polls_failed"], bus=part.name, device=name
                    )
                    METRICS.poll_errors.set_total(
                        dev["polls_failed"], bus=part.name, device=name, error="failed"
                    )
                    METRICS.device_condition.set(
                        1.0 if dev["offline"] else 0.0, device=name, condition="offline"
                    )
            elif _is_camera(part):
                st = part.status()
                METRICS.frames.set_total(st["frames_analysed"], camera=part.name)
                for cond in ("stale", "frozen", "offline"):
                    METRICS.device_condition.set(
                        1.0 if cond in st["faults"] else 0.0, device=part.name, condition=cond
                    )
            elif isinstance(part, Uplink):
                METRICS.uplink_published.set_total(part.published)
                for kind, n in part.refused_by_kind.items():
                    METRICS.uplink_refused.set_total(n, topic=kind)
        if self.outbox is not None:
            METRICS.outbox_depth.set(self.outbox.status()["rows"])

    async def handle_request(self, name: str, body: dict[str, Any]) -> Decision | None:
        """The answer to a downlink request (the uplink has already filtered it to the
        two allowed: ``snapshot`` and ``state``), a STATS decision the uplink publishes
        once without storing it (agent.downlink); None: no answer. Nothing here
        changes what the gateway does about a fire."""
        now_w, now_m = self.clock.wall(), self.clock.monotonic()
        if name == "state":
            state = {p.name: _status_of(p) for p in self.parts}
            return gateway_decision(
                DecisionType.STATS,
                "state on request",
                part="agent",
                wall=now_w,
                mono=now_m,
                request="state",
                state=state,
            )
        camera = str(body.get("camera", ""))
        worker = next((p for p in self.parts if _is_camera(p) and p.name == camera), None)
        if worker is None:
            log.warning("downlink: snapshot of unknown camera %r ignored", camera)
            return None
        frame = worker.capture.latest()
        if frame is None or now_m - frame.mono > worker.cam.stale_after_s:
            reason, jpeg = f"no fresh frame from camera {camera}", None
        else:
            reason, jpeg = (
                f"snapshot of camera {camera} on request",
                _jpeg(frame.image),
            )
        decision = gateway_decision(
            DecisionType.STATS,
            reason,
            part="agent",
            wall=now_w,
            mono=now_m,
            request="snapshot",
            camera=camera,
        )
        return dataclasses.replace(
            decision, zone=worker.cam.zone, cameras=(camera,), snapshot_jpeg=jpeg
        )

    async def close(self) -> None:
        """Release what outlives the parts (the outbox's database)."""
        for task in list(self._pending):
            await asyncio.gather(task, return_exceptions=True)
        if self.outbox is not None:
            await self.outbox.close()
        if self.gb_outbox is not None:
            await self.gb_outbox.close()

    # A crashed part is a fault of the gateway itself, reported like any other.
    def _part_fault(self, part: str, error: str) -> None:
        self._report(DecisionType.FAULT, part, f"gateway part {part} failed: {error}")

    def _part_restore(self, part: str) -> None:
        self._report(DecisionType.RESTORE, part, f"gateway part {part} running again")

    def _report(self, type_: DecisionType, part: str, reason: str) -> None:
        d = gateway_decision(
            type_, reason, part=part, wall=self.clock.wall(), mono=self.clock.monotonic()
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
    gb_outbox: Outbox | None = None
    handoff: Part | None = None
    if outbox is not None and cfg.gb26875 is not None:
        # GB/T 26875.3 beside MQTT: its own outbox, fed with every decision;
        # alone: it drains the one outbox
        gb_outbox = outbox
        if cfg.uplink is not None:
            from agent.gb26875.sink import GB_OUTBOX_FILE, BothOutboxes

            gb_outbox = Outbox(
                cfg.storage.state_dir / GB_OUTBOX_FILE,
                max_rows=outbox.max_rows,
                max_bytes=outbox.max_bytes,
                clock=clock,
            )
            sink = handoff = BothOutboxes(outbox, gb_outbox)
    agent = Agent(site=site, clock=clock, sink=CountingSink(sink), outbox=outbox)
    if gb_outbox is not outbox:
        agent.gb_outbox = gb_outbox
    if handoff is not None:  # finishes the hand-offs to both outboxes a kill -9 cut
        agent.parts.append(handoff)
    METRICS.collectors["parts"] = agent.collect_metrics

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
        from vision.camera import CameraWithoutModel, CameraWorker

        # one model for every camera: onnxruntime sessions are safe to share
        # between threads, and one copy keeps memory small
        det, problem = (detector, None) if detector else _load_model(cfg.vision.model)
        if problem is not None:
            agent.startup_faults.append(problem)
        for cam in cfg.cameras:
            if det is None:
                agent.parts.append(
                    CameraWithoutModel(cam, problem or "", agent.observations, clock)
                )
            else:
                from vision.scene import scene_path

                scene_file = scene_path(cfg.storage.state_dir, cam.name)
                agent.parts.append(
                    CameraWorker(cam, det, agent.observations, clock, scene_file=scene_file)
                )

    agent.parts.append(
        EngineRunner.for_site(site, agent.observations, agent.sink, agent.route_command, clock)
    )
    if outbox is not None and cfg.uplink is not None:
        hook = agent.handle_request if cfg.uplink.downlink else None
        agent.parts.append(Uplink(cfg.uplink, cfg, outbox, clock, __version__, on_request=hook))
    if gb_outbox is not None and cfg.gb26875 is not None:
        from agent.gb26875.client import Gb26875Uplink
        from agent.gb26875.mapping import directory_for

        agent.parts.append(
            Gb26875Uplink(
                cfg.gb26875,
                cfg,
                gb_outbox,
                clock,
                __version__,
                report=agent.sink.submit,
                directory=directory_for(site),
            )
        )
    # Health watches agent.parts itself (the live list); it sends READY=1 and
    # feeds the watchdog only while every part makes progress.
    attach_health(agent.parts, site, clock)
    return agent
