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

Restarts: every episode the centre was told is open (a fire incident, an
electrical pre-alarm, a fault), every alarm still being confirmed (with its
first-alarm time, verification and "verifying" zone state) and each
detector's trust record are saved in ``<state_dir>/episodes.json`` with the
ids of their decisions whenever that set changes (and when a fire incident's
last detector goes quiet; how an alarm being confirmed went on since, and the
trust records, at most every ``DETAIL_SAVE_S``), after the decisions are in
the outbox. Where the sink stores batches (the outbox, ``submit_batch``), the
same state also goes into the outbox in the transaction that stores the
decisions it reflects, so a kill or a power cut can never leave decisions
stored and the state that knows them unsaved (which reopened an episode the
centre had under a new id); at a restart the newer of the two (``saved_seq``)
is used;
a restarted runner hands it back to the engine (``Engine.restore``), so an
episode still active is not forwarded again under a new id and one that
ended meanwhile gets its RESTORE. Every file write (this one, the nuisance
log) runs on the state folder's writer thread (``agent.diskwriter``): a
stalled disk never stops the loop, and a write stuck for
``DISK_STALL_FAULT_S`` is forwarded as a FAULT of the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agent.clock import Clock
from agent.diskwriter import DiskWriter, write_file_atomic, writer_for
from agent.engine.core import RESTART_FAULT_GRACE_S, Engine, EngineOutput
from agent.engine.nuisance_log import NuisanceLog
from agent.events import (
    Command,
    CommandResult,
    Decision,
    DecisionType,
    Observation,
    gateway_decision,
)
from agent.outbox import SavedState
from agent.siteconfig import LoadedSite

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_MAX = 256  # observations fed between two checks of the tick and the sink
SINK_RETRY_S = 1.0
EPISODES_FILE = "episodes.json"  # open episodes, alarms being confirmed, trust, over a restart
INCIDENTS_FILE = "incidents.json"  # the format before episodes.json (fire incidents only)
READ_TIMEOUT_S = 10.0  # a state file not read by then (stalled disk): start without it
STOP_WRITE_TIMEOUT_S = 2.0  # at a stop, wait this long for the last state to reach the disk
DISK_STALL_FAULT_S = 10.0  # a state-folder write running this long is a FAULT
# An alarm being confirmed changes at every edge of its detectors (a flickering
# one: every few seconds, for hours) and a trust record at every short trip:
# such details are saved at most this often (an SD card's wear); an episode,
# or an alarm being confirmed, that opens or ends is saved at once.
DETAIL_SAVE_S = 10.0
STATE_NAME = "episodes"  # the runner's state in the outbox (Outbox.saved_state)


class DecisionSinkLike(Protocol):
    """Same shape as agent.app.DecisionSink (not imported: app imports the engine)."""

    async def submit(self, decision: Decision) -> None: ...


class BatchSinkLike(DecisionSinkLike, Protocol):
    """A sink that stores decisions and the runner's state in one transaction
    (agent.outbox.Outbox.submit_batch, and the sinks that wrap an outbox)."""

    async def submit_batch(self, decisions: list[Decision], state: SavedState | None) -> bool: ...

    async def saved_state(self, name: str) -> SavedState | None: ...


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
        fault_grace_s: float = RESTART_FAULT_GRACE_S,
        runtime_dir: Path | None = None,
    ) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self.engine = engine
        self.inbox = inbox
        self.sink = sink
        self.commands = commands
        self.clock = clock
        self.tick_s = tick_s
        self.fault_grace_s = fault_grace_s
        self.nuisance_log = (
            NuisanceLog(state_dir, max_bytes=nuisance_log_max_bytes) if state_dir else None
        )
        self.writer: DiskWriter | None = writer_for(Path(state_dir)) if state_dir else None
        self.progress_mono = clock.monotonic()
        self._pending: deque[Decision] = deque()
        self._next_tick_mono = 0.0
        self._sink_errors = 0
        self._command_errors = 0
        self._retry_after_mono = 0.0
        self._seeded = False
        self._state_dir = Path(state_dir) if state_dir else None
        # where the state goes when the state disk refuses it: systemd's
        # RuntimeDirectory (RAM, kept over a restart of the agent)
        run = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        self._runtime_dir = runtime_dir or (Path(run) if run and state_dir else None)
        self._episodes_key = ""  # what was last handed to the writer
        self._episodes_coarse = ""  # the same without the details (_episodes_key)
        self._details_due_mono = float("-inf")
        self._episodes_error = ""
        self._disk_stalled = False
        self._saved_seq = 0  # counts every state saved (file or outbox): the higher is newer
        self._batch_key = ""  # the state last stored in the outbox with decisions

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
            fault_grace_s=restart_fault_grace_s(site),
        )

    async def run(self) -> None:
        if not self._seeded:
            self._seeded = True
            if self.nuisance_log is not None:
                # nuisance counts per detector survive a restart (read off the loop)
                totals = await self._read_off_loop(self.nuisance_log.totals, self.nuisance_log.path)
                self.engine.seed_nuisance_totals(totals or {})
            await self._resume_episodes()
        self._next_tick_mono = self.clock.monotonic()
        try:
            while True:
                await self._step()
        except asyncio.CancelledError:
            # a clean stop (SIGTERM, an upgrade): the state as it is now, on disk
            self._save_episodes(force=True)
            if self.writer is not None:
                await asyncio.to_thread(self.writer.wait_idle, STOP_WRITE_TIMEOUT_S)
            raise

    async def _step(self) -> None:
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
            self._check_disk()
            # skip missed ticks rather than running a burst of them
            self._next_tick_mono = max(self._next_tick_mono + self.tick_s, now)
        await self._flush()
        self._save_episodes()
        self.progress_mono = self.clock.monotonic()

    async def _read_off_loop(self, fn: Callable[[], T], path: Path) -> T | None:
        """``fn()`` on a thread; None (logged) when it fails or the disk stalls."""
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                return await asyncio.to_thread(fn)
        except TimeoutError:
            log.error(
                "reading %s took more than %.0f s (stalled disk?); starting without it",
                path,
                READ_TIMEOUT_S,
            )
        except (OSError, ValueError) as e:
            log.error("cannot read %s (%s); starting without it", path, e)
        return None

    # A restart (power cut, watchdog, upgrade) must neither forward again what
    # the centre already has (a new id that de-duplication cannot catch) nor
    # leave an episode without its RESTORE. Saved after the decisions are in
    # the outbox: a kill between the two costs at worst one duplicate, never
    # a decision. fsynced: written only when an episode opens or ends.
    async def _resume_episodes(self) -> None:
        if self._state_dir is None:
            return
        path = self._state_dir / EPISODES_FILE
        legacy = self._state_dir / INCIDENTS_FILE
        spare = self._runtime_dir / EPISODES_FILE if self._runtime_dir else None
        doc = await self._read_off_loop(lambda: _read_json(path, legacy, spare), path)
        stored = await self._outbox_state()
        if stored is not None and (doc is None or "version" not in doc or _newer(stored, doc)):
            log.info(
                "open alarms and faults taken from the outbox (saved with the last decisions, "
                "newer than %s)",
                path,
            )
            doc = stored
        if doc is not None:
            self._saved_seq = max(self._saved_seq, _seq(doc))
        if not doc:
            return
        now, wall = self.clock.monotonic(), self.clock.wall()
        if "version" not in doc:  # incidents.json of an older agent: fire incidents only
            for zone, inc in doc.items():
                try:
                    first, last = float(inc["first_seen_wall"]), float(inc["last_activity_wall"])
                except (KeyError, TypeError, ValueError):
                    continue
                self.engine.resume_incident(str(zone), first, last, now, wall)
            return
        out = self.engine.restore(doc, now, wall, fault_grace_s=self.fault_grace_s)
        st = self.engine.status()
        log.info(
            "carried over the restart: %d fire incident(s), %d alarm(s) being confirmed, "
            "%d pre-alarm(s), %d fault(s); %d ended while the agent was down",
            sum(1 for c in st["open_incidents"].values() if c),
            sum(1 for c in st["open_incidents"].values() if not c),
            len(st["electrical_prealarms"]),
            len(st["active_faults"]),
            len(out.decisions),
        )
        self._handle(out)

    async def _outbox_state(self) -> dict[str, Any] | None:
        """The state stored with the last decisions in the outbox, if the sink keeps one."""
        read = getattr(self.sink, "saved_state", None)
        if read is None:
            return None
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                got: SavedState | None = await read(STATE_NAME)
        except TimeoutError:
            log.error("reading the outbox's saved state took more than %.0f s", READ_TIMEOUT_S)
            return None
        if got is None:
            return None
        try:
            doc = json.loads(got.body)
        except ValueError as e:
            log.error("the outbox's saved state is damaged (%s); skipped", e)
            return None
        return doc if isinstance(doc, dict) else None

    def _save_episodes(self, *, force: bool = False) -> None:
        if self._state_dir is None or self.writer is None or self._pending:
            return  # not before every decision it reflects is in the outbox
        now = self.clock.monotonic()
        snap = self.engine.snapshot(now, self.clock.wall())
        key, coarse = _episodes_key(snap), _episodes_key(snap, details=False)
        if key == self._batch_key and not force:
            self._episodes_key = key  # stored with its decisions already: no file write
            return
        if key == self._episodes_key and not force:
            return
        if coarse == self._episodes_coarse and now < self._details_due_mono and not force:
            return  # only details changed, saved a moment ago: later (next step)
        self._episodes_key, self._episodes_coarse = key, coarse
        self._details_due_mono = now + DETAIL_SAVE_S
        path = self._state_dir / EPISODES_FILE
        self._saved_seq += 1
        data = json.dumps({**snap, "saved_seq": self._saved_seq}, separators=(",", ":")).encode()

        spare = self._runtime_dir / EPISODES_FILE if self._runtime_dir else None

        def write() -> None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_file_atomic(path, data, fsync=True)
                for old in (path.with_name(INCIDENTS_FILE), spare):
                    if old is not None and old.exists():
                        old.unlink()  # superseded; never read back over newer state
            except OSError as e:
                kept = _keep_in_ram(spare, data)
                if not self._episodes_error:
                    log.error(
                        "cannot save open alarms and faults to %s (%s): %s",
                        path,
                        e,
                        f"kept in RAM ({spare}) over a restart, not a reboot"
                        if kept
                        else "after a restart they may be forwarded again or miss their RESTORE",
                    )
                self._episodes_error = str(e)
                if not kept:
                    self._episodes_key = ""  # try again at the next change or tick
                return
            if self._episodes_error:
                log.info("open alarms and faults saved to %s again", path)
            self._episodes_error = ""

        self.writer.put(EPISODES_FILE, write)

    def _check_disk(self) -> None:
        """A state-folder write stuck this long is a FAULT (alarms still flow)."""
        if self.writer is None:
            return
        stalled_s = self.writer.stalled_s()
        now, wall = self.clock.monotonic(), self.clock.wall()
        if not self._disk_stalled and stalled_s >= DISK_STALL_FAULT_S:
            self._disk_stalled = True
            reason = (
                f"state disk stalled: a write to {self._state_dir} has not finished for "
                f"{stalled_s:.0f} s; alarms are still forwarded from memory"
            )
            log.error("%s (failing SD card?)", reason)
            self._pending.append(
                gateway_decision(
                    DecisionType.FAULT,
                    reason,
                    part="disk",
                    wall=wall,
                    mono=now,
                    folder=str(self._state_dir),
                    stalled_s=round(stalled_s, 1),
                )
            )
        elif self._disk_stalled and stalled_s < DISK_STALL_FAULT_S / 2:
            self._disk_stalled = False
            log.warning("state disk %s writes again", self._state_dir)
            self._pending.append(
                gateway_decision(
                    DecisionType.RESTORE,
                    "state disk writes again",
                    part="disk",
                    wall=wall,
                    mono=now,
                    folder=str(self._state_dir),
                )
            )

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
            if self.nuisance_log is not None and self.writer is not None:
                entries, nlog = list(out.suppressed), self.nuisance_log
                self.writer.put(None, lambda: nlog.append(entries))

    async def _flush(self) -> None:
        if self._pending and self.clock.monotonic() < self._retry_after_mono:
            return
        if self._pending and self._state_dir is not None and hasattr(self.sink, "submit_batch"):
            await self._flush_batch(self.sink)  # type: ignore[arg-type]
            return
        while self._pending:
            d = self._pending[0]
            try:
                await self.sink.submit(d)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._refused(f"{d.type.value} {d.zone}", e)
                return
            self._pending.popleft()

    def _refused(self, what: str, e: Exception) -> None:
        """The sink raised: keep what it refused, in order, and try again later."""
        self._sink_errors += 1
        self._retry_after_mono = self.clock.monotonic() + SINK_RETRY_S
        log.error("decision sink refused %s (%s); kept, retrying in %.0f s", what, e, SINK_RETRY_S)

    async def _flush_batch(self, sink: BatchSinkLike) -> None:
        """Every pending decision in one transaction, with the state that knows
        them (unless the outbox holds that state already)."""
        batch = list(self._pending)
        snap = self.engine.snapshot(self.clock.monotonic(), self.clock.wall())
        key = _episodes_key(snap)
        state = None
        if key != self._batch_key:
            seq = self._saved_seq + 1
            body = json.dumps({**snap, "saved_seq": seq}, separators=(",", ":")).encode()
            state = SavedState(STATE_NAME, seq, body)
        try:
            stored = await sink.submit_batch(batch, state)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._refused(f"{len(batch)} decision(s)", e)
            return
        for _ in batch:
            self._pending.popleft()
        if state is not None:
            self._saved_seq = max(self._saved_seq, state.seq)
            # not stored (no outbox behind the sink, a refusing or stalled disk):
            # episodes.json is written as before
            self._batch_key = key if stored else ""

    def status(self) -> dict[str, Any]:
        st = self.engine.status()
        return {
            "inbox": self.inbox.qsize(),
            "pending_decisions": len(self._pending),
            "sink_errors": self._sink_errors,
            "command_errors": self._command_errors,
            "nuisance_log": self.nuisance_log.status() if self.nuisance_log else None,
            "disk": self.writer.status() if self.writer else None,
            "disk_stalled": self._disk_stalled,
            "open_incidents": st["open_incidents"],
            # one line per zone in `firegate status`
            "zones": {
                z: "fire alarm" if confirmed else "alarm, confirming"
                for z, confirmed in st["open_incidents"].items()
            },
            "counters": st["counters"],
        }


def _read_json(path: Path, legacy: Path, spare: Path | None) -> dict[str, Any] | None:
    """The saved episodes, the newer of the state folder's and the copy kept
    in RAM when the disk refused it (or an older agent's incidents.json)."""
    docs: list[dict[str, Any]] = []
    for p in (path, spare, legacy):
        if p is None:
            continue
        try:
            doc = json.loads(p.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            log.error("cannot read %s (%s); skipped", p, e)
            continue
        if not isinstance(doc, dict):
            log.error("cannot read %s (not a JSON object); skipped", p)
            continue
        if p is legacy and docs:
            break
        docs.append(doc)
    if len(docs) <= 1:
        return docs[0] if docs else None
    newest = docs[0]
    for d in docs[1:]:
        if _newer(d, newest):
            newest = d
    return newest


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether saved state ``a`` is newer than ``b``: by their ``saved_seq``, or
    by the time they were written when one has none (an older agent, e.g.
    after a downgrade and an upgrade, wrote it)."""
    if _seq(a) >= 0 and _seq(b) >= 0:
        return _seq(a) > _seq(b)
    return _wall(a) > _wall(b)


def _wall(doc: dict[str, Any]) -> float:
    try:
        return float(doc.get("wall", 0.0) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _seq(doc: dict[str, Any]) -> int:
    """A saved state's ``saved_seq`` (-1 for one saved before it existed)."""
    try:
        return int(doc.get("saved_seq", -1))
    except (TypeError, ValueError):
        return -1


def _keep_in_ram(spare: Path | None, data: bytes) -> bool:
    if spare is None:
        return False
    try:
        write_file_atomic(spare, data)
    except OSError:
        return False
    return True


def _episodes_key(snap: dict[str, Any], *, details: bool = True) -> str:
    """What decides a rewrite: the episodes, without the time of the snapshot,
    and a fire incident's last activity only once it went quiet (while a
    detector is in alarm, "now" is its last activity, whenever we stop).
    Without ``details``: which alarms are being confirmed (zone, first alarm,
    "verifying" state, resets done), not how each detector's alarm went since,
    nor the trust records."""
    fires = [
        {**f, "last_activity_wall": None if f["active"] else round(f["last_activity_wall"])}
        for f in snap["fires"]
    ]
    doc = {**snap, "wall": None, "mono": None, "fires": fires}
    if not details:
        doc["trust"] = None
        doc["confirming"] = [
            [c["zone"], c["first"], c["state_id"], sorted(c["verifications"])]
            for c in snap["confirming"]
        ]
    return json.dumps(doc, sort_keys=True)


def restart_fault_grace_s(site: LoadedSite) -> float:
    """How long after a start a fault still present must have been reported
    again by its source: the slowest offline detection of a polled device, a
    camera's stale or frozen time; half as much again and 5 s of margin, at
    least 10 s. (A panel's silence fault is left out: up to a day.) A fault carried over a restart that
    nothing re-reports by then is taken as cleared (Engine.restore)."""
    from agent.siteconfig.models import PanelBus

    cfg = site.config
    worst = 0.0
    for bus in cfg.buses:
        if isinstance(bus, PanelBus):
            continue  # a silence fault (up to a day) would hold every other RESTORE
        per_poll = bus.timeout_s * (bus.retries + 1) + bus.turnaround_s
        for dev in bus.devices:
            worst = max(worst, bus.offline_after * (dev.poll_interval_s + per_poll))
    for cam in cfg.cameras:
        worst = max(worst, cam.stale_after_s, cam.frozen_after_s)
    return max(10.0, worst * 1.5 + 5.0)
