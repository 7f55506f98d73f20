"""Serial settings the adapter refuses are a located fault with what to change, in
`run`, doctor and scan; never a traceback, a restart loop or "internal error".

The port is a real pty; the adapter's refusal is the kernel's answer to
tcsetattr (EINVAL, as a USB adapter without parity gives), injected into the
real `firegate` processes by a sitecustomize on their PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_mocks import SimDevice, SimRtuBus, load_modbus_profile

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "calectro-ug3-o-mb-r"

# an adapter without parity: any setting with PARENB is refused, as its driver does
REFUSE_PARITY = """
import termios
_real = termios.tcsetattr
def tcsetattr(fd, when, attrs):
    if attrs[2] & termios.PARENB:
        raise termios.error(22, "Invalid argument")
    return _real(fd, when, attrs)
termios.tcsetattr = tcsetattr
"""


@pytest.fixture
def refusing(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "sitecustomize.py").write_text(REFUSE_PARITY)
    return {**os.environ, "PYTHONPATH": f"{d}{os.pathsep}{ROOT}"}


def firegate(
    env: dict[str, str], *args: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def site(tmp_path: Path, port: str, parity: str = "E") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: kitchen}]\n"
        "buses:\n"
        f"  - {{name: rs485-1, type: rtu, port: {port}, parity: {parity}, offline_after: 1,\n"
        f"      devices: [{{name: smoke-1, profile: {SMOKE}, device_id: 1, zone: kitchen,\n"
        "                 poll_interval_s: 0.5}]}\n"
        f"storage: {{state_dir: {tmp_path}/state}}\n"
    )
    return path


@pytest.fixture
def line() -> SimRtuBus:
    with SimRtuBus([SimDevice(1, load_modbus_profile(SMOKE))]) as sim:
        yield sim


def test_run_reports_the_refused_settings_and_keeps_running(
    tmp_path: Path, refusing: dict[str, str], line: SimRtuBus
) -> None:
    p = firegate(refusing, "run", "--config", str(site(tmp_path, line.path)), "--exit-after", "4")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "failed:" not in p.stderr, p.stderr
    assert f"{line.path} refuses 9600 8E1 (Invalid argument)" in p.stderr, p.stderr
    assert "set baudrate, parity, stopbits and bytesize" in p.stderr
    assert "restart" not in p.stderr.lower(), p.stderr  # no part crash loop


def test_doctor_says_what_to_change(
    tmp_path: Path, refusing: dict[str, str], line: SimRtuBus
) -> None:
    skip = [
        a
        for c in ("service-user", "files", "cameras", "model", "broker", "storage", "clock")
        for a in ("--skip", c)
    ]
    p = firegate(refusing, "doctor", "--config", str(site(tmp_path, line.path)), *skip)
    out = p.stdout + p.stderr
    assert "check itself failed" not in out and "Traceback" not in out, out
    assert "refuses 9600 8E1" in out, out
    assert "parity" in out and "adapter" in out and "firegate scan" in out, out


def test_scan_skips_refused_settings_and_finds_the_device(
    refusing: dict[str, str], line: SimRtuBus
) -> None:
    p = firegate(refusing, "scan", "--port", line.path, "--parity", "E,N", "--ids", "1-2")
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert "refuses 9600 8E1" in p.stdout + p.stderr
    assert "id   1: answers at 9600 8N1" in p.stdout, p.stdout
    assert p.returncode == 0


def test_scan_with_only_refused_settings_exits_2_with_the_fix(
    refusing: dict[str, str], line: SimRtuBus
) -> None:
    p = firegate(refusing, "scan", "--port", line.path, "--parity", "E", "--ids", "1-2")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert "refuses 9600 8E1" in p.stderr and "adapter" in p.stderr, p.stderr


async def test_a_port_that_is_no_serial_port_says_so(tmp_path: Path) -> None:
    from drivers.frames import PortSettingsError
    from drivers.link import RtuLink

    not_a_tty = tmp_path / "ttyUSB0"
    not_a_tty.write_bytes(b"")  # a plain file where the adapter should be
    with pytest.raises(PortSettingsError, match=r"is not a serial port .*set port: to the adapter"):
        await RtuLink(str(not_a_tty), 9600).open()
