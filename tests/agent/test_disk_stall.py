"""Issue 14: a stalled state disk never stops alarms.

The stall is injected at the file-system call boundary: ``os.replace`` (the
last step of every state-file write: episodes.json, status.json) sleeps, as
an SD card that stalls in the middle of a write does. fsfreeze cannot do it
here (tmpfs cannot be frozen, and CI has no block device to freeze).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.clock import ScaledClock
from agent.diskwriter import writer_for
from agent.engine import Engine, EngineRunner
from agent.engine import runner as runner_mod
from agent.events import Condition, DecisionType, DeviceKind, StateChange
from tests.engine.engine_sim import site

STALL_S = 2.0


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[float, Any]] = []

    async def submit(self, decision: Any) -> None:
        self.got.append((time.monotonic(), decision))


def _obs(
    clock: ScaledClock, source: str, kind: DeviceKind, cond: Condition, point: str = ""
) -> Any:
    return StateChange(
        source=source,
        zone="z2",
        wall=clock.wall(),
        mono=clock.monotonic(),
        point=point,
        kind=kind,
        condition=cond,
        active=True,
    )


@pytest.fixture
def stalled_replace(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every os.replace under tmp stalls until the event is set (or STALL_S)."""
    release = threading.Event()
    real = os.replace

    def slow(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
        if "pytest" in str(dst):
            release.wait(STALL_S)
        real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", slow)
    return release


async def test_alarms_flow_while_the_state_disk_stalls(
    tmp_path: Path, stalled_replace: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_mod, "DISK_STALL_FAULT_S", 0.5)
    clock = ScaledClock(1.0)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sink = Sink()
    runner = EngineRunner(Engine(site()), inbox, sink, lambda c: None, clock, 0.1, tmp_path)
    task = asyncio.create_task(runner.run())
    try:
        # a call point: FIRE_ALARM, and its episode is saved (the save stalls)
        inbox.put_nowait(
            _obs(clock, "panel", DeviceKind.MANUAL_CALL_POINT, Condition.ALARM, "1/24")
        )
        async with asyncio.timeout(1):
            while not sink.got:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the save is on its way to the stalled disk
        sent = time.monotonic()
        inbox.put_nowait(_obs(clock, "rc", DeviceKind.RESIDUAL_CURRENT, Condition.PREALARM))
        async with asyncio.timeout(STALL_S):
            while len(sink.got) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert sink.got[1][1].type is DecisionType.ELECTRICAL_PREALARM
        assert sink.got[1][0] - sent < 0.3, "the pre-alarm waited for the disk"
        # the stall itself is said upstream, and its end
        async with asyncio.timeout(STALL_S):
            while not any(d.details.get("part") == "disk" for _, d in sink.got):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        fault = next(d for _, d in sink.got if d.details.get("part") == "disk")
        assert fault.type is DecisionType.FAULT and "stalled" in fault.reason
        stalled_replace.set()
        async with asyncio.timeout(3):
            while not any(  # noqa: ASYNC110
                d.type is DecisionType.RESTORE and d.details.get("part") == "disk"
                for _, d in sink.got
            ):
                await asyncio.sleep(0.02)
    finally:
        stalled_replace.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_status_file_write_does_not_block_the_loop(
    tmp_path: Path, stalled_replace: threading.Event
) -> None:
    from agent.health import Health

    h = Health([], clock=ScaledClock(1.0), status_file=tmp_path / "status.json")
    t0 = time.monotonic()
    h.queue_status()
    h.queue_status()  # the second replaces the first while the disk stalls
    assert time.monotonic() - t0 < 0.2
    stalled_replace.set()
    assert await asyncio.to_thread(writer_for(tmp_path).wait_idle, 5.0)
    assert (tmp_path / "status.json").exists()
