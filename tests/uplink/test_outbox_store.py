"""The outbox on its own: order, durability across reopen, cap and eviction, bad storage."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.events import GATEWAY_ZONE, DecisionType
from agent.outbox import SNAPSHOT, Outbox
from tests.uplink.uplink_support import decision, loop_gaps


def moved_aside(folder: Path) -> list[Path]:
    return sorted(folder.glob("ob.db.corrupt-*"))


async def test_priority_order_and_order_within_priority(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", 1000, 10**8)
    types = [DecisionType.STATS, DecisionType.FIRE_ALARM, DecisionType.FAULT] * 4
    ds = [decision(t, n) for n, t in enumerate(types)]
    for d in ds:
        await ob.submit(d)
    got = [p.id for p in await ob.next_batch(100)]
    want = [d.id for d in sorted(ds, key=lambda d: (d.priority, d.wall))]
    assert got == want
    # exclude (in flight) and acked ids are skipped
    ob.acked(want[0])
    got2 = [p.id for p in await ob.next_batch(3, exclude={want[1]})]
    assert got2 == want[2:5]
    await ob.close()


async def test_held_parts_are_skipped_and_only_keeps_order(tmp_path: Path) -> None:
    """What the uplink holds back while the broker refuses a kind of topic."""
    ob = Outbox(tmp_path / "ob.db", 1000, 10**8)
    types = [DecisionType.STATS, DecisionType.FIRE_ALARM, DecisionType.FAULT] * 3
    ds = [decision(t, n, snapshot=b"jpeg" if n % 2 else None) for n, t in enumerate(types)]
    for d in ds:
        await ob.submit(d)
    order = [d.id for d in sorted(ds, key=lambda d: (d.priority, d.wall))]
    sent = next(d for d in ds if d.type is DecisionType.FIRE_ALARM and d.snapshot_jpeg)
    await ob.mark_decision_sent(sent.id)  # only its snapshot is left
    assert {p.id: p.part for p in await ob.next_batch(100)}[sent.id] == SNAPSHOT

    got = [p.id for p in await ob.next_batch(100, held={"fire_alarm"})]
    fire_left = {d.id for d in ds if d.type is DecisionType.FIRE_ALARM} - {sent.id}
    assert got == [i for i in order if i not in fire_left]  # the snapshot part still goes
    got = [p.id for p in await ob.next_batch(100, held={"fire_alarm", SNAPSHOT, "stats"})]
    assert got == [d.id for d in ds if d.type is DecisionType.FAULT]
    # only: the oldest of one part, in order, in-flight ids excluded
    faults = [d.id for d in ds if d.type is DecisionType.FAULT]
    assert [p.id for p in await ob.next_batch(1, only="fault")] == faults[:1]
    assert [p.id for p in await ob.next_batch(5, exclude={faults[0]}, only="fault")] == faults[1:]
    assert [p.id for p in await ob.next_batch(5, only=SNAPSHOT)] == [sent.id]
    await ob.close()


async def test_survives_reopen_with_payload_and_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ob.db"
    ob = Outbox(path, 1000, 10**8)
    d = decision(DecisionType.FIRE_ALARM, 7, snapshot=b"\xff\xd8jpeg")
    await ob.submit(d)
    await ob.submit(d)  # the same decision twice: stored once
    await ob.mark_decision_sent(d.id)
    # no close(): like a crash, the WAL holds the commits
    ob2 = Outbox(path, 1000, 10**8)
    (p,) = await ob2.next_batch(10)
    assert p.id == d.id and p.payload == d.to_dict() and p.has_snapshot and p.decision_sent
    assert await ob2.snapshot(d.id) == b"\xff\xd8jpeg"
    assert ob2.status()["rows"] == 1
    ob2.acked(d.id)
    await ob2.flush()
    assert ob2.status()["rows"] == 0 and await ob2.next_batch(10) == []
    await ob2.close()
    await ob.close()


async def test_durability_settings(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", 1000, 10**8)
    await ob.flush()
    mode = await ob._call(lambda: ob._db.execute("PRAGMA journal_mode").fetchone()[0])  # type: ignore[union-attr]
    sync = await ob._call(lambda: ob._db.execute("PRAGMA synchronous").fetchone()[0])  # type: ignore[union-attr]
    assert mode == "wal" and sync == 2  # FULL: fsync of the WAL at every insert commit
    await ob.close()


async def test_cap_evicts_lowest_priority_first_never_fire_and_faults(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", max_rows=10, max_bytes=10**8)
    fires = [decision(DecisionType.FIRE_ALARM, n) for n in range(3)]
    stats = [decision(DecisionType.STATS, n) for n in range(10, 16)]
    for d in fires + stats:
        await ob.submit(d)
    assert ob.status()["rows"] == 9 and not ob.status()["cap_reached"]
    restores = [decision(DecisionType.RESTORE, n) for n in range(20, 23)]
    for d in restores:
        await ob.submit(d)
    st = ob.status()
    assert st["cap_reached"]
    assert st["rows"] <= 11  # the cap (10) plus the stored cap FAULT, never more
    kept = await ob.next_batch(100)
    kept_ids = {p.id for p in kept}
    assert {d.id for d in fires} <= kept_ids  # no fire alarm evicted
    assert {d.id for d in restores} <= kept_ids  # restores outrank stats
    # the oldest stats went first
    assert stats[0].id not in kept_ids and stats[-1].id in kept_ids
    faults = [p for p in kept if p.type == "fault"]
    assert len(faults) == 1 and faults[0].payload["zone"] == GATEWAY_ZONE
    assert "cap" in faults[0].payload["reason"]
    assert st["evicted"]["stats"] >= 3
    # a lower-priority decision than everything stored is the one dropped
    for n in range(30, 40):
        await ob.submit(decision(DecisionType.FIRE_ALARM, n))
    s = decision(DecisionType.STATS, 99)
    await ob.submit(s)
    assert s.id not in {p.id for p in await ob.next_batch(100)}
    # fire alarms are stored past the cap
    assert ob.status()["by_type"]["fire_alarm"] == 13
    await ob.close()


async def test_cap_by_bytes_and_restore_below_cap(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", max_rows=1000, max_bytes=60_000)
    big = b"\xff\xd8" + b"x" * 20_000
    ds = [decision(DecisionType.FAULT, n, snapshot=big) for n in range(4)]
    for d in ds:
        await ob.submit(d)
    assert ob.status()["cap_reached"] and ob.status()["bytes"] <= 60_000 + 2_000
    assert ds[0].id not in {p.id for p in await ob.next_batch(100)}
    for p in await ob.next_batch(100):
        ob.acked(p.id)
    await ob.flush()
    await ob.flush()
    assert not ob.status()["cap_reached"]
    left = await ob.next_batch(100)
    assert [p.type for p in left] == ["restore"]
    await ob.close()


async def test_corrupt_file_is_moved_aside_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    path.write_bytes(b"this is not a database, it was damaged by a power cut" * 100)
    ob = Outbox(path, 1000, 10**8)
    d = decision(DecisionType.FIRE_ALARM, 1)
    await ob.submit(d)  # must not raise
    got = await ob.next_batch(10)
    assert [p.type for p in got] == ["fire_alarm", "fault"]
    assert "damaged" in got[1].payload["reason"]
    aside = moved_aside(tmp_path)
    assert aside and aside[0].read_bytes().startswith(b"this is not a database")
    assert ob.status()["recovered_files"] == [str(aside[0])]
    await ob.close()


async def test_corrupt_pages_keep_what_can_be_read(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    ob = Outbox(path, 10_000, 10**9)
    ds = [decision(DecisionType.FAULT, n, snapshot=b"\xff" * 3000) for n in range(200)]
    for d in ds:
        await ob.submit(d)
    await ob.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    # scribble over some pages in the middle (not the header, not page 2 root)
    for i in range(len(raw) // page // 2, len(raw) // page // 2 + 3):
        raw[i * page : (i + 1) * page] = b"\x5a" * page
    path.write_bytes(bytes(raw))
    ob2 = Outbox(path, 10_000, 10**9)
    got = await ob2.next_batch(1000)
    assert got[-1].type == "fault" or any(p.payload["zone"] == GATEWAY_ZONE for p in got)
    fault = next(p for p in got if p.payload["zone"] == GATEWAY_ZONE)
    recovered = fault.payload["details"]["recovered"]
    assert 0 < recovered < 200
    assert ob2.status()["rows"] == recovered + 1
    await ob2.close()


async def test_disk_full_keeps_decisions_in_memory_and_faults(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", 1000, 10**9)
    await ob.submit(decision(DecisionType.STATS, 0))

    def fill_disk() -> None:
        # a real SQLITE_FULL: the file may not grow past its current pages
        assert ob._db is not None
        n = ob._db.execute("PRAGMA page_count").fetchone()[0]
        ob._db.execute(f"PRAGMA max_page_count={n}")

    await ob._call(fill_disk)
    big = [decision(DecisionType.FIRE_ALARM, n, snapshot=b"\xff" * 50_000) for n in range(1, 4)]
    for d in big:
        await ob.submit(d)  # must not raise
    st = ob.status()
    assert st["write_failing"] and st["in_memory"] >= 3
    batch = await ob.next_batch(10)
    assert [p.type for p in batch[:3]] == ["fire_alarm"] * 3
    assert not batch[0].durable
    assert any(p.type == "fault" and "disk is full" in p.payload["reason"] for p in batch)
    assert await ob.snapshot(big[0].id) == b"\xff" * 50_000

    def free_disk() -> None:
        assert ob._db is not None
        ob._db.execute("PRAGMA max_page_count=1073741823")

    await ob._call(free_disk)
    await ob.submit(decision(DecisionType.STATS, 9))
    st = ob.status()
    assert not st["write_failing"] and st["in_memory"] == 0
    types = [p.type for p in await ob.next_batch(20)]
    assert types.count("fire_alarm") == 3 and "restore" in types
    assert all(p.durable for p in await ob.next_batch(20))
    await ob.close()


async def test_submit_does_not_stall_event_loop(tmp_path: Path) -> None:
    """SQLite (and its fsync) runs on the outbox thread: a ticker keeps ticking."""
    ob = Outbox(tmp_path / "ob.db", 100_000, 10**9)
    await ob.flush()
    async with loop_gaps() as gaps:
        for n in range(200):
            await ob.submit(decision(DecisionType.FAULT, n))
    await ob.close()
    assert max(gaps) < 0.1, max(gaps)


def test_rejects_nonsense_caps(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Outbox(tmp_path / "ob.db", 0, 10)


async def test_unusable_database_is_a_clear_error_and_memory_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")  # written by some other agent version
    db.close()
    ob = Outbox(path, 100, 10**6)
    d = decision(DecisionType.FIRE_ALARM, 1)
    await ob.submit(d)  # never raises into the engine
    st = ob.status()
    assert "version 99" in st["last_error"] and str(path) in st["last_error"]
    assert st["in_memory"] == 2 and st["write_failing"]  # the alarm and the fault
    assert [p.id for p in await ob.next_batch(1)] == [d.id]
    await ob.close()


async def test_cap_full_of_fire_alarms_evicts_nothing_in_vain(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", max_rows=4, max_bytes=10**8)
    fires = [decision(DecisionType.FIRE_ALARM, n) for n in range(4)]
    for d in fires:
        await ob.submit(d)
    late = [decision(DecisionType.RESTORE, 10), decision(DecisionType.FAULT, 11)]
    for d in late:
        await ob.submit(d)  # no room even after evicting everything below them: dropped
    more = decision(DecisionType.FIRE_ALARM, 12)
    await ob.submit(more)  # stored past the cap, evicting nothing in vain
    kept = await ob.next_batch(100)
    assert [p.id for p in kept if p.type == "fire_alarm"] == [d.id for d in [*fires, more]]
    faults = [p for p in kept if p.type == "fault"]
    assert len(faults) == 1 and faults[0].payload["zone"] == GATEWAY_ZONE  # the cap fault
    assert ob.status()["evicted"] == {"restore": 1, "fault": 1}
    await ob.close()


def test_outbox_from_config(tmp_path: Path) -> None:
    from agent.outbox import outbox_from_config
    from agent.siteconfig.models import StorageConfig

    ob = outbox_from_config(StorageConfig(state_dir=tmp_path, outbox_max_rows=500, outbox_max_mb=2))
    assert ob.path == tmp_path / "outbox.db"
    assert (ob.max_rows, ob.max_bytes) == (500, 2 * 1024 * 1024)


async def test_batch_and_its_state_are_one_transaction(tmp_path: Path) -> None:
    """submit_batch: the decisions and the saver's state are stored together or
    not at all; a state with a lower counter never replaces a newer one; the
    cap counts every row of the batch."""
    from agent.outbox import SavedState

    ob = Outbox(tmp_path / "ob.db", 4, 10**8)
    first = [decision(DecisionType.FIRE_ALARM, 0), decision(DecisionType.FAULT, 1)]
    await ob.submit_batch(first, SavedState("episodes", 2, b"two"))
    restore = decision(DecisionType.RESTORE, 2)
    await ob.submit_batch([restore], SavedState("episodes", 1, b"one"))
    got = await ob.saved_state("episodes")
    assert got is not None and (got.seq, got.body) == (2, b"two")  # the older did not win
    assert await ob.saved_state("other") is None

    # a write the disk refuses: neither the rows nor the state reach the file
    def refuse(kind: str) -> None:
        if kind == "insert":
            raise sqlite3.OperationalError("disk I/O error")

    ob.io_hook = refuse
    await ob.submit_batch(
        [decision(DecisionType.FAULT, 3), decision(DecisionType.FAULT, 4)],
        SavedState("episodes", 3, b"three"),
    )
    ob.io_hook = None
    await ob.close()

    again = Outbox(tmp_path / "ob.db", 4, 10**8)
    stored = await again.saved_state("episodes")
    assert stored is not None and stored.body == b"two"
    assert sorted(p.id for p in await again.next_batch(100)) == sorted(
        [first[0].id, first[1].id, restore.id]
    )
    # a batch past the cap: the cap sees the rows before it in the same batch
    await again.submit_batch(
        [decision(DecisionType.STATS, n) for n in range(10, 13)], SavedState("episodes", 4, b"4")
    )
    assert again.status()["rows"] <= 4 + 1  # the cap (plus its own FAULT, stored past it)
    await again.close()
