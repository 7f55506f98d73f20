from __future__ import annotations

import asyncio
import time

import pytest

from agent.app import Agent, LogSink
from agent.clock import SystemClock
from agent.events import GATEWAY_ZONE, DecisionType
from agent.supervisor import Supervisor


class Crashes:
    """Raises on its first ``crashes`` runs, then runs until cancelled."""

    def __init__(self, name: str, crashes: int) -> None:
        self.name = name
        self.crashes = crashes
        self.starts = 0
        self.cancelled = False

    async def run(self) -> None:
        self.starts += 1
        if self.starts <= self.crashes:
            raise RuntimeError(f"boom {self.starts}")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Returns:
    name = "returns"

    def __init__(self) -> None:
        self.starts = 0

    async def run(self) -> None:
        self.starts += 1


class Stubborn:
    """Ignores cancellation for a while (a part with a blocking cleanup)."""

    name = "stubborn"

    async def run(self) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.shield(asyncio.sleep(30))


async def test_crashing_part_is_restarted_reported_and_restored() -> None:
    part = Crashes("bus-1", crashes=2)
    healthy = Crashes("camera-1", crashes=0)
    faults: list[tuple[str, str]] = []
    restores: list[str] = []
    sup = Supervisor(
        [part, healthy],
        on_fault=lambda n, e: faults.append((n, e)),
        on_restore=restores.append,
        backoff_initial_s=0.01,
        stable_after_s=0.2,
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(sup.run(stop))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if restores:
            break
    assert part.starts == 3
    # reported once per outage, not once per crash
    assert faults == [("bus-1", "RuntimeError: boom 1")]
    assert restores == ["bus-1"]
    assert sup.states["bus-1"].restarts == 2
    assert healthy.starts == 1 and sup.states["camera-1"].restarts == 0
    stop.set()
    assert await runner is True
    assert part.cancelled and healthy.cancelled


async def test_part_that_returns_is_a_fault_too() -> None:
    part = Returns()
    faults: list[str] = []
    sup = Supervisor([part], on_fault=lambda n, e: faults.append(e), backoff_initial_s=0.01)
    stop = asyncio.Event()
    runner = asyncio.create_task(sup.run(stop))
    await asyncio.sleep(0.1)
    stop.set()
    await runner
    assert part.starts >= 2
    assert faults and "returned" in faults[0]


async def test_backoff_grows() -> None:
    part = Crashes("flaky", crashes=1000)
    sup = Supervisor([part], backoff_initial_s=0.02, backoff_max_s=10)
    stop = asyncio.Event()
    runner = asyncio.create_task(sup.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await runner
    # 0.02 + 0.04 + 0.08 + 0.16 (+-20 %) fit in 0.5 s, a busy loop would make hundreds
    assert 3 <= part.starts <= 6


async def test_shutdown_is_bounded_when_a_part_hangs() -> None:
    sup = Supervisor([Stubborn(), Crashes("ok", 0)], shutdown_s=0.3)
    stop = asyncio.Event()
    runner = asyncio.create_task(sup.run(stop))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    stop.set()
    assert await runner is False
    assert time.monotonic() - t0 < 1.0


async def test_agent_reports_part_crash_as_gateway_fault_decision() -> None:
    sink = LogSink()
    agent = Agent(site=None, clock=SystemClock(), sink=sink)  # type: ignore[arg-type]
    agent.parts.append(Crashes("uplink", crashes=1))
    sup = agent.supervisor(backoff_initial_s=0.01, stable_after_s=0.1)
    stop = asyncio.Event()
    runner = asyncio.create_task(sup.run(stop))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(sink.decisions) >= 2:
            break
    stop.set()
    await runner
    types = [d.type for d in sink.decisions]
    assert types == [DecisionType.FAULT, DecisionType.RESTORE]
    assert all(d.zone == GATEWAY_ZONE for d in sink.decisions)
    assert "uplink" in sink.decisions[0].reason


def test_duplicate_part_names_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([Crashes("a", 0), Crashes("a", 0)])
