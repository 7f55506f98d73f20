"""The mocks run at the line speed they were configured for: a master at another
speed gets garbage, never an answer, so scan's baud search and doctor's check
are rehearsed for real (a mock at 19200 used to answer a 9600 master)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main as firegate
from drivers import frames
from drivers.frames import FrameError, NoReply
from drivers.link import RtuLink
from firmware_mocks import SimDevice, SimRtuBus, load_modbus_profile
from tests.ops.test_ops_doctor_devices import devices, rtu_bus, write_site

SMOKE = "calectro-ug3-o-mb-r"
READ = frames.read_request(frames.READ_HOLDING, 0, 1)


async def _read(path: str, baudrate: int) -> bytes:
    link = RtuLink(path, baudrate, turnaround_s=0.0)
    await link.open()
    try:
        return await link.transact(4, READ, 0.2)
    finally:
        link.close()


async def test_a_master_at_another_speed_never_gets_an_answer() -> None:
    with SimRtuBus([SimDevice(4, load_modbus_profile(SMOKE))], baudrate=19200) as sim:
        frames.parse_reply(READ, await _read(sim.path, 19200))  # the right speed: a reply
        for wrong in (9600, 38400):
            with pytest.raises((NoReply, FrameError)):
                await _read(sim.path, wrong)
        assert sim.device(4).requests == 1  # the device never understood the others


async def test_doctor_fails_a_9600_config_against_a_19200_bus(tmp_path: Path) -> None:
    with SimRtuBus([SimDevice(1, load_modbus_profile(SMOKE))], baudrate=19200) as sim:
        cfg = write_site(tmp_path, rtu_bus(sim.path, [("kitchen-smoke", SMOKE, 1)], baudrate=9600))
        [r] = (await devices(cfg)).values()
        assert r.outcome.value == "FAIL", r
        assert "baud rate" in r.fix and "9600" in r.fix
        cfg = write_site(tmp_path, rtu_bus(sim.path, [("kitchen-smoke", SMOKE, 1)], baudrate=19200))
        [r] = (await devices(cfg)).values()
        assert r.outcome.value == "PASS", r


def test_scan_auto_finds_the_bus_speed_not_the_first_tried(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with SimRtuBus([SimDevice(4, load_modbus_profile(SMOKE))], baudrate=19200) as sim:
        code = firegate(
            ["scan", "--port", sim.path, "--baudrate", "auto", "--ids", "3-5", "--timeout", "0.05"]
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "id   4: answers at 19200 8N1" in out, out
    assert "answers at 9600" not in out and "answers at 1200" not in out, out
