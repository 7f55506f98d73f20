"""A pseudo-terminal pair standing in for a USB RS-485 adapter.

The driver opens ``path`` with pyserial exactly as it would open
/dev/ttyUSB0; the simulation holds the master end.

``path`` is a symlink (in a private temp folder, or where the caller says)
to the current /dev/pts/N. A port that *disappears* is emulated by closing
both ends of the pty (the driver's open descriptor gets EIO / hang-up, as
with an unplugged USB adapter) and removing the symlink (a reopen fails with
"No such file", as /dev/ttyUSB0 does while unplugged). *Coming back* creates
a fresh pty pair and points the symlink at it, the way udev recreates the
device node, so a driver that reopens by path finds it again.

The simulation keeps its own descriptor of the slave end open: without it
the master reads EIO whenever the driver has the port closed.

Line speed: a pty carries bytes whatever the baud rate, a real line does not.
With ``baudrate`` set (the speed the simulated devices are configured for),
bytes written while the driver's end is set to another speed arrive as
garbage (``garble``), about as many characters as the driver's UART would
make of them, never the bytes sent; the owner garbles what it reads likewise.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import termios
import tty
from pathlib import Path

_SPEEDS = {
    getattr(termios, f"B{b}"): b
    for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
    if hasattr(termios, f"B{b}")
}


class PtyPort:
    def __init__(self, link_path: str | Path | None = None, *, baudrate: int | None = None) -> None:
        self.baudrate = baudrate
        self._rng = random.Random(baudrate or 0)
        if link_path is None:
            self._tmpdir: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
                prefix="firegate-sim-"
            )
            link_path = Path(self._tmpdir.name) / "ttySIM0"
        else:
            self._tmpdir = None
        self.path = str(link_path)
        self.master = -1
        self._slave = -1
        self.create()

    @property
    def present(self) -> bool:
        return self.master >= 0

    @property
    def slave_name(self) -> str:
        return os.ttyname(self._slave) if self._slave >= 0 else ""

    def create(self) -> None:
        """Open a fresh pty pair (raw, non-blocking master) and point ``path`` at it."""
        if self.present:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(master, False)
        self.master, self._slave = master, slave
        tmp = f"{self.path}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)  # atomic: a reopen never sees a half-made link

    def vanish(self) -> None:
        """Unplug: close both ends and remove the path."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for fd in (self.master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = -1

    def line_baudrate(self) -> int | None:
        """The baud rate the driver configured on its end (None if unknown)."""
        if self._slave < 0:
            return None
        try:
            attrs = termios.tcgetattr(self._slave)
        except termios.error:
            return None
        return _SPEEDS.get(attrs[5])

    def speed_ok(self) -> bool:
        """Whether the driver's end runs at ``baudrate`` (or either is unknown)."""
        if self.baudrate is None:
            return True
        line = self.line_baudrate()
        return line is None or line == self.baudrate

    def garble(self, data: bytes) -> bytes:
        """What a UART at the driver's speed makes of ``data`` sent at ``baudrate``
        (or the reverse): framing errors, about ``len * its rate / ours`` characters."""
        line = self.line_baudrate() or self.baudrate or 1
        n = max(1, round(len(data) * line / (self.baudrate or line)))
        return self._rng.randbytes(n)

    def write(self, data: bytes, *, own_speed: bool = False) -> int:
        """Write to the driver's end; bytes that do not fit the pty buffer are dropped.
        Garbled when the driver's end runs at another speed, unless ``own_speed``
        (bytes made at the driver's own speed: an adapter's local echo)."""
        if self.master < 0:
            return 0
        if not own_speed and not self.speed_ok():
            data = self.garble(data)
        try:
            return os.write(self.master, data)
        except (BlockingIOError, OSError):
            return 0

    def close(self) -> None:
        self.vanish()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
