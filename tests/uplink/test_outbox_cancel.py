"""A caller cancelled while it waits for the outbox's thread is cancelled, whenever
the thread's answer lands.

On Python 3.11 ``asyncio.wait_for`` returns the result instead of raising
CancelledError when the cancellation comes in the loop iteration where the
awaited future completes (CPython gh-86296). The outbox waited for its thread
that way: an uplink's drain, cancelled because the connection dropped, could
go on looping with the link gone, its TaskGroup waiting for it forever, the
uplink "connected" but never reconnecting and never stopping (a broker
restart test hung past 120 s under load; 1 of 2,000 gateways of a fleet storm
never came back).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.events import DecisionType
from agent.outbox import Outbox
from tests.uplink.uplink_support import decision


async def _cancel_around_the_answer(
    outbox: Outbox, call: Callable[[], Awaitable[Any]], iterations: int
) -> str:
    """Start ``call`` while the outbox thread is busy, let the thread answer, then
    cancel the caller ``iterations`` loop iterations later. Returns what happened."""
    gate = threading.Event()
    outbox._executor.submit(gate.wait)  # the thread is busy: the call waits for it
    task = asyncio.create_task(call())
    await asyncio.sleep(0.01)  # the call is queued behind the gate and waits
    answered = threading.Event()
    outbox._executor.submit(answered.set)  # runs once the call's own job is done
    gate.set()
    assert answered.wait(10)  # (blocks the loop: the answer is queued, not yet seen)
    for _ in range(iterations):
        await asyncio.sleep(0)
    if not task.cancel():
        await task
        return "finished before the cancel"
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "cancellation swallowed"


@pytest.mark.parametrize("what", ["next_batch", "submit"])
async def test_cancel_is_never_swallowed_when_the_answer_lands_with_it(
    tmp_path: Path, what: str
) -> None:
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    await outbox.submit(decision(DecisionType.FAULT, 0))
    n = 0

    def call() -> Awaitable[Any]:
        nonlocal n
        n += 1
        if what == "submit":
            return outbox.submit(decision(DecisionType.FAULT, n))
        return outbox.next_batch(10)

    try:
        seen = [await _cancel_around_the_answer(outbox, call, k) for k in range(8)]
    finally:
        await outbox.close()
    assert "cancellation swallowed" not in seen, seen
    assert "cancelled" in seen, seen  # the cancel did land while it waited
