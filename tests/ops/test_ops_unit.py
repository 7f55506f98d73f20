"""What the systemd unit lets the agent touch, and doctor's check of it.

The unit is the real systemd/firegate.service; ports are real pseudo-terminals
(their driver is "pts"), with the kernel's driver table given where a test
needs a port kind this machine does not have (ttyAMA, ttySC ...)."""

from __future__ import annotations

import os
import pty
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.commands import doctor
from agent.commands.doctor import Context, Outcome, check_unit
from agent.siteconfig import load_site
from agent.unitcheck import char_majors, device_refusal, read_unit, state_dir_refusal

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "firegate.service"
RULES = ROOT / "systemd" / "99-firegate-serial.rules"
GATEWAY_UARTS = ("ttyAMA", "ttymxc", "ttySC", "ttyUSB", "ttyACM", "ttyS", "ttyLP", "ttySTM")


@pytest.fixture
def pty_port() -> Iterator[Path]:
    master, slave = pty.openpty()
    try:
        yield Path(os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("kind", GATEWAY_UARTS)
def test_unit_allows_the_serial_ports_of_gateways(pty_port: Path, kind: str) -> None:
    """Give the pty's major the driver name of each gateway UART kind: the unit allows it."""
    major = os.major(os.stat(pty_port).st_rdev)
    assert device_refusal(read_unit(UNIT), pty_port, majors={major: {kind}}) is None


def test_unit_refuses_other_devices(pty_port: Path) -> None:
    why = device_refusal(read_unit(UNIT), pty_port, majors=char_majors())
    assert why is not None and "pts" in why and "char-ttyAMA" in why


def test_udev_rule_covers_the_same_kinds_as_the_unit() -> None:
    kernel = next(line for line in RULES.read_text().splitlines() if line.startswith("KERNEL!="))
    covered = set(re.findall(r"(tty[A-Za-z]+)\[0-9\]\*", kernel))
    allowed = set(re.findall(r"^DeviceAllow=char-(tty\w+) rw", UNIT.read_text(), re.M))
    assert {"ttyAMA", "ttymxc", "ttySC"} <= covered
    assert covered <= allowed  # every port the rule prepares, the service may open
    assert allowed - covered == {"ttyS"}  # PC UARTs: dialout already, no rule needed


def test_state_dir_outside_var_lib_is_read_only_under_the_unit(tmp_path: Path) -> None:
    view = read_unit(UNIT)
    assert state_dir_refusal(view, Path("/var/lib/firegate")) is None
    why = state_dir_refusal(view, Path("/srv/firegate/state"))
    assert why is not None and "read-only" in why and "ProtectSystem=strict" in why
    # a drop-in (systemctl edit firegate) makes it writable
    unit = tmp_path / "firegate.service"
    unit.write_text(UNIT.read_text())
    (tmp_path / "firegate.service.d").mkdir()
    (tmp_path / "firegate.service.d" / "override.conf").write_text(
        "[Service]\nReadWritePaths=/srv/firegate\n"
    )
    assert state_dir_refusal(read_unit(unit), Path("/srv/firegate/state")) is None
    # an empty assignment resets a list, as in systemd
    (tmp_path / "firegate.service.d" / "zz.conf").write_text("[Service]\nReadWritePaths=\n")
    assert state_dir_refusal(read_unit(unit), Path("/srv/firegate/state")) is not None


def _ctx(tmp_path: Path, port: Path, state_dir: str, unit: Path) -> Context:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        "site: {site_id: s, gateway_id: g}\nzones: [{id: hall}]\n"
        "buses:\n"
        f"  - {{name: rs485-1, type: rtu, port: {port}, devices:\n"
        "      [{name: d1, profile: calectro-ug3-o-mb-r, device_id: 1, zone: hall}]}\n"
        f"storage: {{state_dir: {state_dir}}}\n"
    )
    return Context(config_path=cfg, site=load_site(cfg), unit_path=unit)


def test_doctor_checks_ports_and_state_dir_against_the_installed_unit(
    tmp_path: Path, pty_port: Path
) -> None:
    unit = tmp_path / "firegate.service"
    unit.write_text(UNIT.read_text())
    results = check_unit(_ctx(tmp_path, pty_port, "/srv/firegate", unit))
    by = {r.check: r for r in results}
    assert by["unit"].outcome is Outcome.FAIL and "ReadWritePaths=/srv/firegate" in by["unit"].fix
    port = by["unit rs485-1"]
    assert port.outcome is Outcome.FAIL and "pts" in port.detail
    assert f"DeviceAllow={pty_port} rw" in port.fix and "systemctl edit firegate" in port.fix

    (tmp_path / "firegate.service.d").mkdir()
    (tmp_path / "firegate.service.d" / "site.conf").write_text(
        f"[Service]\nReadWritePaths=/srv/firegate\nDeviceAllow={pty_port} rw\n"
    )
    (ok,) = check_unit(_ctx(tmp_path, pty_port, "/srv/firegate", unit))
    assert ok.outcome is Outcome.PASS and "site.conf" in ok.detail


def test_doctor_skips_the_unit_check_where_none_is_installed(tmp_path: Path) -> None:
    (r,) = check_unit(_ctx(tmp_path, Path("/dev/ttyUSB7"), "/var/lib/firegate", tmp_path / "x"))
    assert r.outcome is Outcome.SKIP
    assert ("unit", check_unit) in doctor.CHECKS
