"""`firegate doctor`'s device check against firmware mocks on a pseudo-terminal.

The check reads each configured device once through the drivers' own link
(drivers.bus.make_link) and says, per device, PASS or FAIL with what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from agent.commands import doctor
from agent.commands.doctor import Context, Outcome, Result
from firmware_mocks import Fault, SimDevice, SimRtuBus, SimTcpServer, load_modbus_profile

SMOKE = "calectro-ug3-o-mb-r"
LEAKAGE = "acrel-aim-r100"


def write_site(tmp: Path, buses: str) -> Path:
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    path = tmp / "site.yaml"
    path.write_text(
        f"""version: 1
site: {{site_id: school-1, gateway_id: gw-1}}
zones:
  - id: kitchen
  - id: hall
buses:
{buses}
storage:
  state_dir: {state}
"""
    )
    return path


def rtu_bus(port: str, devices: list[tuple[str, str, int]], baudrate: int = 9600) -> str:
    lines = [
        "  - name: rs485-1",
        "    type: rtu",
        f"    port: {port}",
        f"    baudrate: {baudrate}",
        "    devices:",
    ]
    for name, profile, dev_id in devices:
        lines.append(
            f"      - {{name: {name}, profile: {profile}, device_id: {dev_id}, zone: kitchen}}"
        )
    return "\n".join(lines)


def ctx_for(path: Path) -> Context:
    ctx = Context(config_path=path, timeout_s=3.0)
    [r] = doctor.check_config(ctx)
    assert r.outcome is Outcome.PASS, r
    return ctx


async def devices(path: Path) -> dict[str, Result]:
    results = await doctor.check_devices(ctx_for(path))
    return {r.check: r for r in results}


@pytest.fixture
def bus() -> Iterator[SimRtuBus]:
    b = SimRtuBus(
        [
            SimDevice(1, load_modbus_profile(SMOKE)),
            SimDevice(2, load_modbus_profile(LEAKAGE)),
        ]
    ).start()
    try:
        yield b
    finally:
        b.stop()


async def test_missing_device_fails_by_name_and_the_others_pass(
    tmp_path: Path, bus: SimRtuBus
) -> None:
    bus.device(2).set_point("leakage_l1", 37)
    cfg = write_site(
        tmp_path,
        rtu_bus(
            bus.path,
            [("kitchen-smoke", SMOKE, 1), ("board-leakage", LEAKAGE, 2), ("hall-smoke", SMOKE, 5)],
        ),
    )
    got = await devices(cfg)
    assert set(got) == {"device kitchen-smoke", "device board-leakage", "device hall-smoke"}
    assert got["device kitchen-smoke"].outcome is Outcome.PASS, got
    assert "mounted = 1 (fault clear)" in got["device kitchen-smoke"].detail
    assert got["device board-leakage"].outcome is Outcome.PASS, got
    assert "leakage_l1 = 37 mA" in got["device board-leakage"].detail
    missing = got["device hall-smoke"]
    assert missing.outcome is Outcome.FAIL
    assert "id 5" in missing.detail and "no answer" in missing.detail
    # the others answer, so it is this device: its address or its power
    assert "address is set to 5" in missing.fix
    # the read really went over the pty to the mocks
    assert bus.device(1).requests == 1 and bus.device(2).requests == 1


async def test_nothing_answers_at_a_wrong_baud_rate(tmp_path: Path) -> None:
    # the devices run at 19200; the config says 9600: they see only framing errors
    with SimRtuBus(
        [SimDevice(1, load_modbus_profile(SMOKE))], baudrate=19200, check_baudrate=True
    ) as b:
        cfg = write_site(tmp_path, rtu_bus(b.path, [("kitchen-smoke", SMOKE, 1)], baudrate=9600))
        [r] = (await devices(cfg)).values()
    assert r.outcome is Outcome.FAIL
    assert "swap A and B" in r.fix and "baud rate" in r.fix and "9600" in r.fix


async def test_one_lost_reply_is_asked_again_not_failed(tmp_path: Path, bus: SimRtuBus) -> None:
    bus.device(1).inject(Fault.NO_REPLY, count=1)  # one frame lost on the line
    cfg = write_site(tmp_path, rtu_bus(bus.path, [("kitchen-smoke", SMOKE, 1)]))
    [r] = (await devices(cfg)).values()
    assert r.outcome is Outcome.PASS, r
    assert bus.device(1).requests == 2


async def test_corrupted_replies_point_at_line_settings(tmp_path: Path, bus: SimRtuBus) -> None:
    bus.device(1).inject(Fault.CRC)  # every reply, until cleared
    cfg = write_site(tmp_path, rtu_bus(bus.path, [("kitchen-smoke", SMOKE, 1)]))
    [r] = (await devices(cfg)).values()
    assert r.outcome is Outcome.FAIL
    assert "garbled" in r.detail and "termination" in r.fix


async def test_wrong_profile_is_named(tmp_path: Path, bus: SimRtuBus) -> None:
    # id 1 is a smoke detector; the config says it is a leakage monitor
    cfg = write_site(tmp_path, rtu_bus(bus.path, [("board-leakage", LEAKAGE, 1)]))
    [r] = (await devices(cfg)).values()
    assert r.outcome is Outcome.FAIL
    assert "refused" in r.detail and "illegal data address" in r.detail
    assert f"not a {LEAKAGE}" in r.fix and "firegate scan" in r.fix


async def test_port_held_by_the_running_agent_is_skipped_not_failed(
    tmp_path: Path, bus: SimRtuBus
) -> None:
    import serial

    cfg = write_site(tmp_path, rtu_bus(bus.path, [("kitchen-smoke", SMOKE, 1)]))
    held = serial.Serial(bus.path, exclusive=True, timeout=0)  # as the agent's bus worker does
    try:
        [r] = (await devices(cfg)).values()
    finally:
        held.close()
    # (the holder is this test process, which doctor leaves out of the names)
    assert r.outcome is Outcome.SKIP and "in use by" in r.detail
    assert "firegate status" in r.fix
    assert bus.device(1).requests == 0  # nothing sent behind the agent's back


async def test_port_missing_fails_every_device(tmp_path: Path) -> None:
    cfg = write_site(
        tmp_path,
        rtu_bus(str(tmp_path / "ttyUSB-gone"), [("a", SMOKE, 1), ("b", SMOKE, 2)]),
    )
    got = await devices(cfg)
    assert [r.outcome for r in got.values()] == [Outcome.FAIL, Outcome.FAIL]
    assert all("cannot open" in r.detail for r in got.values())


async def test_modbus_tcp_device(tmp_path: Path) -> None:
    with SimTcpServer([SimDevice(3, load_modbus_profile(SMOKE))]) as srv:
        cfg = write_site(
            tmp_path,
            f"""  - name: tcp-1
    type: tcp
    host: 127.0.0.1
    port: {srv.port}
    devices:
      - {{name: gw-missing, profile: {SMOKE}, device_id: 4, zone: kitchen}}
      - {{name: gw-smoke, profile: {SMOKE}, device_id: 3, zone: kitchen}}""",
        )
        got = await devices(cfg)
    # after the silent unit the link reconnects: the next device is still read
    assert got["device gw-smoke"].outcome is Outcome.PASS, got
    assert got["device gw-missing"].outcome is Outcome.FAIL
    assert "unit id 4" in got["device gw-missing"].fix


def test_cli_lists_devices_and_fails(
    tmp_path: Path, bus: SimRtuBus, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_site(
        tmp_path, rtu_bus(bus.path, [("kitchen-smoke", SMOKE, 1), ("hall-smoke", SMOKE, 9)])
    )
    skip = [a for n, _ in doctor.CHECKS if n not in ("config", "devices") for a in ("--skip", n)]
    rc = main(["doctor", "--config", str(cfg), *skip])
    out = capsys.readouterr().out
    assert rc == 1
    lines = {ln.split()[1] + " " + ln.split()[2]: ln for ln in out.splitlines() if " device " in ln}
    assert lines["device kitchen-smoke"].startswith("PASS"), out
    assert lines["device hall-smoke"].startswith("FAIL"), out
    assert "address is set to 9" in out


@pytest.mark.parametrize(
    ("adapter_echoes", "setting", "outcome", "says"),
    [
        (True, "", Outcome.PASS, "the echo is discarded (echo: auto)"),
        (True, "off", Outcome.FAIL, "confirmed by its own echo"),
        (False, "on", Outcome.FAIL, "does not echo, but the bus has echo: on"),
        (False, "", None, ""),
    ],
    ids=["echo-auto", "echo-but-off", "on-without-echo", "no-echo-auto"],
)
async def test_the_adapters_local_echo_is_reported(
    tmp_path: Path, adapter_echoes: bool, setting: str, outcome: Outcome | None, says: str
) -> None:
    with SimRtuBus([SimDevice(1, load_modbus_profile(SMOKE))], echo=adapter_echoes) as b:
        text = rtu_bus(b.path, [("kitchen-smoke", SMOKE, 1)])
        if setting:
            text = text.replace("    devices:", f"    echo: {setting}\n    devices:")
        got = await devices(write_site(tmp_path, text))
    assert got["device kitchen-smoke"].outcome is Outcome.PASS, got
    if outcome is None:
        assert "echo on rs485-1" not in got
        return
    r = got["echo on rs485-1"]
    assert r.outcome is outcome, r
    assert says in r.detail and b.path in r.detail
    if outcome is Outcome.FAIL:
        assert "set echo:" in r.fix
