"""`firegate scan` on a simulated bus; every profile loads and has a matching mock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main as firegate
from agent.siteconfig import available_profiles, find_profile, load_profile
from drivers import codec, frames
from drivers.link import RtuLink
from drivers.profile import DataType, ModbusProfile, PanelProfile
from drivers.scan import scan_bound_s, scan_line
from firmware_mocks import SimDevice, SimRtuBus, load_modbus_profile

ROOT = Path(__file__).resolve().parents[2]


def modbus_profiles() -> dict[str, ModbusProfile]:
    out = {}
    for name in available_profiles():
        p = load_profile(find_profile(name, ()))  # type: ignore[arg-type]
        if isinstance(p, ModbusProfile):
            out[name] = p
    return out


def test_all_profiles_load_and_required_models_exist() -> None:
    names = available_profiles()
    kinds = {}
    for n in names:
        p = load_profile(find_profile(n, ()))  # type: ignore[arg-type]
        kinds[n] = p
    assert {
        "acrel-aim-r100",
        "calectro-ug3-o-mb-r",
        "generic-electrical-fire",
        "generic-modbus-detector",
        "generic-panel",
    } <= set(names)
    assert isinstance(kinds["generic-panel"], PanelProfile)
    efire = kinds["generic-electrical-fire"]
    assert isinstance(efire, ModbusProfile)
    f32 = [p for p in efire.points if p.type is DataType.F32]
    assert len(f32) >= 5 and all(p.word_order.value == "little" for p in f32)
    assert "reset" in kinds["calectro-ug3-o-mb-r"].commands  # type: ignore[union-attr]
    assert "reset" in kinds["generic-modbus-detector"].commands  # type: ignore[union-attr]


@pytest.mark.parametrize("name", sorted(modbus_profiles()))
async def test_every_profile_has_a_matching_mock(name: str) -> None:
    prof = modbus_profiles()[name]
    dev = SimDevice(5, prof)
    expected: dict[str, float] = {}
    ident_at = prof.identify.address if prof.identify is not None else None
    for i, p in enumerate(prof.points):
        if p.address == ident_at:
            continue  # holds the model code the scan looks for
        if p.quantity is not None or (
            not p.table.is_bit and not p.flags and p.type is not DataType.BOOL
        ):
            v = {DataType.F32: 20.5 + i, DataType.S16: -(i + 1)}.get(p.type, float(i + 1))
            v = v * p.scale + p.offset if p.type is not DataType.F32 else v
            dev.set_point(p.name, v)
            expected[p.name] = v
    with SimRtuBus([dev]) as sim:
        link = RtuLink(sim.path, 9600)
        await link.open()
        raws: dict[str, int] = {}
        try:
            for block in codec.plan_reads(prof):
                reply = frames.parse_reply(block.pdu, await link.transact(5, block.pdu, 0.2))
                raws.update(codec.block_raws(prof, block, reply.registers, reply.bits))
            if prof.identify is not None:
                fc = (
                    frames.READ_HOLDING
                    if prof.identify.table.value == "holding"
                    else frames.READ_INPUT
                )
                pdu = frames.read_request(fc, prof.pdu_address(prof.identify.address), 1)
                reg = frames.parse_reply(pdu, await link.transact(5, pdu, 0.2)).registers[0]
                assert reg & prof.identify.mask == prof.identify.value & prof.identify.mask
            for cname, c in prof.commands.items():
                pdu = frames.write_register_request(prof.pdu_address(c.address), c.value)
                frames.parse_reply(pdu, await link.transact(5, pdu, 0.2))
                assert dev.commands_received[-1] == cname
        finally:
            link.close()
    assert set(raws) == {p.name for p in prof.points}
    for pname, v in expected.items():
        got = codec.engineering(prof.point_by_name[pname], raws[pname])
        assert got == pytest.approx(v, rel=1e-6), pname
    ev = codec.evaluate(prof, raws)
    assert not any(active for active, _ in ev.states.values())  # a fresh mock is quiet


async def test_scan_finds_ids_in_bounded_time() -> None:
    devs = [
        SimDevice(3, load_modbus_profile("calectro-ug3-o-mb-r")),
        SimDevice(1, load_modbus_profile("acrel-aim-r100")),
        SimDevice(17, load_modbus_profile("generic-modbus-detector")),
        SimDevice(9, load_modbus_profile("generic-electrical-fire")),
    ]
    with SimRtuBus(devs, emulate_wire_time=True, baudrate=9600) as sim:
        ids = range(1, 21)
        bound = scan_bound_s(len(ids), 1, 0.05, 9600)
        t0 = time.monotonic()
        found = await scan_line(
            sim.path, 9600, "N", 1, ids, timeout_s=0.05, profiles=modbus_profiles()
        )
        took = time.monotonic() - t0
    assert [f.device_id for f in found] == [1, 3, 9, 17]
    assert took <= bound + 0.5, (took, bound)
    sugg = {f.device_id: [n for n, _ in f.suggestions] for f in found}
    assert sugg[1][0] == "acrel-aim-r100"
    assert sugg[3] == ["calectro-ug3-o-mb-r"]
    assert sugg[17][0] == "generic-modbus-detector"
    assert sugg[9] == ["generic-electrical-fire"]


def test_scan_command_finds_baud_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with SimRtuBus(
        [SimDevice(4, load_modbus_profile("calectro-ug3-o-mb-r"))],
        baudrate=19200,
        check_baudrate=True,
    ) as sim:
        code = firegate(
            [
                "scan",
                "--port",
                sim.path,
                "--baudrate",
                "9600,19200",
                "--ids",
                "1-6",
                "--timeout",
                "0.05",
            ]
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "id   4: answers at 19200 8N1" in out
    assert "calectro-ug3-o-mb-r" in out
    assert "at most" in out


def test_scan_command_bad_port_and_args(capsys: pytest.CaptureFixture[str]) -> None:
    assert firegate(["scan", "--port", "/nonexistent/ttyUSB9", "--ids", "1-2"]) == 2
    assert "cannot open" in capsys.readouterr().err
    assert firegate(["scan", "--port", "/dev/null", "--ids", "0-300"]) == 2
    assert firegate(["scan", "--port", "/dev/null", "--parity", "X"]) == 2


def test_mock_cli_serves_and_plays_script(tmp_path: Path) -> None:
    spec = tmp_path / "sim.yaml"
    link = tmp_path / "ttySIM"
    spec.write_text(
        f"""
bus: {{type: rtu, baudrate: 9600, emulate_wire_time: false, link: {link}}}
devices:
  - {{id: 3, profile: calectro-ug3-o-mb-r}}
  - {{id: 1, profile: acrel-aim-r100}}
script:
  - {{at_s: 0.3, device: 3, point: smoke_alarm, value: 1}}
  - {{at_s: 0, device: 1, point: leakage_l1, value: 0, ramp_to: 100, over_s: 0.5}}
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_mocks", "run", str(spec), "--duration", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"pty: {link}")
        time.sleep(0.8)

        async def read() -> tuple[bool, int]:
            lk = RtuLink(str(link), 9600)
            await lk.open()
            try:
                pdu = frames.read_request(frames.READ_DISCRETE, 2, 1)
                alarm = frames.parse_reply(pdu, await lk.transact(3, pdu, 0.3)).bits[0]
                pdu = frames.read_request(frames.READ_HOLDING, 0x4A, 1)
                leak = frames.parse_reply(pdu, await lk.transact(1, pdu, 0.3)).registers[0]
                return alarm, leak
            finally:
                lk.close()

        alarm, leak = asyncio.run(read())
        assert alarm is True and leak == 100
    finally:
        proc.terminate()
        proc.wait(5)


def test_mock_cli_rejects_bad_file(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("devices: [{id: 3, profile: calectro-ug3-o-mb-r, colour: red}]\n")
    r = subprocess.run(
        [sys.executable, "-m", "firmware_mocks", "run", str(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "colour" in r.stderr


def test_build_driver_parts_from_the_example_site() -> None:
    from agent.clock import SystemClock
    from agent.siteconfig import load_site
    from config import EXAMPLE_SITE
    from drivers.parts import build_driver_parts

    site = load_site(EXAMPLE_SITE)
    dp = build_driver_parts(site, asyncio.Queue(), SystemClock())
    assert [w.name for w in dp.workers] == ["rs485-1"]
    assert [p.name for p in dp.panels] == ["panel"]
    assert dp.commands_by_device["kitchen-smoke-1"] is dp.workers[0].commands
    for p in dp.parts:
        st = p.status()
        assert isinstance(st, dict) and p.progress_mono > 0


def test_mock_keeps_identity_and_unflagged_bits_when_a_timeline_sets_every_point() -> None:
    # a scenario timeline sets every point to its value at rest, status words included
    for name in ("acrel-aim-r100", "generic-modbus-detector"):
        prof = load_modbus_profile(name)
        dev = SimDevice(1, prof)
        for p in prof.points:
            dev.set_point(p.name, 0)
        ident = prof.identify
        assert ident is not None
        got = dev.get_register(ident.table, prof.pdu_address(ident.address))
        assert got & ident.mask == ident.value & ident.mask, name
    acrel = SimDevice(1, load_modbus_profile("acrel-aim-r100"))
    acrel.set_point("fault_flags_1_6", 0xFFFF)
    assert acrel.get_raw("fault_flags_1_6") == 0x1FFF  # 12 flag bits set, meter type 1 kept
