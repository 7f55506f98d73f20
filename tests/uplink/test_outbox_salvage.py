"""Issue 14: an outbox file lost or damaged after a crash says what it lost.

A real kill -9 of a process holding 40 stored decisions (10 fire alarms),
then the damage a crash or a failing card leaves: a zero-length outbox.db, a
removed -wal, a damaged page in the middle. The fire alarms come back (the
outbox's journal keeps their payload), and a FAULT counts what was lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.events import GATEWAY_ZONE
from agent.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from agent.events import DecisionType
    from agent.outbox import Outbox
    from tests.uplink.uplink_support import decision

    async def main():
        ob = Outbox(sys.argv[1], 10_000, 10**9)
        snap = b"\\xff" * int(sys.argv[2])
        for n in range(40):
            t = DecisionType.FIRE_ALARM if n % 4 == 0 else DecisionType.FAULT
            await ob.submit(decision(t, n, snapshot=snap if snap else None))
        await ob.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint

    asyncio.run(main())
    """
)


def stored_then_killed(path: Path, snapshot_bytes: int = 0) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(snapshot_bytes)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def lose_file(path: Path, damage: str) -> None:
    if damage == "zero-length db":
        path.write_bytes(b"")
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        Path(f"{path}-wal").unlink()


def own_fault(batch: list) -> dict:  # type: ignore[type-arg]
    faults = [p.payload for p in batch if p.payload["zone"] == GATEWAY_ZONE]
    assert len(faults) == 1, [f["reason"] for f in faults]
    return faults[0]


@pytest.mark.parametrize("damage", ["zero-length db", "wal removed"])
async def test_lost_file_after_kill9_gives_back_fire_alarms_and_counts_the_rest(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "outbox.db"
    stored_then_killed(path)
    lose_file(path, damage)
    ob = Outbox(path, 10_000, 10**9)
    batch = await ob.next_batch(100)
    fires = [p for p in batch if p.type == "fire_alarm"]
    assert len(fires) == 10  # every fire alarm is back, with its id
    fault = own_fault(batch)
    assert fault["details"]["lost"] == {"fault": 30}
    assert "30 lost" in fault["reason"] and "10 fire alarm(s) put back" in fault["reason"]
    await ob.close()
    # reported once: a second start finds nothing missing
    ob2 = Outbox(path, 10_000, 10**9)
    assert sum(p.payload["zone"] == GATEWAY_ZONE for p in await ob2.next_batch(100)) == 1
    await ob2.close()


async def test_damaged_middle_page_is_read_past_and_losses_counted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    stored_then_killed(path, snapshot_bytes=3000)  # rows span pages: damage hits a few
    # checkpoint what the killed process left in the -wal, so the damage is in the file
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    middle = len(raw) // page // 2
    for i in range(middle, middle + 2):
        raw[i * page : (i + 1) * page] = b"\x5a" * page
    path.write_bytes(bytes(raw))

    ob = Outbox(path, 10_000, 10**9)
    batch = await ob.next_batch(100)
    fault = own_fault(batch)
    d = fault["details"]
    recovered, lost = d["recovered"], d["lost_total"]
    fires_back = d["fire_alarms_restored"]
    assert recovered + fires_back + lost == 40  # every stored decision accounted for
    assert lost > 0 and f"{lost} lost" in fault["reason"]
    assert len([p for p in batch if p.type == "fire_alarm"]) == 10
    # read past the damage: more than the rows in front of it
    assert recovered > 40 * middle // (len(raw) // page) - 2
    await ob.close()
