"""A gateway stand-in for the kill -9 test: outbox + uplink in their own process.

Usage: python -m tests.uplink.uplink_child DB PORT N [hold-deletes]
Prints "connected" once the uplink is connected, waits for a line on stdin,
then submits N fire alarms / faults, printing "stored <id>" after each submit
returns (the decision is durable from then on), then keeps draining.

``hold_deletes``: the outbox's first delete of PUBACKed decisions (a group
commit) prints "deleting" and never finishes: the moment for a kill -9
between the PUBACKs and their delete.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from agent.clock import SystemClock
from agent.events import DecisionType
from agent.outbox import Outbox
from agent.uplink import Uplink
from tests.uplink.uplink_support import decision, site, uplink_config


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write: the outbox thread prints too
    sys.stdout.flush()


async def main(db: Path, port: int, n: int, hold_deletes: bool = False) -> None:
    outbox = Outbox(db, max_rows=100_000, max_bytes=10**9)
    if hold_deletes:

        def hold(kind: str) -> None:
            if kind == "delete":
                _say("deleting")
                time.sleep(3600)

        outbox.io_hook = hold
    up = Uplink(uplink_config(port, publish_timeout_s=30.0), site(), outbox, SystemClock(), "child")
    task = asyncio.create_task(up.run())
    while up.state != "connected":  # noqa: ASYNC110 (a test polling a state field)
        await asyncio.sleep(0.01)
    _say("connected")
    if n:
        await asyncio.to_thread(sys.stdin.readline)
        for i in range(n):
            d = decision(DecisionType.FIRE_ALARM if i % 3 == 0 else DecisionType.FAULT, i)
            await outbox.submit(d)
            _say(f"stored {d.id}")
    await task


if __name__ == "__main__":
    asyncio.run(
        main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), "hold-deletes" in sys.argv)
    )
