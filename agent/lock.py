"""One agent per state directory.

Two agents on one state directory share outbox.db and status.json, fight over
the serial ports (each marks the other's devices offline) and over one MQTT
client id (the broker drops one whenever the other connects). ``firegate run``
therefore holds an exclusive ``flock`` on ``<state_dir>/agent.lock`` for its
whole life; the kernel releases it when the process ends, however it ends
(kill -9, power cut: no stale lock to clean up). The file holds the pid of
the agent that holds it, for the message that refuses a second one.

Only ``run`` takes the lock: ``doctor``, ``status`` and ``check-config`` read
beside a running agent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

LOCK_FILE_NAME = "agent.lock"


class AlreadyRunning(Exception):
    """Another process holds the agent lock of this state directory."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{who} holds {path}")


class AgentLock:
    """The held lock; ``release`` (or the process's end) lets another agent start."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def holder_pid(path: Path) -> int | None:
    """The pid written in a lock file, or None when it has none (or cannot be read)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def acquire(state_dir: Path) -> AgentLock:
    """Take the agent lock of ``state_dir`` (created if missing), without waiting.

    Raises AlreadyRunning when another process holds it, OSError when the
    directory or file cannot be created or opened.
    """
    state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE_NAME
    # O_CLOEXEC (Python's default): a child process (ffmpeg, a helper) never inherits the lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise AlreadyRunning(path, holder_pid(path)) from None
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without the pid; the message then says "another process"
    return AgentLock(path, fd)
