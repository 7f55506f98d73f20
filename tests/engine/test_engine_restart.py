"""A restart during a fire: the incident the centre already has is carried over."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agent.clock import ScaledClock
from agent.engine import Engine, EngineRunner
from agent.engine.runner import EPISODES_FILE, INCIDENTS_FILE
from agent.events import Condition, DecisionType, DeviceKind, StateChange
from tests.engine.engine_sim import WALL0, Sim, site


def _after_restart(first_seen: float, last_activity: float) -> Sim:
    sim = Sim()
    sim.until(1000)
    assert sim.engine.resume_incident(
        "z", WALL0 + first_seen, WALL0 + last_activity, 1000, WALL0 + 1000
    )
    return sim


def test_detector_still_in_alarm_after_restart_is_the_same_incident() -> None:
    sim = _after_restart(first_seen=900, last_activity=995)
    sim.alarm(1001, "s2")  # the initial state of a detector that never stopped alarming
    sim.alarm(1002, "h1")  # even a second detector: same incident, not a second alarm
    sim.until(1200)
    assert not sim.fires()
    # it ends as usual, with a RESTORE after the quiet time
    sim.alarm(1210, "s2", active=False)
    sim.alarm(1210, "h1", active=False)
    sim.until(1210 + 301)
    restores = [d for _, d in sim.decisions if d.type is DecisionType.RESTORE and d.zone == "z"]
    assert len(restores) == 1 and restores[0].first_seen_wall == WALL0 + 900


def test_other_zone_still_alarms_after_restart() -> None:
    sim = _after_restart(first_seen=900, last_activity=995)
    sim.state(1001, "panel", Condition.ALARM, point="1/24", kind=DeviceKind.MANUAL_CALL_POINT)
    assert [d.zone for _, d in sim.fires()] == ["z2"]


def test_incident_that_cleared_while_down_is_not_resumed() -> None:
    sim = Sim()
    sim.until(1000)
    # quiet for longer than incident_clear_s (300 s) before the restart
    assert not sim.engine.resume_incident("z", WALL0, WALL0 + 600, 1000, WALL0 + 1000)
    assert not sim.engine.resume_incident("nowhere", WALL0, WALL0 + 990, 1000, WALL0 + 1000)
    sim.alarm(1001, "s2")
    sim.alarm(1004, "h1")  # 3 s after: two witnesses, not one burst
    assert len(sim.fires()) == 1  # a new fire is a new alarm


class Sink:
    def __init__(self) -> None:
        self.decisions: list[Any] = []

    async def submit(self, decision: Any) -> None:
        self.decisions.append(decision)


def _alarm(clock: ScaledClock, source: str, kind: DeviceKind = DeviceKind.SMOKE) -> StateChange:
    return StateChange(
        source=source,
        zone="z",
        wall=clock.wall(),
        mono=clock.monotonic(),
        kind=kind,
        condition=Condition.ALARM,
        active=True,
    )


async def _run_until(runner: EngineRunner, sink: Sink, pred: Any, timeout_s: float = 5) -> None:
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(timeout_s):
            while not pred(sink):  # noqa: ASYNC110 - polls what the runner produced
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_runner_saves_and_resumes_incidents(tmp_path: Path) -> None:
    clock = ScaledClock(200.0)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sink = Sink()
    runner = EngineRunner(Engine(site()), inbox, sink, lambda c: None, clock, 0.5, tmp_path)
    inbox.put_nowait(_alarm(clock, "s2"))
    inbox.put_nowait(_alarm(clock, "h1", DeviceKind.HEAT))  # coincidence: a fire alarm
    await _run_until(
        runner, sink, lambda s: any(d.type is DecisionType.FIRE_ALARM for d in s.decisions)
    )
    await asyncio.sleep(0.05)
    saved = json.loads((tmp_path / EPISODES_FILE).read_text())
    assert [f["zone"] for f in saved["fires"]] == ["z"]

    # the agent restarts (new engine, new runner, same state folder)
    sink2 = Sink()
    inbox2: asyncio.Queue[Any] = asyncio.Queue()
    runner2 = EngineRunner(Engine(site()), inbox2, sink2, lambda c: None, clock, 0.5, tmp_path)
    inbox2.put_nowait(_alarm(clock, "s2"))
    inbox2.put_nowait(_alarm(clock, "h1", DeviceKind.HEAT))
    await _run_until(runner2, sink2, lambda s: runner2.engine.counters["observations"] >= 2)
    await asyncio.sleep(0.1)
    assert runner2.engine.counters["incidents_resumed"] == 1
    assert not [d for d in sink2.decisions if d.type is DecisionType.FIRE_ALARM]


async def test_unreadable_incidents_file_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / INCIDENTS_FILE).write_text("{not json")
    clock = ScaledClock(200.0)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sink = Sink()
    runner = EngineRunner(Engine(site()), inbox, sink, lambda c: None, clock, 0.5, tmp_path)
    inbox.put_nowait(_alarm(clock, "s2"))
    inbox.put_nowait(_alarm(clock, "h1", DeviceKind.HEAT))
    await _run_until(
        runner, sink, lambda s: any(d.type is DecisionType.FIRE_ALARM for d in s.decisions)
    )
