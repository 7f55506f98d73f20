"""A private mosquitto on 127.0.0.1, for the demo, tests and benchmarks.

One broker per use, on a free port, with its config, log and (optionally)
persistence in a folder of its own. ``stop`` always ends the process.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class BrokerError(RuntimeError):
    """mosquitto is missing, or did not start."""


def find_mosquitto() -> str | None:
    """The mosquitto executable (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(p, os.X_OK):
            return p
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """``mosquitto -c <folder>/mosquitto.conf`` listening on 127.0.0.1:``port``.

    ``config`` adds lines (TLS, password file, limits); ``persistence`` keeps
    sessions and queued messages across ``terminate``/``start`` on the same port;
    ``argv_prefix`` wraps the command (e.g. a parent-death guard);
    ``new_session`` keeps a terminal's Ctrl-C from reaching it directly.
    """

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        anonymous: bool = True,
        persistence: bool = False,
        config: str = "",
        argv_prefix: Sequence[str] = (),
        new_session: bool = False,
        exe: str | None = None,
    ) -> None:
        found = exe or find_mosquitto()
        if found is None:
            raise BrokerError("mosquitto is not installed (sudo apt-get install mosquitto)")
        self.exe = found
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.argv_prefix = tuple(argv_prefix)
        self.new_session = new_session
        self.conf = self.folder / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            f"log_dest file {self.folder / 'mosquitto.log'}",
        ]
        if os.geteuid() == 0:
            # as root, mosquitto would drop to user "mosquitto" and lose our files
            lines.insert(0, f"user {pwd.getpwuid(0).pw_name}")
        if persistence:
            (self.folder / "data").mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {self.folder / 'data'}/"]
        else:
            lines.append("persistence false")
        self.conf.write_text("\n".join(lines) + "\n" + config)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start it and wait until it accepts connections; BrokerError if it does not."""
        self.proc = subprocess.Popen(
            [*self.argv_prefix, self.exe, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.new_session,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port}: {self.log()}")

    def terminate(self) -> None:
        """A clean stop (sessions saved with persistence); ``start`` brings it back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case it was paused
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stop(self) -> None:
        """End it, whatever state it is in."""
        self.terminate()
        self.proc = None

    def pause(self) -> None:
        """Freeze it (no PUBACK, no disconnect): an unresponsive broker."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        p = self.folder / "mosquitto.log"
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""
