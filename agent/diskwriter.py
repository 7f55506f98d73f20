"""File writes off the event loop: one writer thread per state folder.

An SD card can stall for a minute (wear levelling, a dying card): a write
done on the event loop would stop every alarm for that minute, and the
watchdog would restart the agent into the same stall. So the small files
the agent keeps beside the outbox (``status.json``, ``episodes.json``, the
nuisance log) are written here, on one daemon thread per state folder, in
the order they were handed over; callers never wait for the disk.

* A write keyed by a name (one file rewritten whole) replaces the queued
  write of the same key that has not started yet: the latest content wins,
  and a stalled disk never piles up copies of the status file.
* Unkeyed writes (appends) are kept in order, at most ``max_queue``; beyond
  that the oldest is dropped and counted (``dropped``), with a log line.
* ``stalled_s()`` says how long the write in progress has been running, for
  whoever reports a stalled disk (the engine runner sends it as a FAULT).

Time here is the real monotonic clock: a disk stall is physical.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_QUEUE = 1000
IDLE_EXIT_S = 30.0  # a writer thread with nothing to do ends after this


class DiskWriter:
    """Runs file writes on its own thread, in order; never blocks its caller."""

    def __init__(self, name: str, *, max_queue: int = MAX_QUEUE) -> None:
        self.name = name
        self.max_queue = max_queue
        self._jobs: deque[tuple[str | None, Callable[[], object]]] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy_since: float | None = None
        self._busy_key: str | None = None
        self.done = 0
        self.dropped = 0
        self.errors = 0
        self.last_error = ""

    def put(self, key: str | None, job: Callable[[], object]) -> None:
        """Queue ``job`` (it does its own error handling; an exception is logged)."""
        with self._cv:
            if key is not None:
                for i, (k, _) in enumerate(self._jobs):
                    if k == key:
                        del self._jobs[i]
                        break
            self._jobs.append((key, job))
            if len(self._jobs) > self.max_queue:
                for i, (k, _) in enumerate(self._jobs):
                    if k is None:
                        del self._jobs[i]
                        self.dropped += 1
                        if self.dropped == 1 or self.dropped % 100 == 0:
                            log.error(
                                "disk writer %s: the disk does not keep up (stalled?); "
                                "%d queued write(s) dropped so far",
                                self.name,
                                self.dropped,
                            )
                        break
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"disk-{self.name}", daemon=True
                )
                self._thread.start()
            self._cv.notify()

    def stalled_s(self) -> float:
        """How long the write in progress has run (0.0 when idle)."""
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def pending(self) -> int:
        with self._cv:
            return len(self._jobs) + (1 if self._busy_since is not None else 0)

    def wait_idle(self, timeout_s: float) -> bool:
        """Block (a thread, never the loop) until every queued write is done;
        False when ``timeout_s`` passed first (the disk is stalled)."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._jobs or self._busy_since is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def status(self) -> dict[str, Any]:
        return {
            "pending": self.pending(),
            "stalled_s": round(self.stalled_s(), 1),
            "writing": self._busy_key,
            "done": self.done,
            "dropped": self.dropped,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def _loop(self) -> None:
        while True:
            with self._cv:
                if not self._jobs:
                    self._cv.wait(IDLE_EXIT_S)
                if not self._jobs:  # idle: end; the next put starts a new thread
                    self._thread = None
                    return
                key, job = self._jobs.popleft()
                self._busy_since = time.monotonic()
                self._busy_key = key
            try:
                job()
            except Exception as e:  # a job's own bug must not end the writer
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.error("disk writer %s: write %s failed: %s", self.name, key, self.last_error)
            finally:
                with self._cv:
                    self._busy_since = None
                    self._busy_key = None
                    self.done += 1
                    self._cv.notify_all()


_WRITERS: dict[str, DiskWriter] = {}
_WRITERS_LOCK = threading.Lock()


def writer_for(folder: Path) -> DiskWriter:
    """The one writer of a state folder (shared by every part writing there)."""
    key = str(Path(folder).absolute())
    with _WRITERS_LOCK:
        w = _WRITERS.get(key)
        if w is None:
            w = _WRITERS[key] = DiskWriter(Path(folder).name or key)
        return w


def write_file_atomic(path: Path, data: bytes, *, mode: int = 0o600, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the
    new one, never half of one. ``fsync``: also survive a power cut (the data
    and the rename), for state that must not go back in time."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if fsync:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
