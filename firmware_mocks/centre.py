"""A mock urban fire remote-monitoring centre speaking GB/T 26875.3 on a local
TCP port: the other end of agent/gb26875 in tests, the bench and the demo.

It confirms every valid send-data frame by default, records what it received,
and can misbehave on request, one knob each:

* ``deny_next = n``: deny the next n data frames (a deny per frame received,
  retransmissions included);
* ``silent_next = n``: answer nothing to the next n data frames;
* ``late_s``: confirm that late (past the gateway's timeout: it retransmits);
* ``drop_next = n``: close the connection on the next n data frames without
  an answer; with ``drop_mid_frame`` first send half a confirm frame;
* ``lose_confirm_next = n``: take the next n data frames (recorded, counted
  as confirmed) but lose the confirm: the connection is closed instead;
* ``withhold_confirm_next = n``: the same, but the connection stays open
  (the confirm is simply never sent); ``withhold_skip = k`` first confirms
  k more data frames normally;
* ``send_raw(bytes)``: send anything (malformed frames, garbage);
* ``request(...)``: send a query or control command and wait for the answer.

Like a real centre it discards a retransmission: a send-data frame whose
serial number it has already confirmed from the same source address, among
the last ``window`` it confirmed (across connections), is confirmed again
but not recorded a second time (``Received.duplicate``; ``discarded``).

All in the caller's event loop; ``start()`` binds a free port (``port``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.gb26875.codec import (
    ChecksumError,
    Command,
    Frame,
    FrameDecoder,
    FrameError,
    TimeLabel,
)
from agent.gb26875.mapping import Directory, address_text
from agent.gb26875.objects import (
    DEVICE_FAULT,
    STATE_FAULT,
    STATE_FIRE,
    STATE_SUPERVISORY,
    ComponentAnalog,
    ComponentState,
    DeviceState,
    InfoObject,
    SystemState,
    Unit,
    Unsupported,
    decode_unit,
)

log = logging.getLogger(__name__)

WINDOW = 4096  # confirmed serial numbers remembered per source address
CENTRE_ADDRESS = 88888  # 38 5B 01 00 00 00, as in the examples circulated with the standard


@dataclass(frozen=True)
class Received:
    frame: Frame
    unit: Unit | Unsupported | None  # None: empty (heartbeat) or undecodable
    mono: float  # time.monotonic() at arrival
    answer: Command | None  # what the centre answered (None: nothing)
    duplicate: bool = False  # a serial number already confirmed: discarded


class MockCentre:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, address: int = CENTRE_ADDRESS):
        self.host = host
        self.port = port
        self.address = address
        self.deny_next = 0
        self.silent_next = 0
        self.drop_next = 0
        self.drop_mid_frame = False
        self.late_s = 0.0
        self.lose_confirm_next = 0
        self.withhold_confirm_next = 0
        self.withhold_skip = 0
        self.window = WINDOW
        self._confirmed: dict[int, dict[int, None]] = {}  # source -> serials, oldest first
        self.received: list[Received] = []
        self.connections = 0
        self.errors: list[str] = []  # framing errors seen from the gateway
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Event()
        self._serial = 0x4000  # the centre's own serial numbers (requests, controls)
        self._answers: dict[int, asyncio.Future[Frame]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- control

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()

    def drop_connections(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    @property
    def connected(self) -> bool:
        return bool(self._writers)

    def data_units(self, confirmed_only: bool = True) -> list[Unit]:
        """Units of the send-data frames received (confirmed ones by default),
        one per frame serial and connection, in arrival order."""
        return [
            r.unit
            for r in self.received
            if r.frame.command == Command.SEND_DATA
            and isinstance(r.unit, Unit)
            and not r.duplicate
            and (r.answer == Command.CONFIRM or not confirmed_only)
        ]

    @property
    def discarded(self) -> int:
        """Retransmissions recognised by their serial number (confirmed, not recorded)."""
        return sum(r.duplicate for r in self.received)

    def objects(self, type_: int | None = None) -> list[InfoObject]:
        return [o for u in self.data_units() if type_ in (None, u.type) for o in u.objects]

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def send_raw(self, data: bytes) -> None:
        for w in list(self._writers):
            w.write(data)
            with contextlib.suppress(ConnectionError):
                await w.drain()

    async def request(self, command: Command, unit: Unit | bytes, timeout_s: float = 5.0) -> Frame:
        """Send a request (4) or control (1) frame; the gateway's answer frame."""
        self._serial = (self._serial + 1) & 0xFFFF
        serial = self._serial
        data = unit if isinstance(unit, bytes) else unit.encode()
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._answers[serial] = fut
        await self.send_raw(self._frame(serial, command, 0, data).encode())
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._answers.pop(serial, None)

    # ---------------------------------------------------------------- serving

    def _frame(self, serial: int, command: Command, to: int, data: bytes = b"") -> Frame:
        return Frame(serial, command, self.address, to, TimeLabel.from_wall(time.time(), 480), data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        self._changed.set()
        decoder = FrameDecoder()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                try:
                    items = decoder.feed(data)
                except FrameError as e:
                    self.errors.append(str(e))
                    return
                for item in items:
                    if isinstance(item, ChecksumError):
                        self.errors.append(str(item))
                        writer.write(self._frame(item.serial, Command.DENY, item.source).encode())
                        continue
                    if not await self._on_frame(item, writer):
                        return
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._changed.set()

    async def _on_frame(self, f: Frame, writer: asyncio.StreamWriter) -> bool:
        """Handle one frame; False closes the connection."""
        if f.command in (Command.RESPONSE, Command.CONFIRM, Command.DENY):
            fut = self._answers.get(f.serial)
            if fut is not None and not fut.done():
                fut.set_result(f)
            return True
        unit: Unit | Unsupported | None = None
        if f.data:
            try:
                unit = decode_unit(f.data)
            except FrameError as e:
                self.errors.append(str(e))
        now = time.monotonic()
        if self.drop_next > 0:
            self.drop_next -= 1
            self.received.append(Received(f, unit, now, None))
            self._changed.set()
            if self.drop_mid_frame:
                raw = self._frame(f.serial, Command.CONFIRM, f.source).encode()
                writer.write(raw[: len(raw) // 2])
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            return False
        if self.silent_next > 0:
            self.silent_next -= 1
            answer: Command | None = None
        elif self.deny_next > 0 or (f.data and unit is None):
            self.deny_next = max(0, self.deny_next - 1)
            answer = Command.DENY
        else:
            answer = Command.CONFIRM
        duplicate = False
        if answer == Command.CONFIRM and f.command == Command.SEND_DATA:
            seen = self._confirmed.setdefault(f.source, {})
            duplicate = f.serial in seen
            seen.pop(f.serial, None)
            seen[f.serial] = None  # most recent last
            while len(seen) > self.window:
                del seen[next(iter(seen))]
        self.received.append(Received(f, unit, now, answer, duplicate))
        self._changed.set()
        if answer == Command.CONFIRM and not duplicate:
            if self.lose_confirm_next > 0:
                self.lose_confirm_next -= 1
                return False  # taken, but the confirm is lost with the connection
            if self.withhold_confirm_next > 0 and self.withhold_skip > 0:
                self.withhold_skip -= 1
            elif self.withhold_confirm_next > 0:
                self.withhold_confirm_next -= 1
                return True  # taken, the confirm never leaves
        if answer is not None:
            raw = self._frame(f.serial, answer, f.source).encode()
            if self.late_s > 0 and answer == Command.CONFIRM:
                task = asyncio.create_task(self._late(writer, raw, self.late_s))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                writer.write(raw)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
        return True

    @staticmethod
    async def _late(writer: asyncio.StreamWriter, raw: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not writer.is_closing():
            writer.write(raw)


_STATE_BITS = (
    (STATE_FIRE, "FIRE"),
    (STATE_FAULT, "fault"),
    (STATE_SUPERVISORY, "supervisory"),
)
_ANALOG = {3: ("temperature", 0.1, "C"), 8: ("voltage", 0.1, "V"), 9: ("current", 0.1, "A")}


def centre_lines(unit: Unit | Unsupported, directory: Directory) -> list[tuple[str, str, bool]]:
    """What a centre operator would read from one confirmed unit: (zone, text, is a fire)."""
    out: list[tuple[str, str, bool]] = []
    if not isinstance(unit, Unit):
        return [("", f"GB/T 26875.3 type {unit.type} (not decoded)", False)]
    for o in unit.objects:
        if isinstance(o, ComponentState | ComponentAnalog):
            c = directory.by_address(o.component_address)
            who = f"{address_text(o.component_address)} {c.name if c else '?'}"
            zone = c.zone if c else ""
            if isinstance(o, ComponentState):
                bits = [name for bit, name in _STATE_BITS if o.state & bit] or ["normal"]
                out.append(
                    (
                        zone,
                        f"GB/T 26875.3 component {who}: {', '.join(bits)}",
                        bool(o.state & STATE_FIRE),
                    )
                )
            else:
                name, scale, unit_ = _ANALOG.get(o.analog_type, (f"analog {o.analog_type}", 1, ""))
                out.append(
                    (
                        zone,
                        f"GB/T 26875.3 component {who}: {name} {o.value * scale:g} {unit_}",
                        False,
                    )
                )
        elif isinstance(o, DeviceState):
            own = "fault" if o.state & DEVICE_FAULT else "normal"
            out.append(("_gateway", f"GB/T 26875.3 transmission device state: {own}", False))
        elif isinstance(o, SystemState):
            out.append(
                ("", f"GB/T 26875.3 system state {o.state:#06x}", bool(o.state & STATE_FIRE))
            )
    return out


async def main() -> None:  # pragma: no cover - manual use: python -m firmware_mocks.centre
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    centre = MockCentre(port=port)
    await centre.start()
    print(f"mock GB/T 26875.3 centre on {centre.host}:{centre.port}", flush=True)
    seen = 0
    while True:
        await centre.wait_for(lambda n=seen: len(centre.received) > n, 3600)  # type: ignore[misc]
        for r in centre.received[seen:]:
            print(r.frame.command.name, r.frame.serial, r.unit, flush=True)
        seen = len(centre.received)


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(main())
