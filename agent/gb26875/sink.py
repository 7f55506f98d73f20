"""Hand every decision to two outboxes, MQTT's and the GB/T 26875.3 uplink's,
so that a kill -9 at any point leaves it in both or (before ``submit``
returned) in neither.

Two SQLite commits cannot be one transaction, so a small hand-off journal
(``<state_dir>/outbox-handoff.db``) comes first:

1. the whole decision (snapshot included) is committed to the journal
   (``synchronous=FULL``);
2. it is committed to both outboxes (at once, each on its own thread);
3. its journal row is deleted (``synchronous=NORMAL``: a delete lost to a
   power cut only means step 2 is repeated at start-up).

At start-up (``run``, a supervisor part) every decision still in the journal
is submitted to both outboxes again and then removed. An outbox that still
holds it ignores it (a decision id is stored once); one that never got it
stores it. The one case that can send a decision twice: an uplink delivered
and deleted it in the milliseconds between step 2 and step 3; MQTT then
sends it again under the same id (its receiver de-duplicates by id) and the
GB/T 26875.3 uplink under the same serial number (``serials``), which the
centre discards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from agent.events import Decision, DecisionType, Evidence
from agent.outbox import Outbox, SavedState

log = logging.getLogger(__name__)

T = TypeVar("T")

GB_OUTBOX_FILE = "outbox-gb26875.db"
JOURNAL_FILE = "outbox-handoff.db"
IDLE_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handoff (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,   -- the decision id
    decision BLOB NOT NULL,    -- every field of the Decision but the snapshot, JSON
    snapshot BLOB              -- its JPEG, if any
);
"""


def decision_json(d: Decision) -> bytes:
    fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}
    fields.pop("snapshot_jpeg")
    fields["evidence"] = [dataclasses.asdict(e) for e in d.evidence]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def decision_of(raw: bytes, snapshot: bytes | None) -> Decision:
    f: dict[str, Any] = json.loads(raw)
    f["type"] = DecisionType(f["type"])
    f["devices"] = tuple(f["devices"])
    f["cameras"] = tuple(f["cameras"])
    f["evidence"] = tuple(Evidence(**e) for e in f["evidence"])
    return Decision(**f, snapshot_jpeg=snapshot)


class HandoffJournal:
    """Decisions on their way into both outboxes; one thread of its own."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handoff")
        self._db: sqlite3.Connection | None = None

    async def put(self, d: Decision) -> None:
        raw = decision_json(d)
        await self._call(self._put, d.id, raw, d.snapshot_jpeg)

    async def done(self, decision_id: str) -> None:
        await self._call(self._done, decision_id)

    async def pending(self) -> list[Decision]:
        return await self._call(self._pending)

    def close(self) -> None:
        self._executor.submit(self._close)
        self._executor.shutdown(wait=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handoff")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _put(self, decision_id: str, raw: bytes, snapshot: bytes | None) -> None:
        self._open().execute(
            "INSERT OR IGNORE INTO handoff (id, decision, snapshot) VALUES (?, ?, ?)",
            (decision_id, raw, snapshot),
        )

    def _done(self, decision_id: str) -> None:
        db = self._open()
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("DELETE FROM handoff WHERE id = ?", (decision_id,))
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def _pending(self) -> list[Decision]:
        out: list[Decision] = []
        for id_, raw, snapshot in self._open().execute(
            "SELECT id, decision, snapshot FROM handoff ORDER BY seq"
        ):
            try:
                out.append(decision_of(raw, snapshot))
            except (ValueError, TypeError, KeyError) as e:  # written by another version
                log.error("outbox hand-off: decision %s in %s unreadable: %s", id_, self.path, e)
                self._done(id_)
        return out

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class BothOutboxes:
    """A decision sink that stores each decision in both outboxes before it
    returns, through the hand-off journal (module docstring), so that each
    uplink drains its own queue at its own pace and deletes a decision only
    on its own receiver's acknowledgement. Also a supervisor part: ``run``
    finishes the hand-offs a kill -9 interrupted."""

    name = "outbox-handoff"

    def __init__(self, mqtt: Outbox, gb: Outbox, journal: HandoffJournal | None = None) -> None:
        self.mqtt = mqtt
        self.gb = gb
        self.journal = journal or HandoffJournal(mqtt.path.parent / JOURNAL_FILE)
        self.clock = mqtt.clock
        self.progress_mono = self.clock.monotonic()  # for the health watchdog
        self.recovered = 0
        self.journal_error = ""

    async def submit(self, decision: Decision) -> None:
        journalled = await self._put(decision)
        await asyncio.gather(self.mqtt.submit(decision), self.gb.submit(decision))
        if journalled:
            await self._done(decision.id)

    async def submit_batch(self, decisions: list[Decision], state: SavedState | None) -> bool:
        """As ``submit`` for each, in one transaction per outbox; ``state`` goes
        with the MQTT outbox's (the runner reads it back from there): True
        when that one committed it."""
        journalled = [await self._put(d) for d in decisions]
        stored, _ = await asyncio.gather(
            self.mqtt.submit_batch(decisions, state), self.gb.submit_batch(decisions, None)
        )
        for d, put in zip(decisions, journalled, strict=True):
            if put:
                await self._done(d.id)
        return stored

    async def saved_state(self, name: str) -> SavedState | None:
        return await self.mqtt.saved_state(name)

    async def recover(self) -> int:
        """Store in both outboxes what the journal still holds; how many."""
        try:
            pending = await self.journal.pending()
        except (sqlite3.Error, OSError) as e:
            self._journal_failed(e)
            return 0
        for d in pending:
            self.progress_mono = self.clock.monotonic()
            await asyncio.gather(self.mqtt.submit(d), self.gb.submit(d))
            await self._done(d.id)
        if pending:
            log.warning(
                "outbox hand-off: %d decision(s) interrupted by a restart stored in both "
                "outboxes now",
                len(pending),
            )
        self.recovered += len(pending)
        return len(pending)

    async def run(self) -> None:
        try:
            self.progress_mono = self.clock.monotonic()
            await self.recover()
            while True:  # nothing more to do until shutdown; alive for the watchdog
                self.progress_mono = self.clock.monotonic()
                await self.clock.sleep(IDLE_S)
        finally:
            self.journal.close()

    def status(self) -> dict[str, Any]:
        return {
            "journal": str(self.journal.path),
            "recovered": self.recovered,
            "last_error": self.journal_error,
        }

    async def _put(self, decision: Decision) -> bool:
        try:
            await self.journal.put(decision)
        except (sqlite3.Error, OSError) as e:  # never hold up a decision: both commits still follow
            self._journal_failed(e)
            return False
        return True

    async def _done(self, decision_id: str) -> None:
        try:
            await self.journal.done(decision_id)
        except (sqlite3.Error, OSError) as e:
            self._journal_failed(e)

    def _journal_failed(self, e: Exception) -> None:
        if self.journal_error != str(e):
            log.error(
                "outbox hand-off journal %s unusable (%s): a kill -9 between the two outboxes' "
                "commits could leave a decision in one only (check the state_dir's disk)",
                self.journal.path,
                e,
            )
        self.journal_error = str(e)
