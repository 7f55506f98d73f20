"""Garbage on the line never crashes the driver and never becomes a value."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.clock import SystemClock
from agent.events import Observation, Reading
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import RtuBus
from drivers import codec, frames
from drivers.bus import BusWorker
from drivers.frames import ModbusError
from drivers.link import RtuLink
from firmware_mocks import SimDevice, SimRtuBus, load_modbus_profile

ACREL = load_modbus_profile("acrel-aim-r100")
BLOCK = codec.plan_reads(ACREL)[1]  # the 24 registers of leakage and setpoints


@pytest.fixture(scope="module")
def sim() -> Iterator[SimRtuBus]:
    dev = SimDevice(1, ACREL)
    for i in range(1, 13):
        dev.set_point(f"leakage_l{i}", 10 * i)
        dev.set_point(f"setpoint_l{i}", 300 + i)
    with SimRtuBus([dev]) as bus:
        yield bus


def _mangle(mode: str, garbage: bytes, pos: int) -> Callable[[bytes], bytes]:
    def f(frame: bytes) -> bytes:
        if mode == "replace":
            return garbage
        if mode == "prefix":
            return garbage + frame
        if mode == "suffix":
            return frame + garbage
        if mode == "splice":
            p = pos % (len(frame) + 1)
            return frame[:p] + garbage + frame[p:]
        # flip: corrupt bytes of the real frame in place
        b = bytearray(frame)
        for i, g in enumerate(garbage[:8]):
            b[(pos + i * 7) % len(b)] ^= g or 1
        return bytes(b)

    return f


async def _one(path: str) -> tuple[int, ...] | None:
    link = RtuLink(path, 9600, turnaround_s=0.0)
    await link.open()
    try:
        reply = await link.transact(1, BLOCK.pdu, 0.03)
        return frames.parse_reply(BLOCK.pdu, reply).registers
    except ModbusError:
        return None
    finally:
        link.close()


@given(
    mode=st.sampled_from(["replace", "prefix", "suffix", "splice", "flip"]),
    garbage=st.binary(min_size=1, max_size=300),
    pos=st.integers(0, 1000),
)
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_link_garbage_never_a_wrong_value(
    sim: SimRtuBus, mode: str, garbage: bytes, pos: int
) -> None:
    dev = sim.device(1)
    dev.reply_filter = _mangle(mode, garbage, pos)
    try:
        regs = asyncio.run(_one(sim.path))
    finally:
        dev.reply_filter = None
    truth = tuple(dev.get_register(BLOCK.table, BLOCK.start + i) for i in range(BLOCK.count))
    if regs is not None:
        assert regs == truth
    if mode in ("prefix", "suffix"):
        # the real frame is on the line whole: it is found behind or before the noise
        assert regs == truth


async def test_worker_survives_noise_bursts_between_polls(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    dev = SimDevice(1, ACREL)
    dev.set_point("leakage_l5", 42)
    rng = random.Random(7)
    with SimRtuBus([dev]) as sim:
        site = make_site(f"""
- name: rs485-1
  type: rtu
  port: {sim.path}
  timeout_s: 0.05
  retries: 1
  devices:
    - {{name: leak-1, profile: acrel-aim-r100, device_id: 1, zone: electrical-room, poll_interval_s: 0.1}}
""")
        bus = site.config.buses[0]
        assert isinstance(bus, RtuBus)
        q: asyncio.Queue[Observation] = asyncio.Queue()
        w = BusWorker(bus, site, q, SystemClock())
        task = asyncio.create_task(w.run())
        try:
            for _ in range(60):
                sim.send_garbage(rng.randbytes(rng.randint(1, 80)))
                await asyncio.sleep(rng.uniform(0.005, 0.03))
            assert not task.done()
            seen = []
            while not q.empty():
                seen.append(q.get_nowait())
            vals = {r.value for r in seen if isinstance(r, Reading) and r.point == "loop5"}
            assert vals == {42.0}
            assert w.status()["devices"]["leak-1"]["polls_ok"] >= 5
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
