"""Serial numbers that survive reconnects and restarts, so that the centre can
discard a frame it has already confirmed.

GB/T 26875.3 numbers each frame with a 2-byte business serial number; the
centre confirms or denies by that number and may treat a frame whose number
it has just confirmed as a retransmission (discard it, confirm again). That
only helps if a decision goes out under the *same* number every time it is
sent, whatever happened in between (a lost confirm, a dropped connection, a
kill -9), and if no other frame ever reuses a number the centre still
remembers. This book gives both:

* Every frame gets the next number of one counter ``n`` (64-bit, never reset;
  the serial is ``n mod 65536``). The counter is leased ``LEASE`` numbers at a
  time on disk: after a restart it continues past everything the previous
  process could have used, so a number is reused only after a full turn of
  65536.
* The numbers of a decision's frames are stored with the decision's id
  (``synchronous=FULL``, before the first frame goes out) and reused for every
  retransmission, after a reconnect or a restart, as long as they are less
  than ``HORIZON`` numbers old. Older, the centre cannot still remember them
  (its window is shorter, see docs/gb26875.md): the frame gets a fresh number.
  Kept after the confirm too (until the horizon passes), so that a decision
  sent again because the delete was lost, or copied back by the outbox
  hand-off journal, still carries its old number.

All SQLite work runs on one thread of its own, in submission order.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

SERIAL_FILE = "gb26875-serials.db"
LEASE = 1024  # numbers reserved on disk at a time (one fsync per LEASE own frames)
HORIZON = 32768  # a decision keeps its numbers this many numbers long
# A centre may discard by serial number over the last CENTRE_WINDOW_MAX numbers
# it confirmed without ever discarding a new frame: a number comes back only
# after 65536 - LEASE others (a restart skips at most LEASE).
CENTRE_WINDOW_MAX = 65536 - HORIZON

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counter (k INTEGER PRIMARY KEY CHECK (k = 0), lease_end INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS serial (
    id TEXT NOT NULL,      -- the decision id
    idx INTEGER NOT NULL,  -- which frame of the decision (0, 1, ...)
    n INTEGER NOT NULL,    -- counter value; the serial number is n & 0xFFFF
    PRIMARY KEY (id, idx)
);
CREATE INDEX IF NOT EXISTS serial_n ON serial(n);
"""


class SerialBook:
    """The uplink's serial numbers; construction does no I/O."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gb-serials")
        self._db: sqlite3.Connection | None = None
        self._next = 0
        self._lease_end = 0
        self._pruned_at = 0
        self._broken = False  # the file cannot be used: numbers from memory only
        self.reused = 0  # decision frames sent again under their stored number

    async def own(self) -> int:
        """A fresh serial number for a frame of the gateway's own (state, heartbeat)."""
        return int(await self._call(self._guarded, self._take))

    async def for_decision(self, decision_id: str, frames: int) -> list[int]:
        """The serial numbers of a decision's ``frames`` frames, stored before
        this returns: the same numbers as the last time, when still in the horizon."""
        return list(await self._call(self._guarded, self._for_decision, decision_id, frames))

    def close(self) -> None:
        """Close the file after the work already handed over (a few ms at most);
        a later call opens it again, continuing past the leased numbers."""
        self._executor.submit(self._close)
        self._executor.shutdown(wait=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gb-serials")

    # ---------------------------------------------------------------- thread

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _guarded(self, fn: Any, *args: Any) -> Any:
        """A file that cannot be used must never hold up a fire alarm: numbers then
        come from memory (a restart may then reuse one; logged once)."""
        try:
            return fn(*args)
        except sqlite3.Error as e:
            if not self._broken:
                log.error(
                    "gb26875: serial number file %s unusable (%s); numbering from memory, "
                    "so after a restart the centre may record a decision twice "
                    "(check the state_dir's disk and permissions)",
                    self.path,
                    e,
                )
            self._broken = True
            self._close()
            return fn(*args)

    def _open(self) -> sqlite3.Connection | None:
        if self._db is not None or self._broken:
            return self._db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT lease_end FROM counter").fetchone()
            start = int(row[0]) if row else 0
            self._next = self._pruned_at = start
            self._lease_end = start + LEASE
            db.execute(
                "INSERT OR REPLACE INTO counter (k, lease_end) VALUES (0, ?)", (self._lease_end,)
            )
            db.execute("DELETE FROM serial WHERE n < ?", (start - HORIZON,))
        except BaseException:
            db.close()
            raise
        self._db = db
        log.debug("gb26875: serial numbers continue at %d (counter %d)", start & 0xFFFF, start)
        return db

    def _take(self) -> int:
        """The next counter value as a serial number; extends the lease on disk first."""
        db = self._open()
        if self._next >= self._lease_end:
            self._lease_end = self._next + LEASE
            if db is not None:
                db.execute("UPDATE counter SET lease_end = ? WHERE k = 0", (self._lease_end,))
        n = self._next
        self._next += 1
        return n & 0xFFFF

    def _for_decision(self, decision_id: str, frames: int) -> list[int]:
        db = self._open()
        stored: dict[int, int] = {}
        if db is not None:
            stored = dict(db.execute("SELECT idx, n FROM serial WHERE id = ?", (decision_id,)))
        out: list[int] = []
        fresh: list[tuple[int, int]] = []
        for idx in range(frames):
            n = stored.get(idx)
            if n is not None and self._next - n < HORIZON:
                self.reused += 1
                out.append(n & 0xFFFF)
                continue
            n = self._next
            self._take()
            fresh.append((idx, n))
            out.append(n & 0xFFFF)
        if fresh and db is not None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO serial (id, idx, n) VALUES (?, ?, ?)",
                    [(decision_id, idx, n) for idx, n in fresh],
                )
                if self._next - self._pruned_at >= 4096:  # now and then: forget the past
                    self._pruned_at = self._next
                    db.execute("DELETE FROM serial WHERE n < ?", (self._next - HORIZON,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return out

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def probe_serial(state_dir: Path) -> int:
    """A serial number for a one-off frame of another process (doctor's heartbeat)
    that the running agent will not use for at least 64511 numbers: the one just
    before the agent's current lease. Read only; never writes the file.

    A fixed number (0, say) would let a centre that discards by serial number
    take the agent's next frame with that number, perhaps a fire alarm, for a
    retransmission of the heartbeat."""
    lease_end = 0  # no file yet: the agent will start at 0
    path = Path(state_dir) / SERIAL_FILE
    if path.exists():
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT lease_end FROM counter").fetchone()
            finally:
                db.close()
            lease_end = int(row[0]) if row else 0
        except sqlite3.Error as e:
            log.warning("gb26875: cannot read %s (%s); probe serial from 0", path, e)
    return (lease_end - LEASE - 1) & 0xFFFF
