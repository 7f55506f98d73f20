"""Issue 13: the outbox's own "cap reached" FAULT survives the flood it reports.

The gateway's own decisions (zone _gateway) outrank what they report on: the
cap FAULT is never evicted by ordinary decisions of its priority, it is sent
before them, and ``details.evicted`` counts every decision dropped while the
cap holds (the FAULT is rewritten, same id, while it waits to be sent; the
RESTORE carries the episode's total).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.events import GATEWAY_ZONE, DecisionType
from agent.outbox import Outbox
from tests.uplink.uplink_support import decision


async def test_cap_fault_is_not_evicted_by_a_flood_of_faults(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", max_rows=10, max_bytes=10**8)
    flood = [decision(DecisionType.FAULT, n) for n in range(60)]
    for d in flood:
        await ob.submit(d)
    batch = await ob.next_batch(100)
    own = [p for p in batch if p.payload["zone"] == GATEWAY_ZONE]
    assert len(own) == 1, [p.payload["reason"] for p in batch]
    cap = own[0]
    assert cap.type == "fault" and "cap" in cap.payload["reason"]
    assert batch[0].id == cap.id  # sent before the faults it reports on
    dropped = ob.status()["evicted"]["fault"]
    assert dropped == 60 + 1 - len(batch)  # every submitted fault is kept or counted
    assert cap.payload["details"]["evicted"] == {"fault": dropped}
    assert f"{dropped} decision(s) dropped" in cap.payload["reason"]
    # the newest faults are kept, the oldest dropped
    assert flood[-1].id in {p.id for p in batch} and flood[0].id not in {p.id for p in batch}

    for p in batch:
        ob.acked(p.id)
    await ob.flush()
    await ob.flush()
    left = await ob.next_batch(10)
    assert [p.type for p in left] == ["restore"]
    assert left[0].payload["details"]["evicted"] == {"fault": dropped}
    await ob.close()


async def test_cap_fault_already_sent_is_not_rewritten(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", max_rows=5, max_bytes=10**8)
    for n in range(6):
        await ob.submit(decision(DecisionType.STATS, n))
    cap = next(p for p in await ob.next_batch(10) if p.payload["zone"] == GATEWAY_ZONE)
    ob.acked(cap.id)  # delivered
    await ob.flush()
    for n in range(6, 12):
        await ob.submit(decision(DecisionType.STATS, n))
    assert all(p.id != cap.id for p in await ob.next_batch(20))
    assert ob.status()["evicted"]["stats"] >= 6
    await ob.close()


async def test_outbox_of_the_previous_layout_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    """A database written before the ``own`` column: opened, rows kept, sent."""
    path = tmp_path / "ob.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
            priority INTEGER NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL,
            snapshot BLOB, bytes INTEGER NOT NULL,
            decision_sent INTEGER NOT NULL DEFAULT 0, stored_wall REAL NOT NULL);
        CREATE INDEX outbox_order ON outbox(priority, seq);
        PRAGMA user_version=1;
        """
    )
    db.execute(
        "INSERT INTO outbox (id, priority, type, payload, bytes, stored_wall) "
        "VALUES ('a', 0, 'fire_alarm', '{\"zone\":\"z1\"}', 14, 0)"
    )
    db.commit()
    db.close()
    ob = Outbox(path, 100, 10**6)
    await ob.submit(decision(DecisionType.FAULT, 1))
    assert [p.type for p in await ob.next_batch(10)] == ["fire_alarm", "fault"]
    await ob.close()
