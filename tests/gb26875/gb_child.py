"""A gateway stand-in for the kill -9 test: outbox + GB/T 26875.3 uplink in their own process.

Usage: python -m tests.gb26875.gb_child FOLDER PORT N
Prints "connected" once the uplink is connected, waits for a line on stdin,
then submits N decisions (fire alarms and faults, decision i at T0 + i s),
printing "stored <i>" after each submit returns, then keeps draining.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.clock import SystemClock
from agent.events import DecisionType
from agent.gb26875.client import Gb26875Uplink
from agent.gb26875.mapping import directory_for
from agent.outbox import Outbox
from tests.gb26875.support import decision, make_site


async def main(folder: Path, port: int, n: int) -> None:
    site = make_site(folder, port, 5.0, 30.0)
    assert site.config.gb26875 is not None
    outbox = Outbox(folder / "state" / "outbox.db", max_rows=100_000, max_bytes=10**9)
    up = Gb26875Uplink(
        site.config.gb26875,
        site.config,
        outbox,
        SystemClock(),
        "child",
        directory=directory_for(site),
    )
    task = asyncio.create_task(up.run())
    while not up.connected:  # noqa: ASYNC110 (a test polling a state field)
        await asyncio.sleep(0.01)
    print("connected", flush=True)
    if n:
        await asyncio.to_thread(sys.stdin.readline)
        for i in range(n):
            kind = DecisionType.FIRE_ALARM if i % 3 == 0 else DecisionType.FAULT
            await outbox.submit(decision(kind, i))
            print(f"stored {i}", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
