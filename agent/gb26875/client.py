"""The GB/T 26875.3 uplink part: a TCP client to the monitoring centre that
drains a durable outbox, one frame at a time.

What a caller may rely on:

* Order and durability come from the outbox: decisions are read in its
  priority order (fire alarms first) and deleted (``Outbox.acked``) only
  after the centre's confirm frame for the last frame that carries them. A
  dropped connection, a timeout or a kill -9 leaves the decision stored; it
  is sent again on the next connection, under the same serial number
  (``SerialBook``: numbers are stored with the decision and never reset), so
  that a centre that already confirmed it can discard it.
* Send/confirm as the standard describes (6.5): a frame not confirmed within
  ``confirm_timeout_s`` is sent again unchanged (same serial number, so the
  centre can discard a duplicate), at most ``retries`` times; then the
  connection is taken as dead and opened again. A deny is also answered by
  sending again; a frame the centre still denies after ``retries`` becomes a
  FAULT decision with the reason (``report``), and only then leaves this
  uplink's queue: never a silent drop.
* Stop-and-wait: one frame in flight. The centre's own requests and control
  commands are answered meanwhile, from ``CentreState``.
* Anything malformed from the centre costs at most that connection: a frame
  with a bad checksum is denied and the connection goes on; any other
  framing error (wrong start, length over 1024, 10 MB of garbage) closes it.
* Heartbeat: an empty send-data frame after ``heartbeat_s`` without traffic;
  an unconfirmed heartbeat closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from agent.clock import Clock
from agent.events import Decision, DecisionType, gateway_decision
from agent.gb26875.codec import (
    ChecksumError,
    Command,
    Frame,
    FrameDecoder,
    FrameError,
    TimeLabel,
)
from agent.gb26875.mapping import CentreState, Directory
from agent.gb26875.objects import (
    ComponentRef,
    DeviceConfig,
    DeviceState,
    DeviceTime,
    DeviceVersion,
    SystemRef,
    TypeFlag,
    Unit,
    decode_unit,
)
from agent.gb26875.serials import SERIAL_FILE, SerialBook
from agent.outbox import Outbox, Pending
from agent.siteconfig.models import Gb26875Config, SiteConfig

log = logging.getLogger(__name__)

PART = "gb26875"
READ_CHUNK = 4096
IDLE_BOUND_S = 20.0  # longest wait without showing progress (health watchdog)
UNREACHABLE_FAULT_S = 300.0  # no connection this long: a FAULT decision


class NoConfirm(Exception):
    """The centre did not confirm a frame after every retransmission."""


class Denied(Exception):
    """The centre denied a frame after every retransmission."""


class SessionLost(Exception):
    """The connection closed or broke; the reason is the message."""


Report = Callable[[Decision], Awaitable[None]]


class Gb26875Uplink:
    """Drains ``outbox`` to a GB/T 26875.3 monitoring centre; a supervisor part."""

    name = PART

    def __init__(
        self,
        config: Gb26875Config,
        site: SiteConfig,
        outbox: Outbox,
        clock: Clock,
        version: str,
        *,
        report: Report | None = None,
        directory: Directory | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.clock = clock
        self.version = version
        self.report = report
        self.state = CentreState(config, directory or Directory(site))
        self.progress_mono = clock.monotonic()
        self.connected = False
        self.sent = 0
        self.denied = 0
        self.reconnects = 0
        self.last_error = ""
        self.clock_offset_s = 0.0
        self.serials = SerialBook(outbox.path.parent / SERIAL_FILE)
        self._waiters: dict[int, asyncio.Future[Command]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._write_lock = asyncio.Lock()
        self._deny_episode = False
        self._unreachable_reported = False
        self._last_traffic = 0.0

    # ------------------------------------------------------------------ part

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.serials.close()  # a restarted part opens it again

    async def _run(self) -> None:
        delay = self.config.reconnect_min_s
        down_since = self.clock.monotonic()
        while True:
            self.progress_mono = self.clock.monotonic()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.config.host, self.config.port),
                    self.config.connect_timeout_s,
                )
            except (OSError, TimeoutError) as e:
                self._failed(f"cannot connect to {self.config.host}:{self.config.port}: {e}")
            else:
                delay = self.config.reconnect_min_s
                try:
                    await self._session(reader, writer)
                except (SessionLost, NoConfirm, OSError, FrameError) as e:
                    self._failed(str(e) or type(e).__name__)
                finally:
                    self.connected = False
                    self._writer = None
                    for fut in self._waiters.values():
                        fut.cancel()
                    self._waiters.clear()
                    writer.close()
                    with contextlib.suppress(OSError, TimeoutError):
                        await asyncio.wait_for(writer.wait_closed(), 1.0)
                down_since = self.clock.monotonic()
            self.state.channel_fault = True
            if (
                not self._unreachable_reported
                and self.clock.monotonic() - down_since >= UNREACHABLE_FAULT_S
            ):
                self._unreachable_reported = True
                await self._report(
                    DecisionType.FAULT,
                    f"monitoring centre {self.config.host}:{self.config.port} unreachable "
                    f"for {UNREACHABLE_FAULT_S:.0f} s over GB/T 26875.3 ({self.last_error})",
                )
            await self.clock.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.reconnect_max_s)
            self.reconnects += 1

    def status(self) -> dict[str, Any]:
        return {
            "centre": f"{self.config.host}:{self.config.port}",
            "connected": self.connected,
            "sent": self.sent,
            "denied": self.denied,
            "reconnects": self.reconnects,
            "clock_offset_s": round(self.clock_offset_s, 3),
            "last_error": self.last_error,
        }

    # --------------------------------------------------------------- session

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.connected = True
        self.state.channel_fault = False
        log.info("gb26875: connected to %s:%s", self.config.host, self.config.port)
        listener = asyncio.create_task(self._listen(reader))
        sender = asyncio.create_task(self._send_loop())
        try:
            done, _ = await asyncio.wait({listener, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises why the session ended
            raise SessionLost("session ended")
        finally:
            for task in (listener, sender):
                task.cancel()
            await asyncio.gather(listener, sender, return_exceptions=True)

    async def _send_loop(self) -> None:
        # the gateway's own state first: it tells the centre this device is up
        await self._exchange_own(self._device_state_unit().encode())
        if self._unreachable_reported:
            self._unreachable_reported = False
            await self._report(
                DecisionType.RESTORE,
                f"monitoring centre {self.config.host}:{self.config.port} reachable again",
            )
        while True:
            self.progress_mono = self.clock.monotonic()
            self.outbox.changed.clear()
            batch = await self.outbox.next_batch(1)
            if batch:
                await self._deliver(batch[0])
                continue
            idle = self.clock.monotonic() - self._last_traffic
            wait = min(self.config.heartbeat_s - idle, IDLE_BOUND_S)
            if wait <= 0:
                await self._exchange_own(b"")  # heartbeat
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.changed.wait(), wait / self.clock.speed)

    async def _deliver(self, p: Pending) -> None:
        try:
            units = self.state.units_for(p.payload, self.clock.wall())
            frames = [unit.encode() for unit in units]
        except (ValueError, TypeError) as e:  # a stored decision this protocol cannot carry
            log.error("gb26875: decision %s cannot be sent: %s", p.id, e)
            await self._report(
                DecisionType.FAULT,
                f"the {p.type} decision {p.id} has no GB/T 26875.3 form: {e}",
                denied_id=p.id,
            )
            self.outbox.acked(p.id)
            return
        serials = await self.serials.for_decision(p.id, len(frames))
        try:
            for serial, data in zip(serials, frames, strict=True):
                await self._exchange(Command.SEND_DATA, data, serial)
        except Denied as e:
            self.denied += 1
            log.error("gb26875: the centre denied decision %s (%s): %s", p.id, p.type, e)
            if p.payload.get("details", {}).get("part") != PART:  # never a fault about a fault
                self._deny_episode = True
                await self._report(
                    DecisionType.FAULT,
                    f"monitoring centre denied the {p.type} decision {p.id} "
                    f"({p.payload.get('reason', '')}): {e}",
                    denied_id=p.id,
                )
        else:
            self.sent += 1
            if self._deny_episode and units:
                self._deny_episode = False
                await self._report(
                    DecisionType.RESTORE, "monitoring centre confirms decisions again"
                )
        self.outbox.acked(p.id)

    async def _exchange_own(self, data: bytes) -> None:
        """Send a frame of the gateway's own (state, heartbeat): a deny is logged only."""
        try:
            await self._exchange(Command.SEND_DATA, data, await self.serials.own())
        except Denied as e:
            log.warning("gb26875: the centre denied the gateway's own frame: %s", e)

    async def _exchange(self, command: Command, data: bytes, serial: int) -> None:
        """Send one frame and wait for its confirm; retransmit on timeout or deny."""
        raw = self._frame(serial, command, data).encode()
        denials = 0
        for attempt in range(self.config.retries + 1):
            self.progress_mono = self.clock.monotonic()
            fut: asyncio.Future[Command] = asyncio.get_running_loop().create_future()
            self._waiters[serial] = fut
            await self._write(raw)
            try:
                answer = await asyncio.wait_for(
                    fut, self.config.confirm_timeout_s / self.clock.speed
                )
            except TimeoutError:
                log.warning(
                    "gb26875: no confirm for serial %d within %.1f s (try %d of %d)",
                    serial,
                    self.config.confirm_timeout_s,
                    attempt + 1,
                    self.config.retries + 1,
                )
                continue
            finally:
                self._waiters.pop(serial, None)
            if answer == Command.CONFIRM:
                return
            denials += 1
        if denials:
            raise Denied(
                f"denied {denials} time(s) in {self.config.retries + 1} tries "
                f"(serial {serial}, {len(data)} bytes of application data, type "
                f"{data[0] if data else 'heartbeat'})"
            )
        raise NoConfirm(
            f"no confirm for serial {serial} after {self.config.retries + 1} tries "
            f"of {self.config.confirm_timeout_s:g} s"
        )

    def _frame(self, serial: int, command: Command, data: bytes = b"") -> Frame:
        return Frame(
            serial,
            command,
            self.config.source_address,
            self.config.destination_address,
            self._now(),
            data,
            (1, self.config.user_version),
        )

    def _now(self) -> TimeLabel:
        return self.state.time(self.clock.wall() + self.clock_offset_s)

    async def _write(self, raw: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise SessionLost("not connected")
        async with self._write_lock:
            writer.write(raw)
            try:  # a centre that stops reading must not hang the part
                await asyncio.wait_for(
                    writer.drain(), self.config.confirm_timeout_s / self.clock.speed
                )
            except TimeoutError:
                raise SessionLost("the centre stopped reading (send buffer full)") from None
        self._last_traffic = self.clock.monotonic()

    # ------------------------------------------------------------ from centre

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise SessionLost("the centre closed the connection")
            for item in decoder.feed(data):  # FrameError: ends the session
                if isinstance(item, ChecksumError):
                    log.warning("gb26875: frame from the centre denied: %s", item)
                    await self._write(self._frame(item.serial, Command.DENY).encode())
                    continue
                await self._on_frame(item)

    async def _on_frame(self, f: Frame) -> None:
        if f.command in (Command.CONFIRM, Command.DENY):
            fut = self._waiters.get(f.serial)
            if fut is not None and not fut.done():
                fut.set_result(f.command)
            else:
                log.debug("gb26875: answer for serial %d that nothing waits for", f.serial)
            return
        if f.command not in (Command.CONTROL, Command.REQUEST):
            log.warning("gb26875: ignored a %s frame from the centre", f.command.name)
            return
        try:
            unit = decode_unit(f.data)
            reply = self._answer(f.command, unit)
        except (FrameError, ValueError) as e:
            log.warning("gb26875: denied the centre's %s: %s", f.command.name, e)
            reply = None
        if reply is None:
            await self._write(self._frame(f.serial, Command.DENY).encode())
        elif isinstance(reply, Unit):
            await self._write(self._frame(f.serial, Command.RESPONSE, reply.encode()).encode())
        else:
            await self._write(self._frame(f.serial, Command.CONFIRM).encode())

    def _answer(self, command: Command, unit: Any) -> Unit | bool | None:
        """A response unit (request), True (control to confirm), or None (deny)."""
        if not isinstance(unit, Unit):
            log.warning(
                "gb26875: the centre sent type %d, which this gateway does not know", unit.type
            )
            return None
        t = unit.type
        now = self._now()
        if command == Command.CONTROL:
            if t == TypeFlag.SYNC_CLOCK:
                (obj,) = unit.objects
                assert isinstance(obj, DeviceTime)
                centre = obj.time.to_wall(self.config.utc_offset_min)  # ValueError: deny
                self.clock_offset_s = centre - self.clock.wall()
                log.info("gb26875: clock sync from the centre: offset %.1f s", self.clock_offset_s)
                return True
            if t == TypeFlag.INITIALISE:
                log.info("gb26875: the centre asked to initialise the device; nothing to reset")
                return True
            if t == TypeFlag.ON_DUTY_CHECK:
                log.warning("gb26875: on-duty check from the centre (answered by a person on site)")
                return True
            return None
        if t == TypeFlag.READ_DEVICE_STATE:
            return self._device_state_unit()
        if t == TypeFlag.READ_DEVICE_TIME:
            return Unit(TypeFlag.DEVICE_TIME, (DeviceTime(now),))
        if t == TypeFlag.READ_DEVICE_VERSION:
            return Unit(TypeFlag.DEVICE_VERSION, (DeviceVersion(*_version_pair(self.version)),))
        if t == TypeFlag.READ_DEVICE_CONFIG:
            return Unit(TypeFlag.DEVICE_CONFIG, (DeviceConfig(f"firegate {self.version}"),))
        if t == TypeFlag.READ_SYSTEM_STATE:
            refs = [o for o in unit.objects if isinstance(o, SystemRef)]
            ours = any(
                r.system_type == self.config.system_type
                and r.system_address == self.config.system_address
                for r in refs
            )
            return Unit(TypeFlag.SYSTEM_STATE, (self.state.system_state(now),)) if ours else None
        if t in (TypeFlag.READ_COMPONENT_STATE, TypeFlag.READ_COMPONENT_ANALOG):
            addrs = [o.component_address for o in unit.objects if isinstance(o, ComponentRef)]
            if t == TypeFlag.READ_COMPONENT_STATE:
                states = self.state.component_states(addrs, now)
                return Unit(TypeFlag.COMPONENT_STATE, tuple(states)) if states else None
            values = self.state.analog_values(addrs)[:63]
            return Unit(TypeFlag.COMPONENT_ANALOG, tuple(values)) if values else None
        return None

    def _device_state_unit(self) -> Unit:
        return Unit(TypeFlag.DEVICE_STATE, (DeviceState(self.state.device_state(), self._now()),))

    # ---------------------------------------------------------------- helpers

    def _failed(self, why: str) -> None:
        if why != self.last_error:
            log.warning("gb26875: %s; retrying", why)
        self.last_error = why

    async def _report(self, type_: DecisionType, reason: str, **details: Any) -> None:
        if self.report is None:
            log.error("gb26875: %s", reason)
            return
        await self.report(
            gateway_decision(
                type_,
                reason,
                part=PART,
                wall=self.clock.wall(),
                mono=self.clock.monotonic(),
                **details,
            )
        )


def _version_pair(version: str) -> tuple[int, int]:
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]]
    parts += [0] * (2 - len(parts))
    return min(parts[0], 255), min(parts[1], 255)
