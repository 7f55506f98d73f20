"""sd_notify: tell systemd how the agent is doing (READY, STATUS, WATCHDOG, STOPPING).

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named
in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace).
Outside systemd the variable is unset and every call is a cheap no-op, so the
agent runs the same from a shell, in tests and under the service manager.

Sending never raises: a lost notification must not take the agent down. The
first failure is logged as a warning, later ones at debug level.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

STATUS_MAX_CHARS = 200  # systemctl shows one line; keep it readable


class Notifier:
    """A connection to systemd's notification socket (or nothing, outside systemd).

    ``env`` defaults to ``os.environ``; tests pass their own mapping.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET") or None
        self._sock: socket.socket | None = None
        self._warned = False
        self.watchdog_interval_s = _watchdog_interval_s(env)

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notification socket."""
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (keys in upper case). True when it was sent."""
        if self.address is None:
            return False
        text = "\n".join(f"{k.upper()}={_one_line(str(v))}" for k, v in fields.items())
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never stall the event loop on systemd
            self._sock.sendto(text.encode(), addr)
            return True
        except OSError as e:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address, e)
                self._warned = True
            else:
                log.debug("cannot notify systemd: %s", e)
            self.close()  # reopen next time, in case the socket was replaced
            return False

    def ready(self, status: str = "") -> bool:
        """Start-up is complete (Type=notify waits for this)."""
        return self.send(READY=1, STATUS=status) if status else self.send(READY=1)

    def status(self, text: str) -> bool:
        """A one-line summary shown by ``systemctl status firegate``."""
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        """Feed the watchdog (call only while the agent makes progress)."""
        return self.send(WATCHDOG=1)

    def stopping(self, status: str = "") -> bool:
        """Shutdown has begun."""
        return self.send(STOPPING=1, STATUS=status) if status else self.send(STOPPING=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    # a newline would start a new KEY=value assignment inside the datagram
    line = " ".join(text.split())
    return line if len(line) <= STATUS_MAX_CHARS else line[: STATUS_MAX_CHARS - 3] + "..."


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """The watchdog timeout systemd expects us to beat, or None when there is none.

    ``WATCHDOG_PID``, when set, names the process that should feed it: a child
    that inherited the environment must not feed its parent's watchdog.
    """
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return None
    return value / 1_000_000 if value > 0 else None
