"""A restart during a fire: the incident the centre already has is carried over."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agent.clock import ScaledClock
from agent.engine import Engine, EngineRunner
from agent.engine.core import RESTART_FAULT_GRACE_S
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


# ------------------------------------------------ alarms still being confirmed


def _snapshot_json(sim: Sim) -> dict[str, Any]:
    """What the runner writes to episodes.json, read back."""
    doc = sim.engine.snapshot(sim.t, WALL0 + sim.t)
    return dict(json.loads(json.dumps(doc)))


def _restarted(
    doc: dict[str, Any], at: float, *, wall_offset: float = 0.0, **policy: Any
) -> tuple[Sim, list[Any]]:
    """A new engine started at ``at`` (simulated time goes on) on ``doc``."""
    sim = Sim(site(**policy))
    sim.t = sim.next_tick = at
    out = sim.engine.restore(doc, at, WALL0 + at + wall_offset)
    sim.decisions.extend((at, d) for d in out.decisions)
    return sim, list(out.decisions)


def _zone_states(sim: Sim) -> list[tuple[float, str, Any]]:
    return [(t, d.details["state"], d) for t, d in sim.of(DecisionType.ZONE_STATE)]


SLOW = {"persistence_s": 90.0}  # a lone plain detector waits for the ceiling (90 s)


def _first_life_in_alarm(stop_at: float = 50.0) -> tuple[Sim, dict[str, Any]]:
    a = Sim(site(**SLOW))
    a.alarm(10, "s2")  # a plain detector: only persistence or the ceiling confirm it
    a.until(stop_at)
    assert not a.fires()
    assert [s for _, s, _ in _zone_states(a)] == ["verifying"]
    return a, _snapshot_json(a)


def test_alarm_being_confirmed_keeps_its_ceiling_over_a_restart() -> None:
    a, doc = _first_life_in_alarm()
    verifying_id = _zone_states(a)[0][2].id
    b, _ = _restarted(doc, 55.0, **SLOW)  # the restart took 5 s
    b.alarm(56, "s2")  # its first poll: still in alarm
    b.until(200)
    fires = b.fires()
    assert len(fires) == 1
    t, fire = fires[0]
    # 90 s after its first alarm (10 s), not 90 s after the restart
    assert t <= 10 + 90 + 0.5, t
    assert fire.first_seen_wall == WALL0 + 10
    states = _zone_states(b)
    assert [s for _, s, _ in states] == ["confirmed"]  # no second "verifying"
    assert states[0][2].details["of_id"] == verifying_id


def test_clock_set_back_during_the_stop_never_makes_the_ceiling_later() -> None:
    _, doc = _first_life_in_alarm()
    b, _ = _restarted(doc, 55.0, wall_offset=-3600.0, **SLOW)  # NTP set it back an hour
    b.alarm(56, "s2")
    b.until(300)
    ((t, _),) = b.fires()
    assert t <= 10 + 90 + 5 + 0.5, t  # the ceiling + the restart's own 5 s at worst


def test_clock_set_forward_during_the_stop_only_makes_it_earlier() -> None:
    _, doc = _first_life_in_alarm()
    b, _ = _restarted(doc, 55.0, wall_offset=86400.0 * 3, **SLOW)
    b.alarm(56, "s2")
    b.until(300)
    ((t, fire),) = b.fires()
    assert t <= 57, t
    assert fire.details["rule"] in {"ceiling", "persistence"}


def test_carried_times_from_after_the_snapshot_are_bounded() -> None:
    _, doc = _first_life_in_alarm()
    doc["confirming"][0]["first"] = 1e12  # nonsense "in the future"
    doc["confirming"][0]["detectors"][0]["onset"] = float("inf")
    b, _ = _restarted(doc, 55.0, **SLOW)
    b.alarm(56, "s2")
    b.until(300)
    ((t, _),) = b.fires()
    assert t <= 50 + 5 + 90 + 0.5, t  # at worst as if it began at the stop


def test_verifying_zone_ends_held_when_the_alarm_cleared_while_down() -> None:
    a = Sim(site(**SLOW))
    a.alarm(10, "s2")
    a.until(20)
    verifying_id = _zone_states(a)[0][2].id
    doc = _snapshot_json(a)
    b, _ = _restarted(doc, 25.0, **SLOW)
    b.alarm(26, "s2", active=False)  # its first poll after the start: quiet
    b.until(300)
    assert not b.fires()
    states = _zone_states(b)
    assert [s for _, s, _ in states] == ["held"]
    assert states[0][2].details["of_id"] == verifying_id
    assert [s.source for s in b.out.suppressed] == ["s2"]


def test_verifying_zone_ends_even_if_no_detector_ever_reports() -> None:
    a = Sim(site(**SLOW))
    a.alarm(10, "s2")
    a.until(20)
    b, _ = _restarted(_snapshot_json(a), 25.0, **SLOW)
    b.until(25 + 60 + 61)  # the grace for sources to report, then the quiet time
    assert [s for _, s, _ in _zone_states(b)] == ["held"]
    assert not b.engine.open_incidents()


def test_verifying_zone_no_longer_configured_ends_at_the_start() -> None:
    a = Sim(site(**SLOW))
    a.alarm(10, "s2")
    a.until(20)
    doc = _snapshot_json(a)
    doc["confirming"][0]["zone"] = "gone"
    _, out = _restarted(doc, 25.0, **SLOW)
    assert [(d.type, d.details["state"]) for d in out] == [(DecisionType.ZONE_STATE, "held")]


def test_verification_stage_is_carried() -> None:
    """s1 was reset before the stop: no second reset after it; back in alarm at
    once and still at the end of the reset period, it is verified on time."""
    a = Sim()
    out = a.alarm(10, "s1")
    assert len(out.commands) == 1
    a.alarm(11, "s1", active=False)  # the reset
    a.alarm(13, "s1")  # back at once
    a.until(20)
    b, _ = _restarted(_snapshot_json(a), 25.0)
    first = b.alarm(26, "s1")
    assert not first.commands  # not reset a second time
    b.until(100)
    ((t, fire),) = b.fires()
    assert fire.details["rule"] == "verification"
    assert t <= 10 + 30 + 0.5, t


# -------------------------------------------------------------- trust record


def _dirty_record() -> dict[str, Any]:
    """s1 held back twice (reset, never back): not trusted alone for a day."""
    a = Sim()
    for t0 in (10, 200):
        a.alarm(t0, "s1")
        a.alarm(t0 + 2, "s1", active=False)  # the reset clears it; it stays quiet
    a.until(500)
    assert len(a.out.suppressed) == 2
    return _snapshot_json(a)


def test_trust_record_survives_a_restart() -> None:
    doc = _dirty_record()
    assert len(doc["trust"]["s1"]["nuisance_times"]) == 2
    b, _ = _restarted(doc, 510.0)
    b.alarm(520, "s1")  # reset, back in alarm at once, still in alarm 30 s later
    b.alarm(521, "s1", active=False)
    b.alarm(523, "s1")
    b.until(800)
    ((t, fire),) = b.fires()
    # untrusted: verification alone does not confirm it; persistence does
    assert fire.details["rule"] == "persistence", fire.reason
    assert t >= 523 + 45, t


def test_old_episodes_file_is_still_accepted() -> None:
    """Version 1 (the persist branch): fire incidents, pre-alarms, faults."""
    doc = {
        "version": 1,
        "wall": WALL0 + 990,
        "fires": [
            {
                "zone": "z",
                "id": "fire-1",
                "first_seen_wall": WALL0 + 900,
                "last_activity_wall": WALL0 + 990,
                "active": True,
                "devices": ["s2"],
                "cameras": [],
            }
        ],
        "prealarms": [],
        "faults": [
            {
                "source": "n1",
                "point": "",
                "zone": "z2",
                "condition": "offline",
                "id": "fault-1",
                "first_seen_wall": WALL0 + 800,
                "detail": "",
                "intermittent": False,
            }
        ],
    }
    b, out = _restarted(doc, 1000.0)
    assert out == []
    assert b.engine.open_incidents() == {"z": True}
    assert b.engine.status()["active_faults"] == ["n1 offline"]
    b.alarm(1001, "s2")
    b.until(1100)
    assert not b.fires()


async def test_flickering_detector_does_not_rewrite_the_file_at_every_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Insects in a detector (a 1 s trip every 4 s, for 80 s): its incident's
    details are saved at most every DETAIL_SAVE_S, not at each of 40 edges
    (an SD card's wear), and the last of them still reaches the file."""
    from agent.engine import runner as runner_mod

    writes: list[str] = []
    real_write = runner_mod.write_file_atomic

    def counting(path: Path, data: bytes, **kw: Any) -> None:
        if path.name == EPISODES_FILE:
            writes.append(data.decode())
        real_write(path, data, **kw)

    monkeypatch.setattr(runner_mod, "write_file_atomic", counting)
    speed = 100.0
    clock = ScaledClock(speed)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    runner = EngineRunner(Engine(site()), inbox, Sink(), lambda c: None, clock, 0.5, tmp_path)
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(20):
            inbox.put_nowait(_alarm(clock, "s2"))
            await asyncio.sleep(1 / speed)
            off = _alarm(clock, "s2")
            inbox.put_nowait(
                StateChange(**{**{f: getattr(off, f) for f in _FIELDS}, "active": False})
            )
            await asyncio.sleep(3 / speed)
        await asyncio.sleep((runner_mod.DETAIL_SAVE_S + 2) / speed)
        assert runner.writer is not None
        await asyncio.to_thread(runner.writer.wait_idle, 5.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert 1 <= len(writes) <= 80 / runner_mod.DETAIL_SAVE_S + 4, len(writes)
    (last,) = json.loads(writes[-1])["confirming"]
    (det,) = last["detectors"]
    assert det["own_clears"] == 20  # the latest detail made it to the disk


_FIELDS = ("source", "zone", "wall", "mono", "kind", "condition")


def test_offline_fault_carried_over_ends_at_the_devices_first_answer() -> None:
    """A detector OFFLINE (reported) before the stop answers again after the
    start: its first answer (here the driver's whole state at first answer,
    alarm quiet) clears the carried fault then, and its RESTORE comes
    ``fault_restore_s`` later, not at the end of the restart's grace (slowest
    detection x 1.5 + 5 s). A device that says nothing is still presumed
    cleared only at the end of the grace."""
    a = Sim(site())
    a.state(5, "s2", Condition.OFFLINE, detail="no reply")
    a.state(5, "n1", Condition.OFFLINE, detail="no reply")
    a.until(60)
    faults = {d.devices[0]: d for _, d in a.of(DecisionType.FAULT)}
    assert set(faults) == {"s2", "n1"}
    b, _ = _restarted(_snapshot_json(a), 70.0)
    b.alarm(71, "s2", active=False)  # s2 answers at its first poll; n1 never says a thing
    b.until(70 + 200)
    restores = {d.devices[0]: (t, d) for t, d in b.of(DecisionType.RESTORE)}
    restore_s = b.index.policies["z"].fault_restore_s
    t, d = restores["s2"]
    assert t <= 71 + restore_s + 1, t
    assert d.details["of_id"] == faults["s2"].id
    t_n1, _ = restores["n1"]
    assert t_n1 > 70 + RESTART_FAULT_GRACE_S, t_n1  # presumed, at the end of the grace
