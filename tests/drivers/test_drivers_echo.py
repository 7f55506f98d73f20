"""RS-485 adapters with local echo: the real RtuLink and BusWorker on one end of a pty,
the firmware mock (``SimRtuBus(echo=True)``) or a scripted adapter on the other.

The hazard under test: the reply to a single write (05/06) is byte-identical to
the request, so on an echoing line the echo of a write to a dead device looks
like that device's confirmation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import serial

from agent.clock import SystemClock
from agent.events import Command, CommandResult, Observation, StateChange
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import RtuBus
from drivers import codec, frames
from drivers.bus import BusWorker
from drivers.frames import NoReply
from drivers.link import RtuLink
from firmware_mocks import PtyPort, SimDevice, SimRtuBus, load_modbus_profile

SMOKE = load_modbus_profile("calectro-ug3-o-mb-r")
LEAK = load_modbus_profile("acrel-aim-r100")
ABSENT = 42  # no device answers at this id
RESET = SMOKE.commands["reset"]
RESET_ADDR = SMOKE.pdu_address(RESET.address)
LEAK_BLOCK = next(b for b in codec.plan_reads(LEAK) if "leakage_l1" in {p.name for p in b.points})
TIMEOUT_S = 0.1


def link_for(path: str, mode: str) -> RtuLink:
    # "auto" is the default: built without the keyword (so this runs on a link that lacks it)
    kw: dict[str, Any] = {} if mode == "auto" else {"echo": mode}
    return RtuLink(path, 9600, turnaround_s=0.0, **kw)


def write_pdu(fc: int) -> bytes:
    if fc == frames.WRITE_REGISTER:
        return frames.write_register_request(RESET_ADDR, RESET.value)
    return frames.write_coil_request(RESET_ADDR, True)


async def read_leakage(link: RtuLink, unit: int = 1) -> float:
    reply = await link.transact(unit, LEAK_BLOCK.pdu, TIMEOUT_S)
    parsed = frames.parse_reply(LEAK_BLOCK.pdu, reply)
    return codec.block_raws(LEAK, LEAK_BLOCK, parsed.registers, parsed.bits)["leakage_l1"]


@contextlib.asynccontextmanager
async def opened(link: RtuLink) -> Any:
    await link.open()
    try:
        yield link
    finally:
        link.close()


def echo_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "drivers.link"
    ]


# ----------------------------------------------------------------- the mock


def test_mock_echoes_every_request_even_to_absent_devices() -> None:
    with SimRtuBus([], echo=True) as sim:
        ser = serial.Serial(sim.path, 9600, timeout=0.5)
        try:
            frame = frames.rtu_frame(ABSENT, write_pdu(frames.WRITE_REGISTER))
            ser.write(frame)
            assert ser.read(len(frame)) == frame
            ser.write(b"\x07\x99noise")  # not even a frame: an adapter echoes bytes
            assert ser.read(7) == b"\x07\x99noise"
        finally:
            ser.close()
    with SimRtuBus([]) as sim:  # without echo: silence
        ser = serial.Serial(sim.path, 9600, timeout=0.2)
        try:
            ser.write(frames.rtu_frame(ABSENT, write_pdu(frames.WRITE_REGISTER)))
            assert ser.read(8) == b""
        finally:
            ser.close()


# ------------------------------------------------------------- reads, learning


@pytest.mark.parametrize("wire_time", [False, True], ids=["instant", "wire-time"])
@pytest.mark.parametrize("mode", ["auto", "on"])
async def test_reads_work_on_an_echoing_line(mode: str, wire_time: bool) -> None:
    with SimRtuBus([SimDevice(1, LEAK)], echo=True, emulate_wire_time=wire_time) as sim:
        async with opened(link_for(sim.path, mode)) as link:
            for value in (12, 345, 0, 99):
                sim.device(1).set_point("leakage_l1", value)
                assert await read_leakage(link) == value
    assert link.line_echoes is True


async def test_auto_learns_the_echo_from_a_read_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.link")
    with SimRtuBus([SimDevice(1, LEAK)], echo=True) as sim:
        async with opened(RtuLink(sim.path, 9600, turnaround_s=0.0)) as link:
            assert link.echo == "auto" and link.line_echoes is None and not link.strips_echo
            for _ in range(5):
                await read_leakage(link)
            # a read of a silent device shows the echo too
            with pytest.raises(NoReply):
                await link.transact(ABSENT, LEAK_BLOCK.pdu, TIMEOUT_S)
    assert link.line_echoes is True and link.strips_echo
    [msg] = echo_warnings(caplog)
    assert sim.path in msg
    assert "echoes what it sends (local echo); discarding the echo; set echo: on" in msg


async def test_auto_learns_a_line_without_echo(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.link")
    with SimRtuBus([SimDevice(1, LEAK), SimDevice(3, SMOKE)]) as sim:
        async with opened(RtuLink(sim.path, 9600, turnaround_s=0.0)) as link:
            await read_leakage(link)
            assert link.line_echoes is False and not link.strips_echo
            pdu = write_pdu(frames.WRITE_REGISTER)
            frames.parse_reply(pdu, await link.transact(3, pdu, TIMEOUT_S))
            with pytest.raises(NoReply):
                await link.transact(ABSENT, pdu, TIMEOUT_S)
    assert not echo_warnings(caplog)


# ------------------------------------------------------------------- writes


@pytest.mark.parametrize("fc", [frames.WRITE_REGISTER, frames.WRITE_COIL], ids=["fc06", "fc05"])
@pytest.mark.parametrize("mode", ["auto", "on"])
async def test_write_to_an_absent_device_is_no_reply_not_its_echo(mode: str, fc: int) -> None:
    with SimRtuBus([SimDevice(1, LEAK)], echo=True) as sim:
        async with opened(link_for(sim.path, mode)) as link:
            if mode == "auto":
                await read_leakage(link)  # the bus worker polls every device before a command
            with pytest.raises(NoReply):
                await link.transact(ABSENT, write_pdu(fc), TIMEOUT_S)
            # nothing of it is left over for the next request
            sim.device(1).set_point("leakage_l1", 77)
            assert await read_leakage(link) == 77


@pytest.mark.parametrize("fc", [frames.WRITE_REGISTER, frames.WRITE_COIL], ids=["fc06", "fc05"])
@pytest.mark.parametrize("mode", ["auto", "on"])
async def test_write_to_a_live_device_on_an_echoing_line_succeeds(mode: str, fc: int) -> None:
    with SimRtuBus([SimDevice(3, SMOKE), SimDevice(1, LEAK)], echo=True) as sim:
        async with opened(link_for(sim.path, mode)) as link:
            if mode == "auto":
                await read_leakage(link)
            pdu = write_pdu(fc)
            frames.parse_reply(pdu, await link.transact(3, pdu, TIMEOUT_S))
            assert sim.device(3).writes[-1][0] == RESET_ADDR
            sim.device(1).set_point("leakage_l1", 5)
            assert await read_leakage(link) == 5


async def test_off_keeps_the_echo_and_warns_that_writes_cannot_be_trusted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.link")
    with SimRtuBus([SimDevice(1, LEAK)], echo=True) as sim:
        async with opened(link_for(sim.path, "off")) as link:
            sim.device(1).set_point("leakage_l1", 8)
            assert await read_leakage(link) == 8  # the echo does not parse as a read reply
            assert await read_leakage(link) == 8
            assert link.line_echoes is True and not link.strips_echo
            # what off means, and why it warns: the echo stands in for a dead device
            pdu = write_pdu(frames.WRITE_REGISTER)
            assert await link.transact(ABSENT, pdu, TIMEOUT_S) == pdu
    [msg] = echo_warnings(caplog)
    assert sim.path in msg and "writes on this line cannot be trusted" in msg
    assert "echo: auto or on" in msg


async def test_on_without_an_echo_reads_work_and_single_writes_fail_safe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.link")
    with SimRtuBus([SimDevice(1, LEAK), SimDevice(3, SMOKE)]) as sim:  # the adapter does not echo
        async with opened(link_for(sim.path, "on")) as link:
            for value in (21, 22):
                sim.device(1).set_point("leakage_l1", value)
                assert await read_leakage(link) == value
            assert link.line_echoes is False and link.strips_echo
            # one copy of a write reply cannot be told from an echo: not taken as done
            with pytest.raises(NoReply):
                await link.transact(3, write_pdu(frames.WRITE_REGISTER), TIMEOUT_S)
            assert sim.device(3).writes  # the device did get it; the gateway cannot know
            # a reply that differs from the request (an exception) still comes through
            with pytest.raises(frames.DeviceException):
                bad = frames.write_register_request(0x7777, 1)
                frames.parse_reply(bad, await link.transact(3, bad, TIMEOUT_S))
    [msg] = echo_warnings(caplog)
    assert sim.path in msg and "does not seem to echo" in msg
    assert "will fail with no reply" in msg and "echo: off" in msg


# ------------------------------------------------ an echo in pieces, after noise


class ScriptedAdapter:
    """The far end of a pty: echoes each request as ``noise`` then the frame in
    ``pieces`` (a few ms apart, as bytes trickle in), then lets ``device`` answer."""

    def __init__(self, device: SimDevice, pieces: tuple[int, ...], noise: bytes = b"") -> None:
        self.port = PtyPort()
        self.device = device
        self.pieces = pieces
        self.noise = noise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def path(self) -> str:
        return self.port.path

    def __enter__(self) -> ScriptedAdapter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.port.close()

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.port.master], [], [], 0.05)
            if not ready:
                continue
            buf += os.read(self.port.master, 256)
            if len(buf) < 8:  # reads and single writes: 8-byte requests
                continue
            frame, buf = buf[:8], buf[8:]
            chunks = [self.noise] if self.noise else []
            at = 0
            for n in self.pieces:
                chunks.append(frame[at : at + n])
                at += n
            chunks.append(frame[at:])
            for c in chunks:
                self.port.write(c)
                time.sleep(0.003)
            if frame[0] == self.device.device_id:
                self.port.write(frames.rtu_frame(frame[0], self.device.handle(frame[1:-2])))


@pytest.mark.parametrize(
    ("pieces", "noise"),
    [((3,), b""), ((1, 1, 1, 1, 1, 1, 1), b""), ((5,), b"\x00\xff\x13")],
    ids=["two-pieces", "byte-by-byte", "after-noise"],
)
async def test_an_echo_arriving_in_pieces_is_still_discarded(
    pieces: tuple[int, ...], noise: bytes
) -> None:
    with ScriptedAdapter(SimDevice(1, LEAK), pieces, noise) as adapter:
        adapter.device.set_point("leakage_l1", 61)
        async with opened(link_for(adapter.path, "on")) as link:
            assert await read_leakage(link) == 61
            for fc in (frames.WRITE_REGISTER, frames.WRITE_COIL):
                with pytest.raises(NoReply):
                    await link.transact(ABSENT, write_pdu(fc), TIMEOUT_S)
            assert await read_leakage(link) == 61


async def test_auto_learns_from_an_echo_in_pieces() -> None:
    with ScriptedAdapter(SimDevice(1, LEAK), (2, 2, 2)) as adapter:
        async with opened(link_for(adapter.path, "auto")) as link:
            await read_leakage(link)
            assert link.line_echoes is True
            with pytest.raises(NoReply):
                await link.transact(ABSENT, write_pdu(frames.WRITE_REGISTER), TIMEOUT_S)


# --------------------------------------------------------------- the bus worker


@pytest.fixture
def echo_site(make_site: Callable[[str], LoadedSite]) -> Iterator[tuple[SimRtuBus, LoadedSite]]:
    # smoke-5 is configured but absent: its reset must fail, not be "confirmed" by the echo
    with SimRtuBus([SimDevice(3, SMOKE), SimDevice(1, LEAK)], echo=True) as sim:
        site = make_site(f"""
- name: rs485-1
  type: rtu
  port: {sim.path}
  timeout_s: {TIMEOUT_S}
  retries: 1
  offline_poll_s: 60
  devices:
    - {{name: smoke-3, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen, poll_interval_s: 0.2}}
    - {{name: smoke-5, profile: calectro-ug3-o-mb-r, device_id: 5, zone: hall, poll_interval_s: 0.2}}
    - {{name: leak-1, profile: acrel-aim-r100, device_id: 1, zone: electrical-room, poll_interval_s: 0.2}}
""")
        yield sim, site


async def test_worker_reset_of_an_absent_detector_fails_on_an_echoing_line(
    echo_site: tuple[SimRtuBus, LoadedSite], collect: Any
) -> None:
    sim, site = echo_site
    bus = site.config.buses[0]
    assert isinstance(bus, RtuBus) and bus.echo == "auto"
    q: asyncio.Queue[Observation] = asyncio.Queue()
    w = BusWorker(bus, site, q, SystemClock())
    task = asyncio.create_task(w.run())
    try:
        await collect(
            q, lambda s: {o.source for o in s if isinstance(o, StateChange)} >= {"smoke-3"}, 5
        )
        for target in ("smoke-5", "smoke-3"):
            w.commands.put_nowait(
                Command(target=target, action="reset", wall=time.time(), mono=time.monotonic())
            )
        seen = await collect(q, lambda s: sum(isinstance(o, CommandResult) for o in s) == 2, 5)
        results = {o.source: o for o in seen if isinstance(o, CommandResult)}
        assert not results["smoke-5"].ok, results["smoke-5"]
        assert "no reply" in results["smoke-5"].detail
        assert results["smoke-3"].ok, results["smoke-3"]
        assert sim.device(3).commands_received == ["reset"]
        st = w.status()
        assert st["echo"] == "auto" and st["line_echoes"] == "yes"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
