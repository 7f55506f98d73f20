"""Every decision stays in the outbox's file until the broker's PUBACK for it came.

A scripted broker holds back the PUBACKs of decisions and releases them a few
at a time; meanwhile a second, read-only connection to the outbox's SQLite
file (what a restart after a kill -9 or a power cut would find) checks, again
and again, that no decision is gone from it whose PUBACK was not sent. The
deletes are grouped (outbox.ACK_GROUP_S), never ahead of the PUBACKs.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from agent.clock import SystemClock
from agent.events import DecisionType
from agent.outbox import Outbox
from agent.uplink import Uplink
from tests.uplink.scripted_broker import ScriptedBroker
from tests.uplink.uplink_support import decision, site, uplink_config

WINDOW = 8
N = 60


def on_disk(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT id FROM outbox")}
    finally:
        db.close()


async def test_no_decision_leaves_the_file_before_its_puback(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, 10_000, 10**9)
    ds = [decision([DecisionType.FIRE_ALARM, DecisionType.FAULT][i % 2], i) for i in range(N)]
    for d in ds:
        await outbox.submit(d)
    stored = {d.id for d in ds}
    assert on_disk(path) == stored

    async with ScriptedBroker(lambda _t, _n: 1, hold=lambda t: "/decision/" in t) as b:
        cfg = uplink_config(b.port, inflight_max=WINDOW, publish_timeout_s=30.0)
        up = Uplink(cfg, site(), outbox, SystemClock(), "t")
        task = asyncio.create_task(up.run())
        acked: set[str] = set()
        checks = 0

        def check() -> set[str]:
            nonlocal checks
            checks += 1
            gone = stored - on_disk(path)
            assert gone <= acked, f"deleted before their PUBACK: {sorted(gone - acked)[:3]}"
            return gone

        async def wait_held(k: int) -> None:
            for _ in range(500):
                check()
                if len(b.held) >= k:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"{len(b.held)} publishes await their PUBACK, not {k}")

        try:
            while len(acked) < N:
                await wait_held(min(WINDOW, N - len(acked)))
                # the window is full and nothing acked: nothing may leave the file
                for _ in range(10):
                    check()
                    await asyncio.sleep(0.01)
                assert len(b.held) == min(WINDOW, N - len(acked))  # no more than the window
                # the PUBACKs of three of those in flight (not the oldest: any order)
                picks = {json.loads(p)["id"] for _, _, p in b.held[1:4]} or {
                    json.loads(b.held[0][2])["id"]
                }
                acked |= {
                    json.loads(p)["id"]
                    for p in await b.release(
                        lambda _t, p, picks=picks: json.loads(p)["id"] in picks
                    )
                }
                for _ in range(200):  # their delete follows, grouped, soon
                    if check() == acked:
                        break
                    await asyncio.sleep(0.01)
                assert stored - on_disk(path) == acked
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert on_disk(path) == set()
    assert checks > 100
    # every decision was published at least once before its PUBACK, in priority order
    published = [json.loads(p)["id"] for t, p in b.published if "/decision/" in t]
    assert set(published) == stored
