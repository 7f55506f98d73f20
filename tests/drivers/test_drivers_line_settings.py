"""The serial settings of a bus reach the kernel: parity, stop bits, data bits, speed.

A meter at 8E1 on a line opened as 8N1 answers nothing or garbage, a failure
that would otherwise only show on the ladder. A pty cannot produce a parity
error, and Linux's pty driver forces 8 data bits and no parity whatever is
asked (seen here: PARENB and CS7 set on the slave read back as CS8 without
PARENB). So parity and data bits are checked where the driver hands them on
(the pyserial port it opened), stop bits and speed also in the kernel:
termios requests on a pty's master act on its slave, so they are read from
the master while the driver holds the slave.
"""

from __future__ import annotations

import termios
from collections.abc import Callable

import pytest

from agent.siteconfig import LoadedSite
from agent.siteconfig.models import RtuBus
from drivers.bus import make_link
from drivers.link import RtuLink
from firmware_mocks import PtyPort


def _bus_yaml(path: str, extra: str) -> str:
    return f"""
- name: rs485-1
  type: rtu
  port: {path}
  {extra}
  devices:
    - {{name: smoke-3, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen}}
"""


@pytest.mark.parametrize(
    ("extra", "parity", "cstopb", "csize", "speed"),
    [
        ("baudrate: 9600", "N", False, termios.CS8, termios.B9600),
        ("{baudrate: 9600, parity: E}", "E", False, termios.CS8, termios.B9600),
        ("{baudrate: 19200, parity: O}", "O", False, termios.CS8, termios.B19200),
        ("{baudrate: 4800, parity: N, stopbits: 2}", "N", True, termios.CS8, termios.B4800),
        ("{baudrate: 9600, parity: E, bytesize: 7}", "E", False, termios.CS7, termios.B9600),
    ],
)
async def test_configured_line_settings_are_set_on_the_port(
    make_site: Callable[[str], LoadedSite],
    extra: str,
    parity: str,
    cstopb: bool,
    csize: int,
    speed: int,
) -> None:
    port = PtyPort()
    try:
        yaml = _bus_yaml(port.path, extra.strip("{}").replace(", ", "\n  "))
        site = make_site(yaml)
        bus = site.config.buses[0]
        assert isinstance(bus, RtuBus)
        link = make_link(bus)
        assert isinstance(link, RtuLink)
        await link.open()
        try:
            ser = link.line._ser
            assert ser is not None and ser.is_open
            assert (ser.parity, ser.stopbits, ser.bytesize) == (
                parity,
                2 if cstopb else 1,
                7 if csize == termios.CS7 else 8,
            )
            _iflag, _oflag, cflag, _lflag, ispeed, ospeed, _cc = termios.tcgetattr(port.master)
        finally:
            link.close()
    finally:
        port.vanish()
    assert bool(cflag & termios.CSTOPB) is cstopb
    assert (ispeed, ospeed) == (speed, speed)
