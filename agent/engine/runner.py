"""The engine's imperative shell: a Part that feeds the pure engine.

It takes observations from the inbox, feeds them to the engine with the
injected clock's time, ticks the engine every ``tick_s``, hands decisions to
the decision sink (the durable outbox), commands to the ``commands`` callable
(which routes them to the right bus worker), and suppressed nuisances to the
local nuisance log. Nothing here decides anything.

Failure handling: a decision the sink refuses (raises) is kept in order and
retried on the next iteration, never dropped; a command that cannot be
routed is fed back to the engine as a failed CommandResult, so alarm
verification falls back to the persistence rule and the hard ceiling; a full
disk under the nuisance log is logged and counted, and the engine goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from agent.clock import Clock
from agent.engine.core import Engine, EngineOutput
from agent.engine.nuisance_log import NuisanceLog
from agent.events import Command, CommandResult, Decision, Observation
from agent.siteconfig import LoadedSite

log = logging.getLogger(__name__)

BATCH_MAX = 256  # observations fed between two checks of the tick and the sink
SINK_RETRY_S = 1.0
INCIDENTS_FILE = "incidents.json"  # forwarded fire incidents, kept over a restart
INCIDENTS_REFRESH_S = 60.0  # while one is open, its last activity is saved this often


class DecisionSinkLike(Protocol):
    """Same shape as agent.app.DecisionSink (not imported: app imports the engine)."""

    async def submit(self, decision: Decision) -> None: ...


class EngineRunner:
    """Part "engine". ``run`` runs until cancelled."""

    name = "engine"

    def __init__(
        self,
        engine: Engine,
        inbox: asyncio.Queue[Observation],
        sink: DecisionSinkLike,
        commands: Callable[[Command], None],
        clock: Clock,
        tick_s: float,
        state_dir: Path | None,
        *,
        nuisance_log_max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self.engine = engine
        self.inbox = inbox
        self.sink = sink
        self.commands = commands
        self.clock = clock
        self.tick_s = tick_s
        self.nuisance_log = (
            NuisanceLog(state_dir, max_bytes=nuisance_log_max_bytes) if state_dir else None
        )
        self.progress_mono = clock.monotonic()
        self._pending: deque[Decision] = deque()
        self._next_tick_mono = 0.0
        self._sink_errors = 0
        self._command_errors = 0
        self._retry_after_mono = 0.0
        self._seeded = False
        self._incidents_path = Path(state_dir) / INCIDENTS_FILE if state_dir else None
        self._incidents_saved: set[str] = set()
        self._incidents_saved_mono = -INCIDENTS_REFRESH_S
        self._incidents_error = ""

    @classmethod
    def for_site(
        cls,
        site: LoadedSite,
        inbox: asyncio.Queue[Observation],
        sink: DecisionSinkLike,
        commands: Callable[[Command], None],
        clock: Clock,
    ) -> EngineRunner:
        """The runner as the site config asks for it: tick, state_dir, log size."""
        cfg = site.config
        return cls(
            Engine(site),
            inbox,
            sink,
            commands,
            clock,
            cfg.engine.tick_s,
            cfg.storage.state_dir,
            nuisance_log_max_bytes=int(cfg.engine.nuisance_log_max_mb * 1024 * 1024),
        )

    async def run(self) -> None:
        if self.nuisance_log is not None and not self._seeded:
            # nuisance counts per detector survive a restart (read off the loop)
            try:
                totals = await asyncio.to_thread(self.nuisance_log.totals)
            except OSError as e:
                log.error("cannot read the nuisance log %s: %s", self.nuisance_log.path, e)
                totals = {}
            self.engine.seed_nuisance_totals(totals)
            self._seeded = True
            self._resume_incidents()
        self._next_tick_mono = self.clock.monotonic()
        while True:
            now = self.clock.monotonic()
            wait_s = max(0.0, self._next_tick_mono - now)
            obs: Observation | None = None
            try:
                async with asyncio.timeout(wait_s / self.clock.speed):
                    obs = await self.inbox.get()
            except TimeoutError:
                pass
            if obs is not None:
                self._feed(obs)
                for _ in range(BATCH_MAX):  # drain what is already there
                    try:
                        self._feed(self.inbox.get_nowait())
                    except asyncio.QueueEmpty:
                        break
            now = self.clock.monotonic()
            if now >= self._next_tick_mono:
                self._handle(self.engine.tick(now, self.clock.wall()))
                # skip missed ticks rather than running a burst of them
                self._next_tick_mono = max(self._next_tick_mono + self.tick_s, now)
            await self._flush()
            self._save_incidents()
            self.progress_mono = self.clock.monotonic()

    # A restart during a fire (power cut, watchdog) must not turn the detector
    # that is still in alarm into a second FIRE_ALARM with a new id: the
    # forwarded incidents are saved and resumed. A lost file only costs that
    # duplicate, never an alarm, so writes are plain (no fsync) and rare.
    def _resume_incidents(self) -> None:
        if self._incidents_path is None:
            return
        try:
            saved = json.loads(self._incidents_path.read_text())
            items = saved.items() if isinstance(saved, dict) else ()
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.error("cannot read %s (%s); open incidents start afresh", self._incidents_path, e)
            return
        now, wall = self.clock.monotonic(), self.clock.wall()
        for zone, inc in items:
            try:
                first, last = float(inc["first_seen_wall"]), float(inc["last_activity_wall"])
            except (KeyError, TypeError, ValueError):
                continue
            if self.engine.resume_incident(str(zone), first, last, now, wall):
                log.info("fire incident in zone %s resumed after restart (already forwarded)", zone)

    def _save_incidents(self) -> None:
        if self._incidents_path is None:
            return
        now, wall = self.clock.monotonic(), self.clock.wall()
        open_ = self.engine.confirmed_incidents(now, wall)
        due = bool(open_) and now - self._incidents_saved_mono >= INCIDENTS_REFRESH_S
        if set(open_) == self._incidents_saved and not due:
            return
        tmp = self._incidents_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(open_))
            os.replace(tmp, self._incidents_path)
        except OSError as e:
            if not self._incidents_error:
                log.error("cannot save open incidents to %s: %s", self._incidents_path, e)
            self._incidents_error = str(e)
            return
        self._incidents_error = ""
        self._incidents_saved = set(open_)
        self._incidents_saved_mono = now

    def _feed(self, obs: Observation) -> None:
        self._handle(self.engine.feed(obs, self.clock.monotonic(), self.clock.wall()))

    def _handle(self, out: EngineOutput) -> None:
        self._pending.extend(out.decisions)
        for cmd in out.commands:
            try:
                self.commands(cmd)
            except Exception as e:  # no route to the device: verification must fall back
                self._command_errors += 1
                log.warning("cannot route command %s to %s: %s", cmd.action, cmd.target, e)
                result = CommandResult(
                    source=cmd.target,
                    zone="",
                    wall=self.clock.wall(),
                    mono=self.clock.monotonic(),
                    command_id=cmd.id,
                    action=cmd.action,
                    ok=False,
                    detail=f"not routed: {e}",
                )
                self._pending.extend(
                    self.engine.feed(result, self.clock.monotonic(), self.clock.wall()).decisions
                )
        if out.suppressed:
            for s in out.suppressed:
                log.info("held back %s in %s: %s", s.source, s.zone, s.reason)
            if self.nuisance_log is not None:
                self.nuisance_log.append(out.suppressed)

    async def _flush(self) -> None:
        if self._pending and self.clock.monotonic() < self._retry_after_mono:
            return
        while self._pending:
            d = self._pending[0]
            try:
                await self.sink.submit(d)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._sink_errors += 1
                self._retry_after_mono = self.clock.monotonic() + SINK_RETRY_S
                log.error(
                    "decision sink refused %s %s (%s); kept, retrying in %.0f s",
                    d.type.value,
                    d.zone,
                    e,
                    SINK_RETRY_S,
                )
                return
            self._pending.popleft()

    def status(self) -> dict[str, Any]:
        st = self.engine.status()
        return {
            "inbox": self.inbox.qsize(),
            "pending_decisions": len(self._pending),
            "sink_errors": self._sink_errors,
            "command_errors": self._command_errors,
            "nuisance_log": self.nuisance_log.status() if self.nuisance_log else None,
            "open_incidents": st["open_incidents"],
            # one line per zone in `firegate status`
            "zones": {
                z: "fire alarm" if confirmed else "alarm, confirming"
                for z, confirmed in st["open_incidents"].items()
            },
            "counters": st["counters"],
        }
