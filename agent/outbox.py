"""The durable outbox: every decision is stored on disk before anything tries to send it.

A decision handed to :meth:`Outbox.submit` is committed to a SQLite database
(WAL mode, ``synchronous=FULL``) before ``submit`` returns, and removed only
when the uplink reports the broker's PUBACK (:meth:`Outbox.acked`). The uplink
reads it back in strict priority order (``agent.events.PRIORITY``: fire alarms,
pre-alarms, faults, restores, stats), oldest first within a priority. It may
hold back whole parts (``next_batch(held=...)``: every decision of one type,
or every snapshot) while the broker refuses them; what is handed out still
keeps that order, and so does a held part once it is released.

Durability, and why these settings:

* ``journal_mode=WAL``: a commit appends to one file; readers never block the
  writer, and a crash (kill -9, power loss) mid-write leaves the last committed
  state intact: SQLite replays only complete, checksummed WAL frames.
* ``synchronous=FULL`` for inserts: the WAL is fsynced at every commit, so a
  stored decision survives a power cut the instant ``submit`` returns. With
  ``NORMAL`` (the usual WAL setting) a kill -9 loses nothing, but a power cut
  can lose the last commits: exactly the fire alarm that cut the power.
* ``synchronous=NORMAL`` for deletes after PUBACK: losing a delete to a power
  cut only means that decision is sent again with the same id (the receiver
  de-duplicates by id), and it saves an fsync per delivered message while a
  backlog drains. The next FULL commit fsyncs the WAL, deletes included.

All SQLite work runs on one dedicated thread (one connection, operations in
submission order), so a slow fsync on an SD card never stalls the event loop.

The cap (``max_rows``, ``max_bytes`` of payload plus snapshot) evicts the
lowest priority first, oldest first within it, and never a fire alarm: fire
alarms are stored even past the cap. Reaching the cap is itself a FAULT
decision (zone ``_gateway``), stored like any other; falling back under 90 %
of the cap is a RESTORE.

Bad storage never crashes the agent loop:

* a corrupt database file is moved aside (``outbox.db.corrupt-<time>``), the
  rows that can still be read are copied into a fresh file, and a FAULT
  decision says so;
* a full disk (or another write error) keeps the decision in memory, still
  sent by the uplink in priority order, raises a FAULT (also in memory), and
  the outbox retries writing to disk at every following submit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from agent.clock import Clock, SystemClock
from agent.events import GATEWAY_ZONE, PRIORITY, Decision, DecisionType, gateway_decision
from agent.siteconfig.models import StorageConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


DB_VERSION = 1
WRITE_TIMEOUT_S = 1.0  # a write not done by then: the disk stalls, send from memory
STALL_FAULT_S = 10.0  # a write stuck this long is a FAULT of the outbox
CLOSE_TIMEOUT_S = 5.0  # at a stop, wait this long for the disk
MEMORY_RETRY_S = 5.0  # decisions the disk refused are tried again this often
JOURNAL_SUFFIX = ".journal"  # outbox.journal: what was stored and not yet delivered
JOURNAL_MAX_BYTES = 4 * 1024 * 1024  # rewritten from the database past this size
SALVAGE_PROBE = 200_000  # rows looked up one by one past a damaged page, at most
SALVAGE_MISSES = 5_000  # without max(seq): stop after this many absent rows in a row
SNAPSHOT = "snapshot"  # Pending.part of a decision that was sent and awaits only its snapshot
RESTORE_BELOW = 0.9  # cap episode ends when rows and bytes fall under 90 % of the cap
# PUBACKed ids are gathered into one delete commit (group commit) for at most
# ACK_GROUP_S, or until ACK_GROUP_MAX of them, or until the uplink has nothing
# in flight (delete_acked_now). A commit writes every index page its ids touch
# to the WAL, and the ids are random: few large groups write far less than
# many small ones.
ACK_GROUP_S = 0.1
ACK_GROUP_MAX = 500
DELETE_CHUNK = 500  # ids per DELETE statement (SQLite's variable limit is 32766, or 999)

# SQLite primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF)
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,          -- arrival order; max(seq)+1, so new rows sort last
    id TEXT NOT NULL UNIQUE,          -- the decision id (receiver's de-duplication key)
    priority INTEGER NOT NULL,        -- agent.events.PRIORITY, 0 = fire alarm
    type TEXT NOT NULL,
    payload BLOB NOT NULL,            -- JSON of Decision.to_dict()
    snapshot BLOB,                    -- JPEG evidence, published on evidence/<id>
    bytes INTEGER NOT NULL,           -- len(payload) + len(snapshot), what the cap counts
    decision_sent INTEGER NOT NULL DEFAULT 0,  -- decision PUBACKed, only the snapshot is left
    stored_wall REAL NOT NULL,
    own INTEGER NOT NULL DEFAULT 0    -- 1: about the gateway itself (zone _gateway)
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox(priority, seq);
CREATE TABLE IF NOT EXISTS saved_state (
    name TEXT PRIMARY KEY,            -- whose state, e.g. "episodes" (agent.engine.runner)
    seq INTEGER NOT NULL,             -- the saver's own counter: the higher is the newer
    body BLOB NOT NULL
);
"""
# Added to version 1 without a version change (an older agent ignores it).
_OWN_COLUMN = "ALTER TABLE outbox ADD COLUMN own INTEGER NOT NULL DEFAULT 0"
_SEND_INDEX = "CREATE INDEX IF NOT EXISTS outbox_send ON outbox(priority, own DESC, seq)"


class OutboxError(Exception):
    """The outbox database could not be used (after recovery was tried)."""


class OutboxCorrupt(OutboxError):
    """The database file is not a readable SQLite outbox."""


class OutboxWriteFailed(OutboxError):
    """A write failed (disk full, I/O error); the decision is held in memory."""


class Pending:
    """One stored decision as the uplink sees it (without its snapshot bytes).

    Read-only. ``payload`` (``Decision.to_dict()``) is parsed from ``raw``, the
    stored JSON text, only when something asks for it: a backlog's drain
    publishes the text spliced (agent.uplink.wire_payload) and never does, so
    the outbox thread no longer decodes every row it hands out (that cost
    the drain a share of the GIL per row).
    """

    __slots__ = (
        "_payload",
        "decision_sent",
        "durable",
        "has_snapshot",
        "id",
        "priority",
        "raw",
        "type",
    )
    id: str
    priority: int
    type: str
    has_snapshot: bool
    decision_sent: bool  # the decision itself was PUBACKed; only the snapshot is left
    durable: bool  # False: held in memory because the disk refused it
    # The stored JSON text that ``payload`` is parsed from (compact, as stored):
    # the uplink splices its wire form from it instead of encoding ``payload``
    # again for every publish. Empty: not known, ``payload`` was given.
    raw: str
    _payload: dict[str, Any] | None

    def __init__(
        self,
        id: str,
        priority: int,
        type: str,
        payload: dict[str, Any] | None,
        has_snapshot: bool,
        decision_sent: bool,
        durable: bool = True,
        raw: str = "",
    ) -> None:
        if payload is None and not raw:
            raise ValueError("Pending needs its payload or the stored text it is parsed from")
        put = object.__setattr__  # (read-only otherwise, see __setattr__)
        put(self, "id", id)
        put(self, "priority", priority)
        put(self, "type", type)
        put(self, "_payload", payload)
        put(self, "has_snapshot", has_snapshot)
        put(self, "decision_sent", decision_sent)
        put(self, "durable", durable)
        put(self, "raw", raw)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Pending is read-only ({name})")

    @property
    def payload(self) -> dict[str, Any]:
        """``Decision.to_dict()`` as stored (parsed from ``raw`` at the first ask)."""
        got = self._payload
        if got is None:
            got = json.loads(self.raw)
            object.__setattr__(self, "_payload", got)
        return got

    def _key(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.priority,
            self.type,
            self.payload,
            self.has_snapshot,
            self.decision_sent,
            self.durable,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pending):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # (holds a dict, like the dataclass it was)

    def __repr__(self) -> str:
        return (
            f"Pending(id={self.id!r}, priority={self.priority}, type={self.type!r}, "
            f"has_snapshot={self.has_snapshot}, decision_sent={self.decision_sent}, "
            f"durable={self.durable})"
        )

    @property
    def own(self) -> bool:
        """About the gateway itself (zone ``_gateway``): sent first within its priority."""
        return bool(self.payload.get("zone") == GATEWAY_ZONE)

    @property
    def part(self) -> str:
        """What is left to send: the decision (its type, e.g. ``fire_alarm``) or,
        once the decision was PUBACKed, its snapshot (``SNAPSHOT``)."""
        return SNAPSHOT if self.decision_sent else self.type


@dataclass(frozen=True, slots=True)
class SavedState:
    """State stored in the same transaction as a batch of decisions
    (:meth:`Outbox.submit_batch`): whoever restarts finds it exactly as it was
    when those decisions were stored, never older and never newer."""

    name: str
    seq: int  # the saver's counter; a lower one never overwrites a higher one
    body: bytes


@dataclass
class _Row:
    id: str
    priority: int
    type: str
    payload: bytes
    snapshot: bytes | None
    stored_wall: float
    own: bool = False  # about the gateway itself: outranks what it reports on

    @property
    def nbytes(self) -> int:
        return len(self.payload) + (len(self.snapshot) if self.snapshot else 0)


def _row_of(decision: Decision, wall: float) -> _Row:
    payload = json.dumps(
        decision.to_dict(), separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()
    return _Row(
        id=decision.id,
        priority=decision.priority,
        type=decision.type.value,
        payload=payload,
        snapshot=decision.snapshot_jpeg,
        stored_wall=wall,
        own=decision.zone == GATEWAY_ZONE,
    )


@dataclass
class _Counts:
    rows: int = 0
    bytes: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    def add(self, type_: str, nbytes: int, n: int = 1) -> None:
        self.rows += n
        self.bytes += nbytes
        self.by_type[type_] = self.by_type.get(type_, 0) + n
        if self.by_type[type_] <= 0:
            del self.by_type[type_]


class Outbox:
    """Durable, capped, priority-ordered store of decisions; the agent's DecisionSink.

    ``submit`` returns once the decision is committed to disk (or, if the disk
    refuses it, held in memory and reported as a fault); it never raises for
    storage problems. Construction does no I/O: the database is opened on the
    outbox's own thread by the first operation.
    """

    name = "outbox"

    def __init__(
        self,
        path: Path,
        max_rows: int,
        max_bytes: int,
        *,
        clock: Clock | None = None,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        stall_fault_s: float = STALL_FAULT_S,
        spill_dir: Path | Literal["auto"] | None = "auto",
    ) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError("max_rows and max_bytes must be positive")
        if write_timeout_s <= 0:
            raise ValueError("write_timeout_s must be positive")
        self.write_timeout_s = write_timeout_s
        self.stall_fault_s = max(stall_fault_s, write_timeout_s)
        if spill_dir == "auto":  # systemd's RuntimeDirectory= (RAM, kept over a restart)
            run = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
            spill_dir = Path(run) if run else None
        self.spill_path = (
            Path(spill_dir)
            / f"outbox-spill-{hashlib.sha1(str(path).encode()).hexdigest()[:10]}.jsonl"
            if spill_dir is not None
            else None
        )
        self._spill_loaded = False
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.clock: Clock = clock or SystemClock()
        self._executor = _OneThread("outbox")
        self._db: sqlite3.Connection | None = None
        self._counts = _Counts()
        self._memory: list[_Row] = []  # rows the disk refused, in arrival order
        self._memory_sent: set[str] = set()  # their decision_sent flag
        self._lock = threading.Lock()  # guards _to_delete, _acks, _deleting
        self._to_delete: list[tuple[int, str]] = []  # (ack number, id), acked order
        self._acks = 0  # acks so far: a delete job takes only those acked before it was queued
        self._group_from = 0  # acks up to this one went to the thread (event loop only)
        self._group_timer: asyncio.TimerHandle | None = None  # ends the open group
        self._deleting: set[str] = set()  # acked, delete not yet committed: never handed out
        self._cap_active = False
        self._cap_fault: Decision | None = None  # this cap episode's FAULT
        self._episode_evicted: dict[str, int] = {}  # dropped during this cap episode
        self._evicted_total: dict[str, int] = {}
        self._write_failing = False
        self._closed = False
        self.last_error = ""
        self.recoveries: list[str] = []  # files moved aside, for status
        self.changed = asyncio.Event()  # set whenever something was stored
        # Rows handed to the thread and not stored yet, in arrival order: what
        # the uplink is given from memory while the disk stalls.
        self._limbo: dict[str, _Row] = {}
        self._limbo_sent: set[str] = set()  # PUBACKed while in limbo, snapshot left
        self._limbo_dropped: set[str] = set()  # evicted from limbo: never stored
        self._stall_reported = False
        self._memory_dropped: dict[str, int] = {}  # evicted from memory, by type
        self._write_fault: Decision | None = None  # this episode's "cannot store" FAULT
        self._retried_mono = 0.0
        self.journal = _Journal(self.path.with_suffix(JOURNAL_SUFFIX))
        self._journal_checked = False
        self._tx_inserted: list[_Row] = []  # rows of the open transaction, for the journal
        self._tx_removed: list[str] = []
        # Called on the outbox thread before every write transaction with its
        # kind ("insert", "delete", "mark"): tests inject a stalled or failing
        # disk here, at the boundary of the storage calls.
        self.io_hook: Callable[[str], None] | None = None

    # ---------------------------------------------------------------- public API

    async def submit(self, decision: Decision) -> None:
        """Store ``decision``; returns once it is durable (see module docstring)."""
        if self._closed:
            raise OutboxError("outbox is closed")
        await self._store([_row_of(decision, self.clock.wall())])

    async def submit_batch(self, decisions: list[Decision], state: SavedState | None) -> bool:
        """Store ``decisions`` and ``state`` in one transaction: after a kill or a
        power cut either all of them are stored and ``state`` with them, or none
        of them and the state saved before (:meth:`saved_state`). Returns as
        :meth:`submit` does: True when that transaction was committed, False
        when the disk refused it (the decisions are held in memory as with
        :meth:`submit`, ``state`` is not stored) or had not answered in time
        (stalled: they are sent from memory and stored when it answers)."""
        if self._closed:
            raise OutboxError("outbox is closed")
        wall = self.clock.wall()
        return await self._store([_row_of(d, wall) for d in decisions], state)

    async def saved_state(self, name: str) -> SavedState | None:
        """The state last stored under ``name`` with a batch, or None (none
        stored, or the database cannot be read)."""
        return await self._call(self._saved_state_thread, name)

    async def _store(self, rows: list[_Row], state: SavedState | None = None) -> bool:
        """Hand ``rows`` to the thread; wait for them unless the disk is stalled.
        True: committed to the file before this returned."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        with self._lock:
            for row in rows:
                self._limbo[row.id] = row
        self._bound_limbo()
        fut = loop.run_in_executor(self._executor, self._store_limbo_thread, rows, state)
        if self._stalled():  # a write is stuck already: sent from memory, stored later
            fut.add_done_callback(_log_failure)
            self._report_stall()
            self.changed.set()
            return False
        committed = False
        try:
            # shield: once handed to the thread the write completes even if the
            # caller is cancelled or stops waiting for a stalled disk.
            committed = await _wait_shielded(fut, self.write_timeout_s)
        except TimeoutError:
            fut.add_done_callback(_log_failure)
            self._report_stall()
        else:
            self._stall_over()
        self.changed.set()
        return committed

    async def next_batch(
        self,
        limit: int,
        exclude: Iterable[str] = (),
        *,
        held: Iterable[str] = (),
        only: str | None = None,
    ) -> list[Pending]:
        """Up to ``limit`` stored decisions in send order, skipping ids in ``exclude``
        (those the uplink already has in flight) and those already acked.

        ``held``: skip decisions whose ``Pending.part`` is one of these (decision
        types, ``SNAPSHOT``); ``only``: return only decisions whose part is this.
        Either way the order of what is returned is the send order.
        """
        skip = set(exclude)
        args = (limit, skip, frozenset(held), only)
        if self._stalled():
            self._report_stall()
            return self._peek_limbo(*args)
        fut = self._submit_guarded(self._peek_thread, *args)
        try:
            got = await _wait_shielded(fut, self.write_timeout_s)
        except TimeoutError:
            self._report_stall()
            return self._peek_limbo(*args)
        self._stall_over()
        # rows submitted after this peek was queued are not on disk yet
        return self._merge(got, self._peek_limbo(*args), limit)

    async def snapshot(self, decision_id: str) -> bytes | None:
        """The JPEG stored with a decision, or None (gone, or none was stored)."""
        with self._lock:
            row = self._limbo.get(decision_id)
        if row is not None:
            return row.snapshot
        return await self._call(self._snapshot_thread, decision_id)

    async def mark_decision_sent(self, decision_id: str) -> None:
        """The decision was PUBACKed but its snapshot is still to be sent."""
        with self._lock:
            if decision_id in self._limbo:
                self._limbo_sent.add(decision_id)  # applied when it is stored
                return
        fut = self._submit_guarded(self._mark_sent_thread, decision_id)
        if self._stalled():
            fut.add_done_callback(_log_failure)
            return
        try:
            await _wait_shielded(fut, self.write_timeout_s)
        except TimeoutError:
            fut.add_done_callback(_log_failure)
            self._report_stall()

    def acked(self, decision_id: str) -> None:
        """Everything of this decision was PUBACKed: delete it.

        Returns at once; the id is never handed out again by ``next_batch``.
        Group commit: the ids PUBACKed within ``ACK_GROUP_S`` of the first
        (at most ``ACK_GROUP_MAX``; fewer when the uplink calls
        ``delete_acked_now``) go to the outbox thread as one job, one DELETE
        and one commit (a commit per PUBACK, and the outbox thread's share of
        the GIL, halved a backlog's drain); the job queues behind what was
        handed to the thread before it, so a decision is stored before its
        delete runs. Only ids whose PUBACK came are ever in a group; a kill -9
        (or a disk that fails) before its commit means those decisions are
        sent again (same ids), never lost. Event loop only.
        """
        with self._lock:
            self._deleting.add(decision_id)
            self._acks += 1
            self._to_delete.append((self._acks, decision_id))
            full = self._acks - self._group_from >= ACK_GROUP_MAX
        if full:
            self._submit_deletes()
        elif self._group_timer is None:
            loop = asyncio.get_running_loop()
            self._loop = loop
            self._group_timer = loop.call_later(ACK_GROUP_S, self._submit_deletes)

    def delete_acked_now(self) -> None:
        """Hand the open group of PUBACKed ids to the thread now, not at its end:
        the uplink calls this when nothing is in flight (a backlog is drained),
        so the last group does not wait ``ACK_GROUP_S``. Event loop only."""
        if self._group_timer is not None:
            self._submit_deletes()

    def _submit_deletes(self) -> None:
        if self._group_timer is not None:
            self._group_timer.cancel()
            self._group_timer = None
        if self._closed:
            return  # close() deleted them
        with self._lock:
            upto = self._acks
        if upto == self._group_from:
            return
        self._group_from = upto  # acks from now on start a new group
        # Straight to the thread, not through loop.run_in_executor: nobody on
        # the loop waits for a group's commit, and its asyncio future cost the
        # loop a wake-up (self-pipe write, future copy) per group while a
        # backlog drains; a failure is logged from the outbox thread.
        self._executor.submit(self._delete_thread, upto).add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Wait until every operation handed to the outbox so far is done, the
        deletes of every decision acked so far included."""
        await self._call(self._delete_thread, self._acks)

    async def close(self) -> None:
        """Finish pending work and close the database."""
        if self._closed:
            return
        self._closed = True
        if self._group_timer is not None:  # _close_thread deletes the open group
            self._group_timer.cancel()
            self._group_timer = None
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self._close_thread)
        try:
            await _wait_shielded(fut, CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.error(
                "outbox %s: the disk did not answer for %.0f s at the stop",
                self.path,
                CLOSE_TIMEOUT_S,
            )
        self._log_unstored()
        self._executor.shutdown(wait=False)

    def _log_unstored(self) -> None:
        """What is only in memory at the stop: kept in RAM for the next start
        where there is a spill folder (systemd's RuntimeDirectory, kept over a
        restart, not a reboot), else lost; never without a line."""
        with self._lock:
            gone = set(self._deleting)
            rows = list({r.id: r for r in [*self._limbo.values(), *self._memory]}.values())
            sent = self._memory_sent | self._limbo_sent
        rows = [r for r in rows if r.id not in gone]
        if not rows:
            return
        by_type: dict[str, int] = {}
        for r in rows:
            by_type[r.type] = by_type.get(r.type, 0) + 1
        what = ", ".join(f"{n} {t}" for t, n in sorted(by_type.items()))
        fires = [r.id for r in rows if r.priority == 0]
        fire_ids = f"; fire alarm ids: {', '.join(fires)}" if fires else ""
        if self.spill_path is not None:
            try:
                _write_spill(self.spill_path, rows, sent)
            except OSError as e:
                log.error("outbox: cannot keep them in %s: %s", self.spill_path, e)
            else:
                log.error(
                    "outbox %s: %d decision(s) could not be stored on the disk (%s)%s; kept "
                    "in RAM (%s) for the next start, lost only if the gateway reboots first. "
                    "Check the disk of %s.",
                    self.path,
                    len(rows),
                    what,
                    fire_ids,
                    self.spill_path,
                    self.path.parent,
                )
                return
        log.error(
            "outbox %s: %d decision(s) could not be stored (%s) and are lost with this "
            "stop%s; the centre has them only if they were sent. Check the disk of %s.",
            self.path,
            len(rows),
            what,
            fire_ids,
            self.path.parent,
        )

    def _take_spill(self) -> None:
        """Decisions a stopped agent kept in RAM: stored (or held) again, in order."""
        path = self.spill_path
        if path is None:
            return
        try:
            rows, sent = _read_spill(path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.error("outbox: cannot read %s (%s); its decisions are lost", path, e)
            return
        for row in rows:
            self._store_thread([row])
            if row.id in sent:
                self._mark_sent_thread(row.id)
        with contextlib.suppress(OSError):
            path.unlink()
        log.warning(
            "outbox %s: %d decision(s) the disk refused before the restart taken back from %s",
            self.path,
            len(rows),
            path,
        )

    def status(self) -> dict[str, Any]:
        """Small, JSON-ready state for `firegate status` and the heartbeat."""
        return {
            "path": str(self.path),
            "rows": self._counts.rows + len(self._memory),
            "bytes": self._counts.bytes + sum(r.nbytes for r in self._memory),
            "by_type": dict(self._counts.by_type),
            "in_memory": len(self._memory),
            "max_rows": self.max_rows,
            "max_bytes": self.max_bytes,
            "cap_reached": self._cap_active,
            "evicted": dict(self._evicted_total),
            "write_failing": self._write_failing,
            "last_error": self.last_error,
            "recovered_files": list(self.recoveries),
            "not_stored": len(self._limbo),
            "stalled_s": round(self._executor.stalled_s(), 1),
        }

    # ------------------------------------------------------------ thread helpers

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        got = await self._submit_guarded(fn, *args)
        self._stall_over()
        return got

    def _submit_guarded(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        return loop.run_in_executor(self._executor, self._guarded, fn, *args)

    # --------------------------------------------------- a stalled disk (limbo)

    def _stalled(self) -> bool:
        return self._executor.stalled_s() >= self.write_timeout_s

    def _report_stall(self) -> None:
        """A write has not finished in ``stall_fault_s``: a FAULT, from memory.
        (Past ``write_timeout_s`` decisions are already handed out from memory;
        a slow moment under load is not yet worth telling the centre.)"""
        if self._stall_reported or self._closed:
            return
        if self._executor.stalled_s() < self.stall_fault_s:
            return
        self._stall_reported = True
        with self._lock:
            waiting = len(self._limbo)
        reason = (
            f"outbox storage stalled: a write to {self.path.name} has not finished for "
            f"{self._executor.stalled_s():.1f} s; decisions are sent from memory "
            "and stored when the disk answers"
        )
        log.error("outbox %s: %s (failing SD card?)", self.path, reason)
        self._spawn(self._gateway(DecisionType.FAULT, reason, stalled=True, not_stored=waiting + 1))

    def _stall_over(self) -> None:
        if not self._stall_reported or self._stalled():
            return
        self._stall_reported = False
        log.warning("outbox %s: the disk answers again", self.path)
        self._spawn(self._gateway(DecisionType.RESTORE, "outbox storage answers again"))

    def _spawn(self, decision: Decision) -> None:
        """Store a decision of the outbox itself without waiting (it is in
        limbo, so sent at once even if the disk is stalled)."""
        row = _row_of(decision, self.clock.wall())
        with self._lock:
            self._limbo[row.id] = row
        assert self._loop is not None
        fut = self._loop.run_in_executor(self._executor, self._store_limbo_thread, [row], None)
        fut.add_done_callback(_log_failure)
        self.changed.set()

    def _bound_limbo(self) -> None:
        """Bounded like the disk: drop the lowest-priority ordinary decision
        (never a fire alarm, never the gateway's own), counted."""
        with self._lock:
            if len(self._limbo) <= self.max_rows:
                return
            victims = [r for r in self._limbo.values() if r.priority > 0 and not r.own]
            if not victims:
                return
            worst = max(victims, key=lambda r: r.priority)
            del self._limbo[worst.id]
            self._limbo_dropped.add(worst.id)
        self._count_evicted(worst.type)
        log.warning(
            "outbox %s: disk stalled and %d decisions wait in memory: dropped %s %s",
            self.path,
            self.max_rows,
            worst.type,
            worst.id,
        )

    def _store_limbo_thread(self, rows: list[_Row], state: SavedState | None) -> bool:
        with self._lock:
            dropped = {r.id for r in rows} & self._limbo_dropped
            self._limbo_dropped -= dropped
        kept = [r for r in rows if r.id not in dropped]
        if not kept and state is None:
            return False
        committed = self._guarded(self._store_thread, kept, state)
        for row in kept:
            with self._lock:
                sent = row.id in self._limbo_sent
                self._limbo_sent.discard(row.id)
            if sent:
                self._mark_sent_thread(row.id)
            with self._lock:
                self._limbo.pop(row.id, None)
        return committed

    def _peek_limbo(
        self, limit: int, skip: set[str], held: frozenset[str], only: str | None
    ) -> list[Pending]:
        with self._lock:
            skip = skip | self._deleting
            rows = [r for r in self._limbo.values() if r.id not in skip]
            sent = set(self._limbo_sent)
        mem = [
            p
            for p in (
                Pending(
                    r.id,
                    r.priority,
                    r.type,
                    json.loads(r.payload),
                    r.snapshot is not None,
                    r.id in sent,
                    durable=False,
                    raw=r.payload.decode(),
                )
                for r in rows
            )
            if p.part not in held and (only is None or p.part == only)
        ]
        return sorted(mem, key=lambda p: (p.priority, not p.own))[:limit]

    @staticmethod
    def _merge(first: list[Pending], more: list[Pending], limit: int) -> list[Pending]:
        if not more:
            return first
        seen = {p.id for p in first}
        both = first + [p for p in more if p.id not in seen]
        return sorted(both, key=lambda p: (p.priority, not p.own))[:limit]

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the outbox thread; on a corrupt file recover and retry once."""
        try:
            self._ensure_open()
            if not self._spill_loaded:
                self._spill_loaded = True
                self._take_spill()
            return fn(*args)
        except sqlite3.DatabaseError as e:
            if not _is_corrupt(e):
                raise
            self._recover_corrupt(e)
            return fn(*args)

    def _ensure_open(self) -> bool:
        """Open the database if needed; False (logged once) if it cannot be used."""
        if self._db is not None:
            return True
        try:
            try:
                self._open()
            except sqlite3.DatabaseError as e:
                if not _is_corrupt(e):
                    raise
                self._recover_corrupt(e)
        except (OutboxError, sqlite3.Error, OSError) as e:
            if self.last_error != str(e):
                log.error(
                    "outbox %s cannot be opened: %s; decisions are kept in memory only "
                    "until it can (check the state_dir and its permissions)",
                    self.path,
                    e,
                )
            self.last_error = str(e)
            self._open_error = e
            return False
        self._open_error = None
        if not self._journal_checked:
            self._journal_checked = True
            self._check_journal(None)
        return True

    _open_error: BaseException | None = None

    def _check_journal(self, damaged: tuple[Path, int] | None) -> None:
        """Compare the database with the journal of what was stored and not yet
        delivered: put back the fire alarms it lost (their payload is in the
        journal), count what else it lost, and say so in a FAULT.

        ``damaged``: the file was moved aside and this many rows were salvaged.
        """
        db = self._db
        assert db is not None
        try:
            live = self.journal.read()
        except OSError as e:
            log.error(
                "outbox journal %s unreadable (%s); losses cannot be counted", self.journal.path, e
            )
            live = None
        on_disk = {r[0] for r in db.execute("SELECT id FROM outbox")}
        lost: dict[str, int] = {}
        back = 0
        if live is not None:
            for id_, (type_, payload) in live.items():
                if id_ in on_disk:
                    continue
                if payload is not None:  # a fire alarm: put it back, same id
                    row = _Row(
                        id_,
                        PRIORITY[DecisionType.FIRE_ALARM],
                        type_,
                        payload,
                        None,
                        self.clock.wall(),
                    )
                    self._insert(row, sync_full=False)
                    back += 1
                else:
                    lost[type_] = lost.get(type_, 0) + 1
        n_lost = sum(lost.values())
        what = ", ".join(f"{n} {t}" for t, n in sorted(lost.items()))
        if damaged is not None:
            aside, salvaged = damaged
            count = (
                f"{salvaged} stored decision(s) recovered, {n_lost} lost"
                + (f" ({what})" if what else "")
                if live is not None
                else f"{salvaged} stored decision(s) recovered; how many were lost is unknown "
                "(no journal)"
            )
            reason = f"outbox database was damaged; moved to {aside.name}, {count}"
            details: dict[str, Any] = {
                "moved_to": str(aside),
                "recovered": salvaged,
            }
        elif n_lost or back:
            reason = (
                f"outbox lost {n_lost + back} stored decision(s) since the last run (its file "
                f"was truncated or its -wal removed?): {n_lost} lost"
                + (f" ({what})" if what else "")
            )
            details = {}
        else:
            self._rewrite_journal()
            return
        if back:
            reason += f"; {back} fire alarm(s) put back from the journal and sent again"
        details.update(lost=lost, lost_total=n_lost, fire_alarms_restored=back)
        log.error("outbox %s: %s", self.path, reason)
        fault = self._gateway(DecisionType.FAULT, reason, **details)
        self._insert(_row_of(fault, fault.wall), sync_full=True)
        self._rewrite_journal()

    def _rewrite_journal(self) -> None:
        """The journal as the database is now (what waits, fire alarms in full)."""
        db = self._db
        assert db is not None
        self.journal.rewrite(
            (id_, type_, _blob(payload) if prio == 0 else None)
            for id_, type_, prio, payload in db.execute(
                "SELECT id, type, priority, payload FROM outbox ORDER BY seq"
            )
        )

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            if "own" not in {r[1] for r in db.execute("PRAGMA table_info(outbox)")}:
                db.execute(_OWN_COLUMN)
            db.execute(_SEND_INDEX)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                db.execute(f"PRAGMA user_version={DB_VERSION}")
            elif version != DB_VERSION:
                raise OutboxError(
                    f"{self.path}: outbox database version {version}, this agent knows "
                    f"{DB_VERSION}; move the file aside or run the matching agent version"
                )
            # quick_check reads every page once: cheap for an outbox that is
            # normally near empty, and it finds a damaged file before a fire does.
            check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")
            counts = _Counts()
            for type_, n, nbytes in db.execute(
                "SELECT type, count(*), coalesce(sum(bytes), 0) FROM outbox GROUP BY type"
            ):
                counts.add(type_, nbytes, n)
        except BaseException:
            db.close()
            raise
        self._db = db
        self._counts = counts
        if counts.rows:
            log.info(
                "outbox %s: %d decision(s) waiting from before the restart (%s)",
                self.path,
                counts.rows,
                ", ".join(f"{k} {v}" for k, v in sorted(counts.by_type.items())),
            )

    def _recover_corrupt(self, error: sqlite3.DatabaseError) -> None:
        """Move the damaged file aside, keep what can be read, start a fresh one."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock.wall()))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        salvaged = _salvage(self.path)
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.replace(Path(f"{aside}{suffix}"))
        log.error(
            "outbox database %s is damaged (%s); moved it to %s and started a new one; "
            "%d decision(s) could be read back and are kept. Keep the damaged file for "
            "inspection; the agent goes on.",
            self.path,
            error,
            aside,
            len(salvaged),
        )
        self.recoveries.append(str(aside))
        self.last_error = f"corrupt database moved to {aside}: {error}"
        self._open()
        assert self._db is not None
        for row in salvaged:
            self._insert(row, sync_full=False)
        self._journal_checked = True
        self._check_journal((aside, len(salvaged)))

    # ------------------------------------------------------------- thread bodies

    def _store_thread(self, rows: list[_Row], state: SavedState | None = None) -> bool:
        """True: ``rows`` and ``state`` committed; False: held in memory."""
        if self._db is None:
            assert self._open_error is not None
            for row in rows:
                self._write_failed(row, self._open_error)
            return False
        if self._memory:
            self._retry_memory()
        if self._memory:  # disk still refusing: keep order, stay in memory
            for row in rows:
                self._hold_in_memory(row, "earlier writes still failing")
            return False
        try:
            self._insert_rows(rows, sync_full=True, state=state)
        except sqlite3.DatabaseError as e:
            if _is_corrupt(e):
                raise  # _guarded recovers and retries the whole store
            for row in rows:
                self._write_failed(row, e)
            return False
        self._writes_work_again()
        return True

    def _writes_work_again(self) -> None:
        if not self._write_failing or self._memory:
            return
        self._write_failing = False
        self._write_fault = None
        log.warning(
            "outbox %s: writes work again; every decision held in memory is stored", self.path
        )
        self._insert(
            _row_of(
                self._gateway(DecisionType.RESTORE, "outbox writes work again"),
                self.clock.wall(),
            ),
            sync_full=True,
        )

    def _retry_in_background(self) -> None:
        """Write what the disk refused once it takes it again, even when no new
        decision comes to try (a peek of the uplink, at most every few seconds)."""
        now = time.monotonic()
        if not self._memory or self._db is None or now - self._retried_mono < MEMORY_RETRY_S:
            return
        self._retried_mono = now
        try:
            self._retry_memory()
            self._writes_work_again()
        except sqlite3.DatabaseError as e:
            log.debug("outbox: memory retry failed: %s", e)

    def _write_failed(self, row: _Row, error: BaseException) -> None:
        self._hold_in_memory(row, str(error))
        if not self._write_failing:
            self._write_failing = True
            code = getattr(error, "sqlite_errorcode", 0) & 0xFF
            what = "the disk is full" if code == _SQLITE_FULL else f"a write failed ({error})"
            log.error(
                "outbox %s: %s; decisions are kept in memory and still sent, but they "
                "will not survive a restart. Free space on %s.",
                self.path,
                what,
                self.path.parent,
            )
            fault = self._gateway(DecisionType.FAULT, f"outbox cannot store decisions: {what}")
            self._write_fault = fault
            self._memory.append(_row_of(fault, self.clock.wall()))
            self._count_write_fault()
        self.last_error = str(error)

    def _count_write_fault(self) -> None:
        """The unsent "cannot store" FAULT says how many decisions wait in memory
        (by type) and how many were dropped; rewritten, same id."""
        fault = self._write_fault
        if fault is None or fault.id in self._memory_sent:
            return
        held: dict[str, int] = {}
        for r in self._memory:
            if r.id != fault.id:
                held[r.type] = held.get(r.type, 0) + 1
        dropped = dict(self._memory_dropped)
        new = dataclasses.replace(
            fault,
            reason=f"{fault.reason.split('; ')[0]}; {sum(held.values())} decision(s) held in "
            f"memory, not restart-proof ({', '.join(f'{n} {t}' for t, n in sorted(held.items()))})"
            + (f", {sum(dropped.values())} dropped" if dropped else ""),
            details={**fault.details, "held_in_memory": held, "evicted": dropped},
        )
        payload = _row_of(new, self.clock.wall()).payload
        for r in self._memory:
            if r.id == fault.id:
                r.payload = payload

    def _hold_in_memory(self, row: _Row, why: str) -> None:
        # Bounded like the disk: beyond max_rows, drop the lowest non-fire entry.
        self._memory.append(row)
        if len(self._memory) > self.max_rows:
            # the gateway's own faults outrank what they report on
            victims = [r for r in self._memory if r.priority > 0 and not r.own] or [
                r for r in self._memory if r.priority > 0
            ]
            if victims:
                worst = max(victims, key=lambda r: r.priority)
                self._memory.remove(worst)
                self._count_evicted(worst.type)
                self._memory_dropped = {
                    **self._memory_dropped,
                    worst.type: self._memory_dropped.get(worst.type, 0) + 1,
                }
                n = sum(self._memory_dropped.values())
                if n == 1 or n % 100 == 0:
                    log.error(
                        "outbox %s: the disk refuses writes and %d decisions wait in memory: "
                        "dropped %d so far, lowest priority first (never a fire alarm): %s",
                        self.path,
                        self.max_rows,
                        n,
                        ", ".join(f"{k} {v}" for k, v in sorted(self._memory_dropped.items())),
                    )
        self._count_write_fault()
        log.debug("outbox: holding %s in memory (%s)", row.id, why)

    def _retry_memory(self) -> None:
        while self._memory:
            row = self._memory[0]
            try:
                self._insert(row, sync_full=True)
                if row.id in self._memory_sent:
                    self._mark_sent_thread(row.id)
            except sqlite3.DatabaseError as e:
                if _is_corrupt(e):
                    raise
                return
            self._memory.pop(0)
            self._memory_sent.discard(row.id)

    def _insert(self, row: _Row, *, sync_full: bool) -> None:
        """One transaction: evict to make room if needed, then insert ``row``."""
        self._insert_rows([row], sync_full=sync_full)

    def _insert_rows(
        self, rows: list[_Row], *, sync_full: bool, state: SavedState | None = None
    ) -> None:
        """One transaction: each of ``rows`` as ``_insert`` stores one (evicting
        to make room if needed), and ``state`` unless a newer one is stored."""
        db = self._db
        assert db is not None
        self._hook("insert")
        if not sync_full:
            db.execute("PRAGMA synchronous=NORMAL")
        self._tx_inserted, self._tx_removed = [], []
        counts = dataclasses.replace(self._counts, by_type=dict(self._counts.by_type))
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    # each row's cap check sees the rows stored before it in this transaction
                    for type_, nbytes, n in self._insert_in_tx(db, row):
                        self._counts.add(type_, nbytes, n)
                if state is not None:
                    db.execute(
                        "INSERT INTO saved_state (name, seq, body) VALUES (?, ?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, "
                        "body = excluded.body WHERE excluded.seq > saved_state.seq",
                        (state.name, state.seq, state.body),
                    )
                db.execute("COMMIT")
            except BaseException:
                self._counts = counts
                if db.in_transaction:  # SQLite rolls back by itself on SQLITE_FULL
                    db.execute("ROLLBACK")
                raise
        finally:
            if not sync_full:
                db.execute("PRAGMA synchronous=FULL")
        self.journal.stored(self._tx_inserted)
        if self._tx_removed:
            self.journal.removed(self._tx_removed)

    def _hook(self, kind: str) -> None:
        if self.io_hook is not None:
            self.io_hook(kind)

    def _insert_in_tx(self, db: sqlite3.Connection, row: _Row) -> list[tuple[str, int, int]]:
        """Returns (type, bytes, rows) count changes, applied only after COMMIT."""
        changes: list[tuple[str, int, int]] = []
        rows, nbytes = self._counts.rows, self._counts.bytes
        evicted: dict[str, int] = {}
        drop_new = False
        over = rows + 1 > self.max_rows or nbytes + row.nbytes > self.max_bytes
        if over:
            # A new decision may push out only decisions of its own or lower
            # priority, never a fire alarm, and never the gateway's own decisions
            # (the cap FAULT must not be evicted by the flood it reports), unless
            # it is one of them. If even that cannot make room, evict nothing:
            # the new one is dropped, or (a fire alarm) stored past the cap.
            cand = (
                "priority > 0 AND (own = 0 OR priority >= ?)"
                if row.own
                else "priority > 0 AND priority >= ? AND own = 0"
            )
            ev_rows, ev_bytes = db.execute(
                f"SELECT count(*), coalesce(sum(bytes), 0) FROM outbox WHERE {cand}",
                (row.priority,),
            ).fetchone()
            fits = (
                rows - ev_rows + 1 <= self.max_rows
                and nbytes - ev_bytes + row.nbytes <= self.max_bytes
            )
            drop_new = not fits and row.priority > 0
            while fits and (rows + 1 > self.max_rows or nbytes + row.nbytes > self.max_bytes):
                victim = db.execute(
                    f"SELECT seq, priority, type, bytes, id FROM outbox WHERE {cand} "
                    "ORDER BY own, priority DESC, seq LIMIT 1",
                    (row.priority,),
                ).fetchone()
                db.execute("DELETE FROM outbox WHERE seq = ?", (victim[0],))
                self._tx_removed.append(victim[4])
                changes.append((victim[2], -victim[3], -1))
                evicted[victim[2]] = evicted.get(victim[2], 0) + 1
                rows -= 1
                nbytes -= victim[3]
            if not fits and not drop_new:
                log.error(
                    "outbox %s: fire alarm %s stored past the cap (%d rows, %d bytes): "
                    "fire alarms are never dropped",
                    self.path,
                    row.id,
                    rows + 1,
                    nbytes + row.nbytes,
                )
        if drop_new:
            evicted[row.type] = evicted.get(row.type, 0) + 1
        else:
            changes.extend(self._insert_in_tx_nocap(db, row))
        if evicted:
            for type_, n in evicted.items():
                self._count_evicted(type_, n)
                self._episode_evicted[type_] = self._episode_evicted.get(type_, 0) + n
            log.warning(
                "outbox %s at its cap (%d rows, %d bytes): evicted %s",
                self.path,
                self.max_rows,
                self.max_bytes,
                ", ".join(f"{n} {t}" for t, n in evicted.items()),
            )
        if over and not self._cap_active:
            self._cap_active = True
            self._episode_evicted = dict(evicted)
            fault = self._gateway(
                DecisionType.FAULT,
                f"outbox reached its cap ({self.max_rows} rows / {self.max_bytes} bytes); "
                "lowest-priority decisions are being dropped (never fire alarms)",
                evicted=dict(evicted),
            )
            self._cap_fault = fault
            # stored in the same transaction, past the cap: one row, once per episode
            changes.extend(self._insert_in_tx_nocap(db, _row_of(fault, self.clock.wall())))
        elif evicted and self._cap_fault is not None:
            # the cap FAULT still waiting to be sent counts every decision dropped
            changes.extend(self._update_cap_fault(db))
        elif (
            not over
            and self._cap_active
            and (
                rows + 1 < RESTORE_BELOW * self.max_rows
                and nbytes + row.nbytes < RESTORE_BELOW * self.max_bytes
            )
        ):
            changes.extend(self._insert_in_tx_nocap(db, self._cap_restore_row()))
        return changes

    def _cap_restore_row(self) -> _Row:
        """The end of a cap episode: a RESTORE counting what it dropped."""
        self._cap_active = False
        self._cap_fault = None
        evicted, self._episode_evicted = self._episode_evicted, {}
        restore = self._gateway(
            DecisionType.RESTORE,
            "outbox is below its cap again; "
            f"{sum(evicted.values())} decision(s) were dropped while it was full",
            evicted=evicted,
            evicted_total=dict(self._evicted_total),
        )
        return _row_of(restore, self.clock.wall())

    def _update_cap_fault(self, db: sqlite3.Connection) -> list[tuple[str, int, int]]:
        """Rewrite the unsent cap FAULT with the episode's count of dropped
        decisions (same id); nothing once it was sent."""
        fault = self._cap_fault
        assert fault is not None
        dropped = sum(self._episode_evicted.values())
        new = _row_of(
            dataclasses.replace(
                fault,
                reason=f"{fault.reason.split('; ')[0]}; {dropped} decision(s) dropped so far "
                "(never fire alarms)",
                details={**fault.details, "evicted": dict(self._episode_evicted)},
            ),
            self.clock.wall(),
        )
        got = db.execute(
            "SELECT bytes FROM outbox WHERE id = ? AND decision_sent = 0", (fault.id,)
        ).fetchone()
        if got is None:
            for r in self._memory:  # held in memory (disk refusing): update it there
                if r.id == fault.id:
                    r.payload = new.payload
            return []
        db.execute(
            "UPDATE outbox SET payload = ?, bytes = ? WHERE id = ?",
            (new.payload, new.nbytes, fault.id),
        )
        return [(new.type, new.nbytes - got[0], 0)]

    def _insert_in_tx_nocap(self, db: sqlite3.Connection, row: _Row) -> list[tuple[str, int, int]]:
        """Insert one row in the open transaction (no cap check); the count change,
        none when the id was already stored (a decision is stored once)."""
        cur = db.execute(
            "INSERT OR IGNORE INTO outbox (id, priority, type, payload, snapshot, bytes, "
            "stored_wall, own) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.priority,
                row.type,
                row.payload,
                row.snapshot,
                row.nbytes,
                row.stored_wall,
                int(row.own),
            ),
        )
        if not cur.rowcount:
            return []
        self._tx_inserted.append(row)
        return [(row.type, row.nbytes, 1)]

    def _count_evicted(self, type_: str, n: int = 1) -> None:
        self._evicted_total[type_] = self._evicted_total.get(type_, 0) + n

    def _gateway(self, type_: DecisionType, reason: str, **details: Any) -> Decision:
        return gateway_decision(
            type_,
            reason,
            part="outbox",
            wall=self.clock.wall(),
            mono=self.clock.monotonic(),
            **details,
        )

    def _peek_thread(
        self, limit: int, skip: set[str], held: frozenset[str], only: str | None
    ) -> list[Pending]:
        self._retry_in_background()
        with self._lock:
            skip = skip | self._deleting
        out: list[Pending] = []
        if self._db is not None:
            out = self._peek_disk(self._db, limit, skip, held, only)
        if self._memory:
            mem = [
                p
                for p in (
                    Pending(
                        r.id,
                        r.priority,
                        r.type,
                        json.loads(r.payload),
                        r.snapshot is not None,
                        r.id in self._memory_sent,
                        durable=False,
                        raw=r.payload.decode(),
                    )
                    for r in self._memory
                    if r.id not in skip
                )
                if p.part not in held and (only is None or p.part == only)
            ]
            # memory rows arrived after every disk row: a stable sort keeps that
            out = sorted(out + mem, key=lambda p: (p.priority, not p.own))[:limit]
        return out

    @staticmethod
    def _peek_disk(
        db: sqlite3.Connection,
        limit: int,
        skip: set[str],
        held: frozenset[str] = frozenset(),
        only: str | None = None,
    ) -> list[Pending]:
        out: list[Pending] = []
        # The part still to send, as Pending.part computes it
        part = f"(CASE WHEN decision_sent THEN '{SNAPSHOT}' ELSE type END)"
        where: list[str] = []
        args: list[Any] = []
        if held:
            where.append(f"{part} NOT IN ({','.join('?' * len(held))})")
            args += sorted(held)
        if only is not None:
            where.append(f"{part} = ?")
            args.append(only)
        # The rows to skip (in flight, or acked and not yet deleted) are left out
        # by SQLite itself: each row fetched is a step that gives up the GIL.
        # Past the statement's variable limit, fetch that many more and skip here.
        extra = len(skip)
        if skip and len(args) + len(skip) < db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER):
            where.append(f"id NOT IN ({','.join('?' * len(skip))})")
            args += list(skip)
            extra = 0
        cond = f"WHERE {' AND '.join(where)} " if where else ""
        cur = db.execute(
            "SELECT id, priority, type, payload, snapshot IS NOT NULL, decision_sent "
            f"FROM outbox {cond}ORDER BY priority, own DESC, seq LIMIT ?",
            (*args, limit + extra),
        )
        for id_, prio, type_, payload, has_snap, sent in cur:
            if id_ in skip:
                continue
            raw = payload.decode() if isinstance(payload, bytes) else str(payload)
            out.append(Pending(id_, prio, type_, None, bool(has_snap), bool(sent), raw=raw))
            if len(out) >= limit:
                break
        return out

    def _saved_state_thread(self, name: str) -> SavedState | None:
        if not self._ensure_open():
            return None
        assert self._db is not None
        try:
            got = self._db.execute(
                "SELECT seq, body FROM saved_state WHERE name = ?", (name,)
            ).fetchone()
        except sqlite3.DatabaseError as e:
            log.warning("outbox %s: cannot read the saved %s state: %s", self.path, name, e)
            return None
        return SavedState(name, int(got[0]), _blob(got[1])) if got else None

    def _snapshot_thread(self, decision_id: str) -> bytes | None:
        for r in self._memory:
            if r.id == decision_id:
                return r.snapshot
        if self._db is None:
            return None
        got = self._db.execute(
            "SELECT snapshot FROM outbox WHERE id = ?", (decision_id,)
        ).fetchone()
        return None if got is None else got[0]

    def _mark_sent_thread(self, decision_id: str) -> None:
        if any(r.id == decision_id for r in self._memory):
            self._memory_sent.add(decision_id)
            return
        if self._db is None:
            return
        self._hook("mark")
        # NORMAL: if this is lost, the decision is sent once more with the same id
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute("UPDATE outbox SET decision_sent = 1 WHERE id = ?", (decision_id,))
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def _delete_thread(self, upto: int | None = None) -> None:
        """Delete the ids acked up to ack number ``upto`` (None: all), i.e. those
        acked before this job was queued: each one's store job (queued before
        it could be handed out and acked) has run. A later ack may belong to
        a decision sent from memory whose store job is queued behind this
        one; deleting it now would let that store bring it back."""
        with self._lock:
            n = len(self._to_delete)
            if upto is not None:
                n = next((k for k, (a, _) in enumerate(self._to_delete) if a > upto), n)
            ids = [i for _, i in self._to_delete[:n]]
            del self._to_delete[:n]
        if not ids:
            return
        try:
            self._guarded(self._delete_ids, ids)
        finally:
            with self._lock:
                self._deleting.difference_update(ids)

    def _delete_ids(self, ids: list[str]) -> None:
        mem_ids = {r.id for r in self._memory}
        if mem_ids & set(ids):
            self._memory = [r for r in self._memory if r.id not in ids]
            self._memory_sent.difference_update(ids)
        db = self._db
        if db is None:
            return
        self._hook("delete")
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            # Two statements per chunk, one commit for the whole group of PUBACKed
            # ids (not one per decision: that cost the drain its speed). Each
            # step into SQLite gives up the GIL and takes it back from the
            # uplink's thread: the counts come from one aggregate row per type,
            # not from a RETURNING row per deleted decision.
            removed: list[tuple[str, int, int]] = []
            db.execute("BEGIN IMMEDIATE")
            try:
                for i in range(0, len(ids), DELETE_CHUNK):
                    removed += self._delete_chunk(db, ids[i : i + DELETE_CHUNK])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself on SQLITE_FULL
                    db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:
            if _is_corrupt(e):
                raise
            # a failed delete only means a later duplicate with the same id
            log.warning("outbox: could not delete %d delivered decision(s): %s", len(ids), e)
            return
        finally:
            db.execute("PRAGMA synchronous=FULL")
        for type_, n, nbytes in removed:
            self._counts.add(type_, -nbytes, -n)
        if self._counts.rows == 0:
            self.journal.rewrite([])  # nothing waits: the journal starts empty
        else:
            self.journal.removed(ids)
            if self.journal.too_big:
                self._rewrite_journal()
        if (
            self._cap_active
            and self._counts.rows < RESTORE_BELOW * self.max_rows
            and self._counts.bytes < RESTORE_BELOW * self.max_bytes
        ):
            self._insert(self._cap_restore_row(), sync_full=True)
            self.changed_threadsafe()

    @staticmethod
    def _delete_chunk(db: sqlite3.Connection, ids: list[str]) -> list[tuple[str, int, int]]:
        """Delete ``ids`` (at most DELETE_CHUNK) within the open transaction;
        (type, rows, bytes) of what was deleted, per type."""
        marks = ",".join("?" * len(ids))
        counted: list[tuple[str, int, int]] = db.execute(
            "SELECT type, count(*), coalesce(sum(bytes), 0) FROM outbox "
            f"WHERE id IN ({marks}) GROUP BY type",
            ids,
        ).fetchall()
        db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", ids)
        return counted

    def changed_threadsafe(self) -> None:
        """Wake the uplink from the outbox thread (a row it did not submit appeared)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self.changed.set)

    _loop: asyncio.AbstractEventLoop | None = None

    def _close_thread(self) -> None:
        try:
            self._delete_thread()  # a group of acked ids still waiting for its commit
        except Exception as e:  # (they are sent again after the restart)
            log.warning("outbox: delivered decisions not deleted at the stop: %s", e)
        if self._db is not None:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                log.warning("outbox: checkpoint at close failed: %s", e)
            self._db.close()
            self._db = None


OUTBOX_FILE = "outbox.db"


def outbox_from_config(storage: StorageConfig, clock: Clock | None = None) -> Outbox:
    """The outbox as the site config describes it: ``<state_dir>/outbox.db``."""
    return Outbox(
        storage.state_dir / OUTBOX_FILE,
        storage.outbox_max_rows,
        int(storage.outbox_max_mb * 1024 * 1024),
        clock=clock,
    )


def _is_corrupt(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(e).lower()
    return "malformed" in text or "not a database" in text


def _salvage(path: Path) -> list[_Row]:
    """Read whatever rows of a damaged outbox can still be read, in send order."""
    rows: list[_Row] = []
    if not path.exists():
        return rows
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return rows
    cols = "seq, id, priority, type, payload, snapshot, stored_wall"
    seen: set[int] = set()

    def take(r: Any) -> None:
        try:
            payload = _blob(r[4])
            own = f'"zone":"{GATEWAY_ZONE}"'.encode() in payload
            row = _Row(str(r[1]), int(r[2]), str(r[3]), payload, r[5], float(r[6]), own)
        except (TypeError, ValueError):
            return
        seen.add(int(r[0]))
        rows.append(row)

    last = 0
    try:
        # in order until the first damaged page...
        try:
            for r in db.execute(f"SELECT {cols} FROM outbox ORDER BY seq"):
                take(r)
                last = int(r[0])
        except sqlite3.Error:
            pass
        # ...then row by row past it: a damaged page loses its own rows only
        try:
            top = int(db.execute("SELECT max(seq) FROM outbox").fetchone()[0] or 0)
        except (sqlite3.Error, TypeError, ValueError):
            top = last + SALVAGE_PROBE
        misses = 0
        for seq in range(last + 1, min(top, last + SALVAGE_PROBE) + 1):
            try:
                r = db.execute(f"SELECT {cols} FROM outbox WHERE seq = ?", (seq,)).fetchone()
            except sqlite3.Error:
                r = None
            if r is None:
                misses += 1
                if top == last + SALVAGE_PROBE and misses > SALVAGE_MISSES:
                    break
                continue
            misses = 0
            if int(r[0]) not in seen:
                take(r)
    except sqlite3.Error:
        pass
    finally:
        db.close()
    valid = {t.value for t in PRIORITY}
    return [r for r in rows if r.type in valid]


class _OneThread(Executor):
    """One worker thread, a daemon: a disk that never answers again must not
    hold the interpreter's exit (ThreadPoolExecutor joins its threads then).
    ``stalled_s`` says how long the job in progress has been running."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._busy_since: float | None = None

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        fut: Future[T] = Future()
        self._jobs.put((fut, lambda: fn(*args, **kwargs), ()))
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return fut

    def stalled_s(self) -> float:
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._jobs.put(None)
        if wait and self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            fut, fn, _ = item
            if not fut.set_running_or_notify_cancel():
                continue
            self._busy_since = time.monotonic()
            try:
                result = fn()
            except BaseException as e:
                fut.set_exception(e)
            else:
                fut.set_result(result)
            finally:
                self._busy_since = None


class _Journal:
    """A second, tiny, append-only record of the outbox (outbox thread only).

    One line per decision stored (``{"s": id, "t": type}``; a fire alarm with
    its payload, and fsynced) and per delivered or evicted batch
    (``{"a": [ids]}``). It lets a start tell how many decisions a truncated
    database, a removed -wal or a damaged page lost, and put the fire alarms
    back. Emptied when nothing waits; rewritten from the database past
    ``JOURNAL_MAX_BYTES``. Never raises: a failing journal is logged once and
    only costs that count.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error = ""
        self._size = -1

    def read(self) -> dict[str, tuple[str, bytes | None]] | None:
        """id -> (type, fire alarm payload) of what waits; None: no journal."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        live: dict[str, tuple[str, bytes | None]] = {}
        for line in data.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if not isinstance(e, dict):
                continue
            if "s" in e:
                p = e.get("p")
                live[str(e["s"])] = (
                    str(e.get("t", "")),
                    p.encode() if isinstance(p, str) else None,
                )
            for id_ in e.get("a", ()) if isinstance(e.get("a"), list) else ():
                live.pop(str(id_), None)
        return live

    def stored(self, rows: list[_Row]) -> None:
        if not rows:
            return
        lines = []
        for r in rows:
            e: dict[str, Any] = {"s": r.id, "t": r.type}
            if r.priority == 0:
                e["p"] = r.payload.decode("utf-8", errors="replace")
            lines.append(json.dumps(e, separators=(",", ":")))
        self._append(lines, fsync=any(r.priority == 0 for r in rows))

    def removed(self, ids: list[str]) -> None:
        if ids:
            self._append([json.dumps({"a": ids}, separators=(",", ":"))], fsync=False)

    def rewrite(self, live: Iterable[tuple[str, str, bytes | None]]) -> None:
        lines = []
        for id_, type_, payload in live:
            e: dict[str, Any] = {"s": id_, "t": type_}
            if payload is not None:
                e["p"] = payload.decode("utf-8", errors="replace")
            lines.append(json.dumps(e, separators=(",", ":")) + "\n")
        data = "".join(lines).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._size = len(data)
        except OSError as e:
            self._failed(e)

    def _append(self, lines: list[str], *, fsync: bool) -> None:
        data = ("\n".join(lines) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                if fsync:
                    os.fsync(fd)
                self._size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        except OSError as e:
            self._failed(e)
            return
        if self.error:
            log.info("outbox journal %s written again", self.path)
            self.error = ""

    @property
    def too_big(self) -> bool:
        return self._size > JOURNAL_MAX_BYTES

    def _failed(self, e: OSError) -> None:
        if not self.error:
            log.error(
                "outbox journal %s cannot be written (%s): a damaged or truncated outbox "
                "could then lose decisions without a count",
                self.path,
                e,
            )
        self.error = str(e)


def _write_spill(path: Path, rows: list[_Row], sent: set[str]) -> None:
    lines = []
    for r in rows:
        e = {
            "id": r.id,
            "priority": r.priority,
            "type": r.type,
            "payload": r.payload.decode("utf-8", errors="replace"),
            "snapshot": base64.b64encode(r.snapshot).decode() if r.snapshot else None,
            "stored_wall": r.stored_wall,
            "own": r.own,
            "sent": r.id in sent,
        }
        lines.append(json.dumps(e, separators=(",", ":")) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, "".join(lines).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_spill(path: Path) -> tuple[list[_Row], set[str]]:
    rows: list[_Row] = []
    sent: set[str] = set()
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
            snap = e.get("snapshot")
            rows.append(
                _Row(
                    str(e["id"]),
                    int(e["priority"]),
                    str(e["type"]),
                    str(e["payload"]).encode(),
                    base64.b64decode(snap) if snap else None,
                    float(e["stored_wall"]),
                    bool(e.get("own", False)),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a torn line
        if e.get("sent"):
            sent.add(str(e["id"]))
    valid = {t.value for t in PRIORITY}
    return [r for r in rows if r.type in valid], sent


def _blob(value: Any) -> bytes:
    """A payload as bytes, whether SQLite gives it back as BLOB or TEXT."""
    return value.encode() if isinstance(value, str) else bytes(value)


async def _wait_shielded(fut: asyncio.Future[T], timeout_s: float) -> T:
    """``fut``'s result, or TimeoutError after ``timeout_s``; the thread's work goes
    on either way (shielded).

    Not ``asyncio.wait_for``: on Python 3.11 it returns the result instead of
    raising CancelledError when the caller is cancelled in the loop iteration
    where the result lands (CPython gh-86296). An uplink's drain cancelled by
    a dropped connection then went on with the link gone, its TaskGroup
    waited for it forever, and the uplink stayed "connected" for good and
    could not be stopped (tests/uplink/test_outbox_cancel.py).
    """
    async with asyncio.timeout(timeout_s):
        return await asyncio.shield(fut)


def _log_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("outbox: background write failed: %s", fut.exception())
