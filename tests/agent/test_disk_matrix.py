"""Issue 14: the disk-fault matrix of the outbox.

Every cell: the state disk goes bad (read-only, full, stalled) while the
broker is up (decisions are drained as the uplink does: next_batch, then
acked on PUBACK) or down (nothing drained); 3 fire alarms and 5 faults are
decided meanwhile; then the agent restarts, either after the disk came back
or while it is still bad (what only memory held is then kept in the
runtime folder, RAM that systemd keeps over a restart, and taken back).

What must hold in every cell: nothing vanishes without a log line; fire
alarms are never dropped and go first; the outbox's own FAULT says the disk
is bad (with counts) and goes first among faults; what the disk refused is
written out once it takes writes again, so it survives the restart; no
decision is delivered twice.

The faults are injected at the boundary of the storage calls, so the test
runs anywhere (CI has neither root nor a block device to freeze): read-only
is SQLite's ``query_only`` (every write fails with SQLITE_READONLY, as on a
card the kernel remounted read-only), full is ``max_page_count`` at the
file's size (a real SQLITE_FULL), stalled is a hook that blocks every write
transaction on the outbox thread. test_disk_tmpfs.py repeats read-only and
full on a real, tiny tmpfs where the system allows mounting one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from agent import outbox as outbox_mod
from agent.events import GATEWAY_ZONE, Decision, DecisionType
from agent.outbox import Outbox
from tests.uplink.uplink_support import decision

FAULTS = ["read-only", "full", "stalled"]
BROKER = ["up", "down"]
RESTART = ["after the disk returns", "while the disk is bad"]


class Disk:
    """Turns one outbox's storage bad and good again."""

    def __init__(self, ob: Outbox, kind: str) -> None:
        self.ob, self.kind = ob, kind
        self.gate = threading.Event()
        self.abort = False

    def _block(self, _kind: str) -> None:
        self.gate.wait(30)
        if self.abort:  # the process "died" during the stall: these writes never happen
            raise sqlite3.OperationalError("disk I/O error")

    async def fail(self) -> None:
        if self.kind == "stalled":
            self.ob.io_hook = self._block
            return

        def bad() -> None:
            db = self.ob._db
            assert db is not None
            if self.kind == "read-only":
                db.execute("PRAGMA query_only=1")
            else:
                n = db.execute("PRAGMA page_count").fetchone()[0]
                db.execute(f"PRAGMA max_page_count={n}")

        await self.ob._call(bad)

    async def heal(self) -> None:
        if self.kind == "stalled":
            self.ob.io_hook = None
            self.gate.set()
            return

        def good() -> None:
            db = self.ob._db
            assert db is not None
            db.execute("PRAGMA query_only=0")
            db.execute("PRAGMA max_page_count=1073741823")

        await self.ob._call(good)

    def die(self) -> None:
        self.abort = True
        self.gate.set()


async def drain(ob: Outbox, delivered: list[str]) -> list[str]:
    """What the uplink does with the broker up: every batch sent and acked."""
    types: list[str] = []
    for _ in range(20):
        batch = await ob.next_batch(50, exclude=set())
        batch = [p for p in batch if p.id not in delivered]
        if not batch:
            break
        for p in batch:
            delivered.append(p.id)
            types.append(p.type)
            ob.acked(p.id)
        await asyncio.sleep(0)
    return types


def _decisions() -> list[Decision]:
    snap = b"\xff" * 20_000  # big enough that a full disk refuses each one
    out = []
    for n in range(8):
        t = DecisionType.FIRE_ALARM if n in (1, 4, 6) else DecisionType.FAULT
        out.append(decision(t, n, snapshot=snap))
    return out


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_mod, "MEMORY_RETRY_S", 0.0)
    monkeypatch.setattr(outbox_mod, "CLOSE_TIMEOUT_S", 0.3)


@pytest.mark.parametrize("restart", RESTART)
@pytest.mark.parametrize("broker", BROKER)
@pytest.mark.parametrize("fault", FAULTS)
async def test_disk_fault_matrix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str, broker: str, restart: str
) -> None:
    caplog.set_level(logging.WARNING)
    path = tmp_path / "outbox.db"
    run = tmp_path / "run"  # systemd's RuntimeDirectory: RAM, kept over a restart
    ob = Outbox(path, 1000, 10**9, write_timeout_s=0.1, stall_fault_s=0.3, spill_dir=run)
    await ob.submit(decision(DecisionType.STATS, 99))  # opens the file; one row on disk
    delivered: list[str] = []
    if broker == "up":
        await drain(ob, delivered)
        # The acks' deletes are committed as a group, outbox.ACK_GROUP_S later:
        # the disk goes bad after that commit here. An ack whose group had not
        # committed when the disk failed or the process died is sent again
        # after the restart (same id): a duplicate the centre drops, never a
        # loss (tests/uplink/test_uplink_kill.py).
        await ob.flush()
    disk = Disk(ob, fault)
    await disk.fail()

    ds = _decisions()
    fire_ids = {d.id for d in ds if d.type is DecisionType.FIRE_ALARM}
    for d in ds:
        async with asyncio.timeout(2):  # a bad disk never holds the engine up
            await ob.submit(d)
    if fault == "stalled":
        await asyncio.sleep(0.3)  # stalled long enough to tell the centre

    if broker == "up":
        types = await drain(ob, delivered)
        assert {d.id for d in ds} <= set(delivered)  # everything left the gateway
        assert types[:3] == ["fire_alarm"] * 3  # fire alarms first
    else:
        batch = await ob.next_batch(100)
        assert [p.type for p in batch[:3]] == ["fire_alarm"] * 3
        own = [p for p in batch if p.payload["zone"] == GATEWAY_ZONE]
        assert own and own[0].type == "fault", [p.payload["reason"] for p in batch]
        # said upstream first among faults, with counts
        assert batch[3].id == own[0].id
        details = own[0].payload["details"]
        if fault == "stalled":
            assert details["not_stored"] >= 1 and "stalled" in own[0].payload["reason"]
        else:
            assert details["held_in_memory"] == {"fault": 5, "fire_alarm": 3}
            assert "8 decision(s) held in memory" in own[0].payload["reason"]
        assert {d.id for d in ds} <= {p.id for p in batch}

    if restart == "after the disk returns":
        await disk.heal()
        await ob.next_batch(1)  # the uplink's next look writes out what waited
        await ob.flush()
        await ob.flush()  # and the RESTORE that says so
        if broker == "up":
            await drain(ob, delivered)
        assert ob.status()["in_memory"] == 0 and ob.status()["not_stored"] == 0
        await ob.close()
        assert "lost with this stop" not in caplog.text
    else:
        if fault == "stalled":
            disk.die()
        await ob.close()
        if broker == "down":  # never without a line naming what waits
            assert "kept in RAM" in caplog.text
            for fid in fire_ids:
                assert fid in caplog.text

    ob2 = Outbox(path, 1000, 10**9, spill_dir=run)
    after = await ob2.next_batch(100)
    after_ids = {p.id for p in after}
    if broker == "up":
        assert not after_ids & set(delivered), "delivered twice"
        assert set(delivered) >= {d.id for d in ds}
    else:
        # written out when the disk came back, or taken back from RAM after the restart
        assert {d.id for d in ds} <= after_ids
        own_types = [p.type for p in after if p.payload["zone"] == GATEWAY_ZONE]
        assert "fault" in own_types
        if restart == "after the disk returns":
            assert "restore" in own_types
    await ob2.close()


async def test_without_a_spill_folder_the_loss_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Run by hand (no RuntimeDirectory): what only memory holds is lost with
    the stop, and a line names it (fire alarm ids included)."""
    caplog.set_level(logging.WARNING)
    ob = Outbox(tmp_path / "outbox.db", 1000, 10**9, spill_dir=None)
    await ob.submit(decision(DecisionType.STATS, 99))
    disk = Disk(ob, "read-only")
    await disk.fail()
    ds = _decisions()
    for d in ds:
        await ob.submit(d)
    await ob.close()
    assert "lost with this stop" in caplog.text and "3 fire_alarm" in caplog.text
    for d in ds:
        if d.type is DecisionType.FIRE_ALARM:
            assert d.id in caplog.text
