"""The runner Part: feeds the engine, delivers decisions, routes commands, logs nuisances."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent.clock import ScaledClock
from agent.engine import Engine, EngineRunner, NuisanceLog
from agent.engine.core import Suppressed
from agent.events import Command, Condition, Decision, DecisionType, DeviceKind, StateChange
from tests.engine.engine_sim import site

HAVE_DEV_FULL = os.path.exists("/dev/full")
SPEED = 200.0  # simulated seconds per real second


class Sink:
    def __init__(self, fail_first: int = 0) -> None:
        self.decisions: list[Decision] = []
        self.zone_states: list[Decision] = []  # "verifying" / "held" for the centre's display
        self.fail_first = fail_first
        self.calls = 0

    async def submit(self, decision: Decision) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise OSError("outbox disk full")
        if decision.type is DecisionType.ZONE_STATE:
            self.zone_states.append(decision)
            return
        self.decisions.append(decision)


def _alarm(clock: ScaledClock, source: str, active: bool = True, **kw: Any) -> StateChange:
    return StateChange(
        source=source,
        zone=kw.pop("zone", "z"),
        wall=clock.wall(),
        mono=clock.monotonic(),
        kind=kw.pop("kind", DeviceKind.SMOKE),
        condition=Condition.ALARM,
        active=active,
        **kw,
    )


async def _until(pred: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not pred():  # noqa: ASYNC110 - polls state the runner owns; no event to wait on
            await asyncio.sleep(0.005)


async def _running(runner: EngineRunner) -> asyncio.Task[None]:
    return asyncio.create_task(runner.run())


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_fire_reaches_sink_and_reset_reaches_bus(tmp_path: Path) -> None:
    clock = ScaledClock(SPEED)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sink = Sink()
    commands: list[Command] = []
    runner = EngineRunner(Engine(site()), inbox, sink, commands.append, clock, 0.5, tmp_path)
    assert runner.name == "engine"
    task = await _running(runner)
    p0 = runner.progress_mono
    inbox.put_nowait(_alarm(clock, "s1"))  # resettable: verification starts
    inbox.put_nowait(
        _alarm(clock, "panel", point="1/24", kind=DeviceKind.MANUAL_CALL_POINT, zone="z2")
    )
    await _until(lambda: sink.decisions and commands)
    assert sink.decisions[0].type is DecisionType.FIRE_ALARM and sink.decisions[0].zone == "z2"
    assert (commands[0].target, commands[0].action) == ("s1", "reset")
    await _until(lambda: runner.progress_mono > p0)
    st = runner.status()
    json.dumps(st)
    assert st["pending_decisions"] == 0 and st["counters"]["commands"] == 1
    await _stop(task)


async def test_unroutable_reset_falls_back_to_persistence() -> None:
    clock = ScaledClock(SPEED)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sink = Sink()

    def no_route(cmd: Command) -> None:
        raise KeyError(f"no bus for {cmd.target}")

    runner = EngineRunner(
        Engine(site(reset_window_s=60, persistence_s=20, ceiling_s=90)),
        inbox,
        sink,
        no_route,
        clock,
        0.5,
        None,
    )
    task = await _running(runner)
    t0 = clock.monotonic()
    inbox.put_nowait(_alarm(clock, "s1"))
    await _until(lambda: sink.decisions)
    (d,) = sink.decisions
    assert d.details["rule"] == "persistence"  # before the 60 s reset period ended
    assert 20 <= d.mono - t0 < 60
    assert runner.status()["command_errors"] == 1
    await _stop(task)


async def test_refused_decision_is_retried_not_lost() -> None:
    clock = ScaledClock(SPEED)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sink = Sink(fail_first=2)
    runner = EngineRunner(Engine(site()), inbox, sink, lambda c: None, clock, 0.5, None)
    task = await _running(runner)
    inbox.put_nowait(_alarm(clock, "panel", point="1/24", kind=DeviceKind.MANUAL_CALL_POINT))
    await _until(lambda: sink.decisions)
    assert len(sink.decisions) == 1 and sink.calls == 3
    assert runner.status()["sink_errors"] == 2
    await _stop(task)


async def test_nuisance_goes_to_the_local_log(tmp_path: Path) -> None:
    clock = ScaledClock(SPEED)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sink = Sink()
    runner = EngineRunner(
        Engine(site(coincidence_window_s=5)), inbox, sink, lambda c: None, clock, 0.5, tmp_path
    )
    task = await _running(runner)
    inbox.put_nowait(_alarm(clock, "s2"))
    await asyncio.sleep(2 / SPEED)
    inbox.put_nowait(_alarm(clock, "s2", active=False))
    log = tmp_path / "nuisance.jsonl"
    await _until(lambda: log.exists() and log.stat().st_size > 0)
    (entry,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert entry["source"] == "s2" and entry["count"] == 1 and "cleared" in entry["reason"]
    assert not sink.decisions
    await _stop(task)


async def test_full_disk_does_not_stop_the_engine(tmp_path: Path) -> None:
    if not HAVE_DEV_FULL:
        pytest.skip("needs /dev/full")
    (tmp_path / "nuisance.jsonl").symlink_to("/dev/full")  # every write: ENOSPC
    clock = ScaledClock(SPEED)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sink = Sink()
    runner = EngineRunner(
        Engine(site(coincidence_window_s=5)), inbox, sink, lambda c: None, clock, 0.5, tmp_path
    )
    task = await _running(runner)
    inbox.put_nowait(_alarm(clock, "s2"))
    inbox.put_nowait(_alarm(clock, "s2", active=False))
    assert runner.nuisance_log is not None
    nlog = runner.nuisance_log
    await _until(lambda: nlog.errors >= 1)
    inbox.put_nowait(_alarm(clock, "panel", point="1/24", kind=DeviceKind.MANUAL_CALL_POINT))
    await _until(lambda: sink.decisions)  # still running, still forwarding
    assert "No space" in nlog.last_error
    await _stop(task)


def _entry(i: int) -> Suppressed:
    return Suppressed(
        zone="z",
        source=f"det-{i}",
        reason="alarm cleared before any confirmation " + "x" * 200,
        first_seen_wall=1.0,
        first_seen_mono=1.0,
        wall=2.0,
        mono=2.0,
        count=i,
    )


def test_nuisance_log_rotates_and_stays_bounded(tmp_path: Path) -> None:
    nl = NuisanceLog(tmp_path, max_bytes=4096, keep=2)
    for i in range(200):
        assert nl.append([_entry(i)]) == 1
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["nuisance.jsonl", "nuisance.jsonl.1", "nuisance.jsonl.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    entries = nl.read()
    assert entries[-1]["source"] == "det-199"
    counts = [e["count"] for e in entries]
    assert counts == sorted(counts)  # oldest first, nothing reordered


def test_nuisance_log_rejects_silly_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        NuisanceLog(tmp_path, max_bytes=10)


def test_for_site_takes_the_site_config(tmp_path: Path) -> None:
    from agent.siteconfig import load_site
    from firmware_mocks.timeline import SCENARIO_DIR

    site = load_site(SCENARIO_DIR / "sites" / "school.yaml")
    runner = EngineRunner.for_site(site, asyncio.Queue(), Sink(), lambda c: None, ScaledClock(1))
    assert runner.tick_s == site.config.engine.tick_s
    assert runner.nuisance_log is not None
    assert runner.nuisance_log.path.parent == site.config.storage.state_dir
    assert runner.engine.site.devices["staff-smoke"].resettable
    assert not runner.engine.site.devices["changing-smoke"].resettable


async def test_nuisance_totals_survive_a_restart(tmp_path: Path) -> None:
    NuisanceLog(tmp_path).append([_entry(7)])  # det-7 had 7 nuisances before the restart
    clock = ScaledClock(SPEED)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    index = site(coincidence_window_s=5)
    engine = Engine(index)
    runner = EngineRunner(engine, inbox, Sink(), lambda c: None, clock, 0.5, tmp_path)
    task = await _running(runner)
    await _until(lambda: engine.nuisance_counts().get("det-7") == 7)
    inbox.put_nowait(_alarm(clock, "s2"))
    inbox.put_nowait(_alarm(clock, "s2", active=False))
    await _until(lambda: engine.nuisance_counts().get("s2") == 1)
    await _stop(task)
    engine2 = Engine(index)
    runner2 = EngineRunner(engine2, asyncio.Queue(), Sink(), lambda c: None, clock, 0.5, tmp_path)
    task2 = await _running(runner2)
    await _until(lambda: engine2.nuisance_counts() == {"det-7": 7, "s2": 1})
    await _stop(task2)
