"""One worker per Modbus bus (serial line or TCP host): polls its devices, runs commands.

Scheduling: every device has one due time on a fixed grid of its poll
interval; the worker always serves the device that is due earliest, one
request at a time, so a saturated bus serves its devices round-robin and
nothing ever queues up. Grid points missed while the bus was busy are
skipped, never made up with catch-up polls (see ``next_due``): back-pressure
is impossible by construction.

Failures: a request that gets no valid reply is retried ``retries`` times;
after ``offline_after`` failed polls in a row a device is reported OFFLINE
and polled only every ``offline_poll_s`` (without retries) until it answers,
so a dead device costs the others one timeout per ``offline_poll_s``.
Retries are only spent on a device whose previous poll succeeded.

A lost port (USB adapter unplugged, TCP connection refused) is reopened with
exponential backoff; polls that fall due meanwhile fail at once, so the
devices go OFFLINE within their normal time, with the port's error as detail.

Late replies: a device whose replies come after the timeout has not answered
(its late replies are discarded, drivers/link.py). Its retry and its next poll
are scheduled after the link's watch for the late reply, the other devices
being served meanwhile. ``LATE_FAULT_COUNT`` late replies within
``LATE_WINDOW_S`` make it OFFLINE (the gateway cannot poll it reliably), with
the delay seen and what to change, even when some of its polls succeed; it is
back once ``LATE_WINDOW_S`` passed without a late reply and a poll succeeds;
meanwhile the values of its replies in time are still passed on.

Commands (``commands`` queue, filled by the engine) run between polls, in
order, and end with a ``CommandResult`` on the observation queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.clock import Clock
from agent.events import (
    Command,
    CommandResult,
    Condition,
    DeviceKind,
    Observation,
    Reading,
    StateChange,
)
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import DeviceConfig, RtuBus, TcpBus
from drivers import codec, frames
from drivers.frames import DeviceException, ModbusError, PortError
from drivers.link import Link, RtuLink, TcpLink
from drivers.profile import ModbusProfile, Table

log = logging.getLogger(__name__)

MAX_IDLE_WAIT_S = 2.0  # progress_mono moves at least this often
REOPEN_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
COMMAND_QUEUE_MAX = 64
LATE_WINDOW_S = 100.0  # GB/T 45839 5.5.1: a communication fault within 100 s
LATE_FAULT_COUNT = 3  # late replies within LATE_WINDOW_S that make a device OFFLINE


class _RetryLater(Exception):
    """A retry that must wait for the link's watch for a late reply."""

    def __init__(self, wait_s: float, retries_left: int, error: ModbusError) -> None:
        self.wait_s = wait_s
        self.retries_left = retries_left
        self.error = error


@dataclass
class _Device:
    cfg: DeviceConfig
    profile: ModbusProfile
    kind: DeviceKind
    plan: tuple[codec.ReadBlock, ...]
    next_due: float = 0.0
    failures: int = 0
    offline: bool = False
    answered: bool = False
    states: dict[codec.StateKey, bool] = field(default_factory=dict)
    polls_ok: int = 0
    polls_failed: int = 0
    last_error: str = ""
    retries_pending: int | None = None  # a retry deferred past a late-reply watch
    late_mono: deque[float] = field(default_factory=deque)  # clock times of late replies
    late_delay_s: float = 0.0  # the latest late reply came this long after its request
    late_replies: int = 0

    @property
    def interval_s(self) -> float:
        return self.cfg.poll_interval_s


def next_due(due: float, interval_s: float, now: float) -> float:
    """The next poll time on the device's fixed grid after ``now``: a poll that was
    late is not followed by catch-up polls, so over any stretch of time a device
    is polled at most once per interval and a saturated bus builds no backlog."""
    nxt = due + interval_s
    if nxt <= now:
        nxt += (math.floor((now - nxt) / interval_s) + 1) * interval_s
        while nxt <= now:  # floating-point rounding of the line above
            nxt += interval_s
    return nxt


def make_link(bus: RtuBus | TcpBus) -> Link:
    if isinstance(bus, TcpBus):
        return TcpLink(bus.host, bus.port)
    return RtuLink(
        bus.port,
        bus.baudrate,
        bus.parity,
        bus.stopbits,
        bus.bytesize,
        turnaround_s=bus.turnaround_s,
        echo=bus.echo,
    )


class BusWorker:
    """The one worker of a Modbus bus. A Part: ``name`` (the bus name), ``run()``,
    ``progress_mono``, ``status()``; ``commands`` takes ``agent.events.Command``."""

    def __init__(
        self,
        bus: RtuBus | TcpBus,
        site: LoadedSite,
        out: asyncio.Queue[Observation],
        clock: Clock,
        *,
        link: Link | None = None,
    ) -> None:
        self.name = bus.name
        self.bus = bus
        self.out = out
        self.clock = clock
        self.link: Link = link or make_link(bus)
        self.commands: asyncio.Queue[Command] = asyncio.Queue(COMMAND_QUEUE_MAX)
        self.progress_mono = clock.monotonic()
        self.devices: list[_Device] = []
        for d in bus.devices:
            prof = site.modbus_profile(d.profile)
            self.devices.append(
                _Device(d, prof, d.kind or prof.device_kind, codec.plan_reads(prof))
            )
        self._by_name = {d.cfg.name: d for d in self.devices}
        self._reopen_at = 0.0
        self._reopen_failures = 0
        self._port_error = ""
        self.requests = 0
        self.request_errors = 0
        self.readings_dropped = 0

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        now = self.clock.monotonic()
        for i, d in enumerate(self.devices):
            # spread first polls a little so devices do not stay in lock-step
            d.next_due = now + 0.01 * i
        get_cmd: asyncio.Task[Command] | None = None
        try:
            while True:
                now = self.clock.monotonic()
                self.progress_mono = now
                if not self.link.is_open and now >= self._reopen_at:
                    await self._reopen()
                if not self.commands.empty():
                    await self._run_command(self.commands.get_nowait())
                    continue
                dev = min(self.devices, key=lambda d: d.next_due)
                wait_s = dev.next_due - now
                if wait_s > 0:
                    if not self.link.is_open:
                        wait_s = min(wait_s, max(0.0, self._reopen_at - now))
                    if get_cmd is None:
                        get_cmd = asyncio.ensure_future(self.commands.get())
                    done, _ = await asyncio.wait(
                        {get_cmd}, timeout=min(wait_s, MAX_IDLE_WAIT_S) / self.clock.speed
                    )
                    if done:
                        cmd = get_cmd.result()
                        get_cmd = None
                        await self._run_command(cmd)
                    continue
                await self._poll(dev)
        finally:
            if get_cmd is not None:
                get_cmd.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await get_cmd
            self.link.close()

    async def _reopen(self) -> None:
        try:
            await self.link.open()
        except PortError as e:
            delay = REOPEN_BACKOFF_S[min(self._reopen_failures, len(REOPEN_BACKOFF_S) - 1)]
            if self._reopen_failures == 0:
                log.warning("bus %s: %s; retrying with backoff", self.name, e)
            self._reopen_failures += 1
            self._reopen_at = self.clock.monotonic() + delay
            self._port_error = str(e)
            return
        if self._reopen_failures or self._port_error:
            log.info("bus %s: %s open again", self.name, self.link.where)
            # devices that went offline with the port are asked again now,
            # not at their next offline poll (up to offline_poll_s away)
            now = self.clock.monotonic()
            for d in self.devices:
                if d.offline:
                    d.next_due = min(d.next_due, now)
        self._reopen_failures = 0
        self._port_error = ""

    # --------------------------------------------------------------- one request

    async def _request(
        self,
        unit: int,
        pdu: bytes,
        *,
        retries: int,
        defer: bool = False,
        timeout_s: float | None = None,
    ) -> tuple[bytes, float, float]:
        """Reply PDU plus the wall and monotonic time it was read; raises ModbusError.
        With ``defer``, a retry that would first wait for a late reply raises
        ``_RetryLater`` instead (without, the link drains the line, blocking the bus)."""
        attempt = 0
        while True:
            if not self.link.is_open:
                raise PortError(self._port_error or f"{self.link.where} not open")
            self.requests += 1
            try:
                reply = await self.link.transact(unit, pdu, timeout_s or self.bus.timeout_s)
                wall, mono = self.clock.wall(), self.clock.monotonic()
                return reply, wall, mono
            except PortError as e:
                self.request_errors += 1
                self._port_error = str(e)
                self._reopen_at = self.clock.monotonic()
                raise
            except ModbusError as e:
                self.request_errors += 1
                if attempt >= retries:
                    raise
                attempt += 1
                wait_s = self._late_wait_s(unit) if defer else 0.0
                if wait_s > 0:
                    raise _RetryLater(wait_s, retries - attempt, e) from None

    def _late_wait_s(self, unit: int) -> float:
        fn = getattr(self.link, "ready_in_s", None)
        return float(fn(unit)) if fn is not None else 0.0

    # --------------------------------------------------------------------- polls

    async def _poll(self, d: _Device) -> None:
        # retries are for a transient error of a healthy device; a device that
        # failed its last poll gets one try per poll, so a dead one costs little
        retries = self.bus.retries if d.failures == 0 else 0
        if d.retries_pending is not None:
            retries, d.retries_pending = d.retries_pending, None
        raws: dict[str, int] = {}
        times: dict[str, tuple[float, float]] = {}
        d.next_due = next_due(d.next_due, d.interval_s, self.clock.monotonic())
        try:
            for block in d.plan:
                reply, wall, mono = await self._request(
                    d.cfg.device_id,
                    block.pdu,
                    retries=retries,
                    defer=True,
                    timeout_s=d.cfg.timeout_s,
                )
                parsed = frames.parse_reply(block.pdu, reply)
                got = codec.block_raws(d.profile, block, parsed.registers, parsed.bits)
                raws.update(got)
                for name in got:
                    times[name] = (wall, mono)
        except _RetryLater as r:
            # the retry waits for the watch of the late reply; the others are served meanwhile
            await self._note_late(d)
            d.retries_pending = r.retries_left
            d.next_due = self.clock.monotonic() + r.wait_s * self.clock.speed
            return
        except ModbusError as e:
            await self._note_late(d)
            await self._poll_failed(d, e)
            wait_s = self._late_wait_s(d.cfg.device_id)
            if wait_s > 0:  # the next poll after the watch for its late reply
                d.next_due = max(d.next_due, self.clock.monotonic() + wait_s * self.clock.speed)
            return
        # OFFLINE for its late replies: still, the values of a reply in time are sound
        # (an alarm among them goes on), only the OFFLINE is not cleared yet
        held = await self._note_late(d)
        await self._poll_ok(d, raws, times, hold_offline=held)

    async def _note_late(self, d: _Device) -> bool:
        """Take the device's late replies from the link; True when they (still) hold
        it OFFLINE: LATE_FAULT_COUNT of them within LATE_WINDOW_S."""
        take = getattr(self.link, "take_late", None)
        delays: list[float] = take(d.cfg.device_id) if take is not None else []
        now = self.clock.monotonic()
        for delay in delays:
            d.late_mono.append(now)
            d.late_delay_s = delay
            d.late_replies += 1
        while d.late_mono and now - d.late_mono[0] > LATE_WINDOW_S:
            d.late_mono.popleft()
        if delays:
            log.info(
                "device %s (id %d): late reply discarded (%.2f s after its request, timeout_s %g)",
                d.cfg.name,
                d.cfg.device_id,
                delays[-1],
                self.bus.timeout_s,
            )
        if len(d.late_mono) < LATE_FAULT_COUNT and not (d.offline and d.late_mono):
            return False
        why = self._late_why(d)
        d.last_error = why
        if not d.offline:
            d.offline = True
            log.warning("device %s (id %d) offline: %s", d.cfg.name, d.cfg.device_id, why)
            await self._emit(
                self._state(d, "", Condition.OFFLINE, True, why, self.clock.wall(), now)
            )
        return True

    def _late_why(self, d: _Device) -> str:
        timeout_s = d.cfg.timeout_s or self.bus.timeout_s
        return (
            f"{len(d.late_mono)} repl{'y' if len(d.late_mono) == 1 else 'ies'} in "
            f"{LATE_WINDOW_S:g} s came after the {timeout_s:g} s timeout (the latest "
            f"{d.late_delay_s:.2f} s after its request) and were discarded: set this device's "
            "timeout_s (or the bus's) above its answer time, or check the device and wiring"
        )

    async def _poll_failed(self, d: _Device, e: ModbusError) -> None:
        d.failures += 1
        d.polls_failed += 1
        why = str(e)
        if isinstance(e, DeviceException):
            why += f" (is profile {d.cfg.profile!r} right for this device?)"
        elif d.late_mono:
            why += f"; {self._late_why(d)}"
        d.last_error = why
        if not d.offline and d.failures >= self.bus.offline_after:
            d.offline = True
            log.warning("device %s (id %d) offline: %s", d.cfg.name, d.cfg.device_id, why)
            await self._emit(
                self._state(
                    d, "", Condition.OFFLINE, True, why, self.clock.wall(), self.clock.monotonic()
                )
            )
        if d.offline:
            d.next_due = self.clock.monotonic() + self.bus.offline_poll_s

    async def _poll_ok(
        self,
        d: _Device,
        raws: dict[str, int],
        times: dict[str, tuple[float, float]],
        *,
        hold_offline: bool = False,
    ) -> None:
        d.failures = 0
        d.polls_ok += 1
        first_wall, first_mono = min(times.values(), key=lambda t: t[1])
        if d.offline and not hold_offline:
            d.offline = False
            log.info("device %s (id %d) answers again", d.cfg.name, d.cfg.device_id)
            await self._emit(
                self._state(
                    d, "", Condition.OFFLINE, False, "answers again", first_wall, first_mono
                )
            )
        ev = codec.evaluate(d.profile, raws)
        for r in ev.readings:
            wall, mono = times[r.point.name]
            reading = Reading(
                source=d.cfg.name,
                zone=d.cfg.zone,
                wall=wall,
                mono=mono,
                point=codec.reading_point(r.point),
                quantity=r.point.quantity,  # type: ignore[arg-type]
                value=r.value,
                unit=r.point.unit,
                setpoint=r.setpoint,
            )
            try:
                self.out.put_nowait(reading)
            except asyncio.QueueFull:
                # a reading is superseded by the next poll; state changes are not dropped
                self.readings_dropped += 1
                if self.readings_dropped == 1 or self.readings_dropped % 1000 == 0:
                    log.warning(
                        "bus %s: observation queue full, %d reading(s) dropped",
                        self.name,
                        self.readings_dropped,
                    )
        for key, (active, detail) in ev.states.items():
            if d.answered and d.states.get(key) == active:
                continue
            d.states[key] = active
            point, condition = key
            await self._emit(
                self._state(d, point, condition, active, detail, first_wall, first_mono)
            )
        d.answered = True

    def _state(
        self,
        d: _Device,
        point: str,
        condition: Condition,
        active: bool,
        detail: str,
        wall: float,
        mono: float,
    ) -> StateChange:
        return StateChange(
            source=d.cfg.name,
            zone=d.cfg.zone,
            wall=wall,
            mono=mono,
            point=point,
            kind=d.kind,
            condition=condition,
            active=active,
            detail=detail,
        )

    async def _emit(self, obs: Observation) -> None:
        await self.out.put(obs)  # a state change or command result waits for room, never dropped

    # ------------------------------------------------------------------ commands

    async def _run_command(self, cmd: Command) -> None:
        d = self._by_name.get(cmd.target)
        ok, detail = False, ""
        if d is None:
            detail = f"device {cmd.target!r} is not on bus {self.name}"
        elif cmd.action not in d.profile.commands:
            have = ", ".join(d.profile.commands) or "none"
            detail = f"profile {d.cfg.profile!r} has no command {cmd.action!r} (has: {have})"
        else:
            c = d.profile.commands[cmd.action]
            addr = d.profile.pdu_address(c.address)
            pdu = (
                frames.write_register_request(addr, c.value)
                if c.table is Table.HOLDING
                else frames.write_coil_request(addr, bool(c.value))
            )
            try:
                reply, _, _ = await self._request(
                    d.cfg.device_id, pdu, retries=self.bus.retries, timeout_s=d.cfg.timeout_s
                )
                frames.parse_reply(pdu, reply)
                ok, detail = True, c.description or cmd.action
                # read back soon so the effect (alarm cleared) is seen quickly
                d.next_due = min(d.next_due, self.clock.monotonic())
            except ModbusError as e:
                detail = str(e)
        log.info(
            "bus %s: command %s to %s: %s (%s)",
            self.name,
            cmd.action,
            cmd.target,
            "ok" if ok else "failed",
            detail,
        )
        await self._emit(
            CommandResult(
                source=cmd.target,
                zone=d.cfg.zone if d is not None else "",
                wall=self.clock.wall(),
                mono=self.clock.monotonic(),
                command_id=cmd.id,
                action=cmd.action,
                ok=ok,
                detail=detail,
            )
        )

    # -------------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """The bus and its devices, for the status file. An RTU line adds ``echo`` (the
        configured mode) and ``line_echoes``: "yes", "no" or "unknown" (not yet learned)."""
        line: dict[str, Any] = {}
        if isinstance(self.link, RtuLink):
            learned = self.link.line_echoes
            line = {
                "echo": self.link.echo,
                "line_echoes": "unknown" if learned is None else "yes" if learned else "no",
            }
        return {
            "bus": self.name,
            "port": self.link.where,
            "open": self.link.is_open,
            **line,
            "requests": self.requests,
            "request_errors": self.request_errors,
            "readings_dropped": self.readings_dropped,
            "commands_pending": self.commands.qsize(),
            "devices": {
                d.cfg.name: {
                    "state": "offline" if d.offline else ("online" if d.answered else "waiting"),
                    "id": d.cfg.device_id,
                    "online": d.answered and not d.offline,
                    "offline": d.offline,
                    "polls_ok": d.polls_ok,
                    "polls_failed": d.polls_failed,
                    "late_replies": d.late_replies,
                    "last_error": d.last_error,
                }
                for d in self.devices
            },
        }
