"""A simulated fire alarm panel printer port: event lines written on a pty.

The reader under test opens ``path`` (see ``PtyPort``: a stable symlink; a
port that vanishes and comes back is emulated there). Lines use the generic
panel format of config/profiles/generic-panel.yaml unless written raw.
"""

from __future__ import annotations

import time
from pathlib import Path

from firmware_mocks.pty import PtyPort


class SimPanel:
    def __init__(self, *, link_path: str | Path | None = None, eol: bytes = b"\r\n") -> None:
        self.port = PtyPort(link_path)
        self.eol = eol

    @property
    def path(self) -> str:
        return self.port.path

    def write_raw(self, data: bytes) -> int:
        return self.port.write(data)

    def write_line(self, text: str, *, stamp: bool = True) -> None:
        """One event line, with the panel's date and time in front (as printers do)."""
        prefix = time.strftime("%Y-%m-%d %H:%M:%S ") if stamp else ""
        self.port.write((prefix + text).encode("ascii", errors="replace") + self.eol)

    def fire(self, loop: int, address: int, text: str = "") -> None:
        self.write_line(f"FIRE     L{loop} A{address:03d} {text}".rstrip())

    def prealarm(self, loop: int, address: int, text: str = "") -> None:
        self.write_line(f"PREALARM L{loop} A{address:03d} {text}".rstrip())

    def fault(self, loop: int, address: int, text: str = "") -> None:
        self.write_line(f"FAULT    L{loop} A{address:03d} {text}".rstrip())

    def restore(self, loop: int, address: int) -> None:
        self.write_line(f"RESTORE  L{loop} A{address:03d}")

    def reset(self) -> None:
        self.write_line("RESET")

    def vanish(self) -> None:
        self.port.vanish()

    def reappear(self) -> None:
        self.port.create()

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> SimPanel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
