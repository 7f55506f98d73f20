"""The gateway killed with SIGKILL between store and PUBACK, then restarted: nothing lost."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.uplink.uplink_support import Broker, Collector, spawn_python


def child(db: Path, port: int, n: int, hold_deletes: bool = False) -> subprocess.Popen[bytes]:
    return spawn_python(
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from tests.uplink.uplink_child import main\n"
        f"asyncio.run(main(Path({str(db)!r}), {port}, {n}, {hold_deletes}))\n"
    )


async def readline(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout_s)
    return line.decode().strip()


@pytest.mark.parametrize("when", ["no_puback_yet", "mid_stream"])
async def test_sigkill_between_store_and_puback_loses_nothing(
    tmp_path: Path, broker: Broker, collector: Collector, when: str
) -> None:
    db = tmp_path / "state" / "outbox.db"
    n = 40 if when == "no_puback_yet" else 300
    proc = child(db, broker.port, n)
    stored: list[str] = []
    try:
        assert await readline(proc) == "connected"
        if when == "no_puback_yet":
            broker.pause()  # the connection stays, but no PUBACK can come
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        stop_after = n if when == "no_puback_yet" else 120
        while len(stored) < stop_after:
            line = await readline(proc)
            assert line.startswith("stored "), line
            stored.append(line.split()[1])
        proc.kill()  # SIGKILL: no cleanup, no goodbye
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
        broker.resume()
    if when == "no_puback_yet":
        # nothing can have been acknowledged while the broker was stopped
        assert not [d for d in collector.decisions() if d["id"] in stored]

    again = child(db, broker.port, 0)
    try:
        assert await readline(again) == "connected"
        await collector.wait_for(
            lambda: set(stored) <= {d["id"] for d in collector.decisions()}, 20
        )
    finally:
        again.kill()
        again.wait()
    got = collector.decisions()
    ids = [d["id"] for d in got]
    assert set(stored) <= set(ids)
    # a re-send is the same decision (same id, same original times)
    first: dict[str, tuple[str, str]] = {}
    for d in got:
        key = (d["first_seen"], d["confirmed_at"])
        assert first.setdefault(d["id"], key) == key


async def test_sigkill_between_pubacks_and_their_group_delete_resends_never_loses(
    tmp_path: Path, broker: Broker, collector: Collector
) -> None:
    """The outbox deletes PUBACKed decisions as a group commit (outbox.ACK_GROUP_S).
    Killed with SIGKILL once PUBACKs came and their delete has begun but not
    committed: after the restart those decisions are sent again (same id),
    and none of the stored ones is missing."""
    db = tmp_path / "state" / "outbox.db"
    n = 60
    proc = child(db, broker.port, n, hold_deletes=True)
    stored: list[str] = []
    try:
        assert await readline(proc) == "connected"
        broker.pause()  # no PUBACK yet: every decision is stored before any delete
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        while len(stored) < n:
            line = await readline(proc)
            assert line.startswith("stored "), line
            stored.append(line.split()[1])
        broker.resume()  # PUBACKs come; the first group's delete starts and hangs
        assert await readline(proc, 20) == "deleting"
        proc.kill()  # SIGKILL between the PUBACKs and the commit of their delete
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
        broker.resume()
    await asyncio.sleep(0.5)  # what the broker forwarded before the kill arrives
    before = {d["id"] for d in collector.decisions()}
    assert before, "nothing was PUBACKed before the kill"
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        kept = {r[0] for r in ro.execute("SELECT id FROM outbox")}
    finally:
        ro.close()
    assert kept == set(stored)  # the group's delete had not committed: all still there

    def counts() -> Counter[str]:
        return Counter(d["id"] for d in collector.decisions())

    again = child(db, broker.port, 0)
    try:
        assert await readline(again) == "connected"
        # PUBACKed but not deleted when killed: sent again, same id (the centre
        # de-duplicates); the rest for the first time
        await collector.wait_for(lambda: all(counts()[i] >= 1 + (i in before) for i in stored), 20)
    finally:
        again.kill()
        again.wait()
    got = counts()
    assert set(stored) <= set(got)  # none lost
    assert {i for i in before if got[i] >= 2} == before


async def test_killed_broker_without_goodbye_then_back(tmp_path: Path) -> None:
    """SIGKILL of the broker itself (no persistence flush): the outbox re-sends."""
    from agent.clock import SystemClock
    from agent.events import DecisionType
    from agent.outbox import Outbox
    from agent.uplink import Uplink
    from firmware_mocks.broker import free_port
    from tests.uplink.uplink_support import decision, site, uplink_config

    port = free_port()
    b = Broker(tmp_path, port)
    b.start()
    outbox = Outbox(tmp_path / "ob.db", 10_000, 10**8)
    up = Uplink(uplink_config(port), site(), outbox, SystemClock(), "t")
    task = asyncio.create_task(up.run())
    try:
        c = Collector(port)
        ctask = asyncio.create_task(c.run())
        await asyncio.wait_for(c.ready.wait(), 5)
        assert b.proc is not None
        b.proc.kill()
        b.proc.wait()
        ids = []
        for i in range(20):
            d = decision(DecisionType.FIRE_ALARM, i)
            ids.append(d.id)
            await outbox.submit(d)
        b.start()
        # the subscriber's session died with the broker: it re-subscribes, and
        # the uplink's decisions are still stored until their PUBACK
        await c.wait_for(lambda: outbox.status()["rows"] == 0, 20)
        ctask.cancel()
        await asyncio.gather(ctask, return_exceptions=True)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
        b.stop()
