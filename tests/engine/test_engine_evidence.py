"""Issue 15: confirmation by evidence. Detector health, independent witnesses,
zone schedules. Each test here fails on the rule chain before it
(bench/engine_rules_v1.py keeps that chain; see test_old_rules_forward_these)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.engine import Engine
from agent.events import Condition, DeviceKind, Quantity, VideoClass
from agent.siteconfig import ZonePolicy
from bench.engine_rules_v1 import Engine as EngineV1
from tests.engine.engine_sim import WALL0, Sim, site

# WALL0 of engine_sim is Tuesday 2023-11-14 22:13:20 UTC
EVENING = {"name": "late cooking", "start": "22:00", "end": "23:00", "persistence_s": 90,
           "verification": False, "video_smoke_confirms": False}  # fmt: skip


def _dirty_held_through_reset(engine: type[Any]) -> Sim:
    sim = Sim()
    sim.engine = engine(sim.index)
    sim.state(1, "s1", Condition.DIRTY, detail="service alarm (dirty chamber)")
    (cmd,) = sim.alarm(10, "s1").commands
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)  # the reset cleared it
    sim.alarm(14, "s1")  # back at once and stays
    sim.until(200)
    return sim


def test_dirty_detector_is_not_confirmed_by_verification_alone() -> None:
    sim = _dirty_held_through_reset(Engine)
    ((t, d),) = sim.fires()
    # persistence: 45 s continuous from its return at 14 s, not verification at 40 s
    assert d.details["rule"] == "persistence" and t == pytest.approx(59)


def test_self_clearing_trips_make_a_detector_untrusted_and_a_clean_record_restores() -> None:
    sim = Sim()
    (cmd,) = sim.alarm(10, "s1").commands
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)
    for t0 in (20, 35):  # two trips of 3 s that clear on their own
        sim.alarm(t0, "s1")
        sim.alarm(t0 + 3, "s1", active=False)
    sim.until(250)
    assert not sim.fires()  # held back; the incident closed as a nuisance
    # a new alarm 5 minutes later that holds through its reset: not trusted alone
    (cmd,) = sim.alarm(300, "s1").commands
    sim.result(300.1, cmd.id, ok=True)
    sim.alarm(301, "s1", active=False)
    sim.alarm(304, "s1")
    sim.until(400)
    ((t, d),) = sim.fires()
    assert d.details["rule"] == "persistence" and t == pytest.approx(349)
    sim.alarm(400, "s1", active=False)
    sim.until(1400)  # incident restored; the short trips are 20 minutes old
    (cmd,) = sim.alarm(1500, "s1").commands
    sim.result(1500.1, cmd.id, ok=True)
    sim.alarm(1501, "s1", active=False)
    sim.alarm(1504, "s1")
    sim.until(1600)
    (t, d) = sim.fires()[-1]
    assert d.details["rule"] == "verification" and t == pytest.approx(1530)


def test_two_detectors_tripped_by_one_burst_are_one_witness() -> None:
    sim = Sim(site(persistence_s=45))
    sim.alarm(10, "s2")
    sim.alarm(10.6, "h1")  # the same puff of dust, 0.6 s later
    sim.alarm(16, "s2", active=False)
    sim.alarm(17, "h1", active=False)
    sim.until(300)
    assert not sim.fires()


def test_two_detectors_seconds_apart_are_two_witnesses() -> None:
    sim = Sim()
    sim.alarm(10, "s2")
    sim.alarm(14, "h1")
    ((t, d),) = sim.fires()
    assert t == 14 and d.details["rule"] == "coincidence"


def test_two_detectors_at_once_that_both_hold_confirm() -> None:
    sim = Sim()
    sim.alarm(10, "s2")
    sim.alarm(10.5, "h1")
    sim.until(30)
    ((t, d),) = sim.fires()
    assert d.details["rule"] == "coincidence" and t == pytest.approx(20.5)


def test_schedule_needs_flames_or_persistence_but_never_past_the_ceiling() -> None:
    sim = Sim(site(schedules=[EVENING]))
    (cmd,) = sim.alarm(10, "s1").commands
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)
    sim.alarm(14, "s1")  # steam outlasts the reset
    sim.video(15)  # and the camera's vote passes "smoke"
    sim.until(99)
    assert not sim.fires()
    sim.until(120)
    ((t, d),) = sim.fires()
    # persistence 90 s from its return (104 s) beats nothing else; the ceiling
    # (100 s after the first alarm) needs the share of time, which it has
    assert t <= 10 + 90 + 0.5 and d.details["rule"] in ("ceiling", "persistence")


def test_schedule_outside_its_hours_changes_nothing() -> None:
    sch = {**EVENING, "start": "06:00", "end": "07:00"}
    sim = Sim(site(schedules=[sch]))
    sim.alarm(10, "s1")
    sim.video(15)
    ((t, d),) = sim.fires()
    assert t == 15 and d.details["rule"] == "video"


def test_schedule_never_applies_to_heat_detectors_or_call_points() -> None:
    sim = Sim(site(schedules=[EVENING]))
    sim.alarm(10, "h1")
    sim.until(100)
    ((t, d),) = sim.fires()
    assert d.details["rule"] == "persistence" and t == pytest.approx(55)
    sim2 = Sim(site(schedules=[EVENING]))
    sim2.state(5, "panel", Condition.ALARM, point="1/24", kind=DeviceKind.MANUAL_CALL_POINT)
    assert sim2.fires()


def test_schedule_above_the_ceiling_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"late cooking.*must not exceed ceiling_s"):
        ZonePolicy(schedules=[{**EVENING, "persistence_s": 120}])


def test_schedule_rejects_a_bad_time_and_zone() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        ZonePolicy(schedules=[{**EVENING, "start": "7:00"}])
    with pytest.raises(ValueError, match="IANA"):
        ZonePolicy(schedules=[{**EVENING, "timezone": "Mars/Olympus"}])


def test_old_rules_forward_these() -> None:
    """The same inputs through the rule chain before issue 15: forwarded early."""
    sim = _dirty_held_through_reset(EngineV1)
    ((t, d),) = sim.fires()
    assert d.details["rule"] == "verification" and t == pytest.approx(40)
    old = Sim(site(persistence_s=45))
    old.engine = EngineV1(old.index)
    old.alarm(10, "s2")
    old.alarm(10.6, "h1")
    assert old.fires()


def _analog_sim() -> Sim:
    from agent.engine.site import DeviceInfo
    from agent.events import DeviceKind as K

    idx = site()
    devices = {**idx.devices, "a1": DeviceInfo("a1", "z2", K.MULTI, True, 1.0)}
    return Sim(_replace(idx, devices))


def _replace(idx: Any, devices: dict[str, Any]) -> Any:
    import dataclasses

    return dataclasses.replace(idx, devices=devices)


def _level(sim: Sim, t: float, value: float) -> None:
    from agent.events import Quantity, Reading

    sim.feed(
        Reading(
            source="a1",
            zone="z2",
            wall=WALL0 + t,
            mono=t,
            point="smoke",
            quantity=Quantity.SMOKE_PERCENT_FT,
            value=value,
            unit="%/ft",
        )
    )


def test_analog_level_climbing_steadily_confirms_a_smoulder_at_its_alarm() -> None:
    sim = _analog_sim()
    for k in range(101):  # 0.1 -> 3.1 %/ft over 100 s, polled every second
        _level(sim, float(k), 0.1 + 0.03 * k)
    sim.alarm(100.2, "a1")
    ((t, d),) = sim.fires()
    assert t == pytest.approx(100.2) and d.details["rule"] == "signal_shape"


def test_analog_level_that_jumps_is_steam_not_a_smoulder() -> None:
    sim = _analog_sim()
    for k in range(98):  # flat, then a jump within 3 s: steam or dust
        _level(sim, float(k), 0.1)
    for k, v in ((98, 1.2), (99, 2.6), (100, 3.1)):
        _level(sim, float(k), v)
    sim.alarm(100.2, "a1")
    sim.until(101)
    assert not sim.fires()


def test_camera_smoke_alone_waits_like_a_detector_where_smoke_does_not_confirm() -> None:
    """During a schedule with ``video_smoke_confirms: false`` (breakfast steam
    looks like smoke), the camera's smoke alone is held to the ceiling, as the
    same smoke with the kitchen detector in alarm is; it is not forwarded after
    the camera-alone 20 s. Before, the camera alone was forwarded at 20 s while
    camera plus detector waited 90 s."""
    sim = Sim(site(schedules=[EVENING]))
    for k in range(45):  # smoke, steady, an update every 2 s from 10 s to 98 s
        sim.video(10 + 2 * k, cls=VideoClass.SMOKE, area=2000)
    sim.until(99)
    assert not sim.fires()
    sim.video(100, cls=VideoClass.SMOKE, area=2000)
    sim.until(101)
    ((t, d),) = sim.fires()
    assert t == pytest.approx(100) and d.details["rule"] == "video_only"
    assert "held to the ceiling" in d.reason
    # outside the schedule the same smoke is forwarded by the 20 s hold
    day = Sim(site())
    for k in range(20):
        day.video(10 + 2 * k, cls=VideoClass.SMOKE, area=2000)
    day.until(40)
    ((t, _d),) = day.fires()
    assert t == pytest.approx(30)


def test_a_detector_alarm_never_makes_the_camera_slower() -> None:
    """A zone whose camera does not confirm detectors (``video_confirms:
    false``): flames held 20 s by the camera alone are forwarded at the
    camera's hold whether or not the zone's detector is in alarm too. Before,
    the detector's alarm took the camera-alone rule away and the fire waited for
    the detector's persistence (45 s)."""
    times = []
    for with_detector in (False, True):
        sim = Sim(site(video_confirms=False, verification=False))
        if with_detector:
            sim.alarm(8, "s2")
        for k in range(30):
            sim.video(10 + 2 * k, cls=VideoClass.FIRE, area=1500)
        sim.until(120)
        ((t, d),) = sim.fires()
        times.append((t, d.details["rule"]))
    assert times == [(30.0, "video_only"), (30.0, "video_only")]


def test_growing_flames_confirm_at_once_where_smoke_does_not() -> None:
    """The schedule holds smoke, not flames: a camera's fire region that grows
    1.5x (in two consecutive reports) is forwarded by growth, detector or not."""
    sim = Sim(site(schedules=[EVENING]))
    for k, area in enumerate((1000, 1300, 1700, 2300)):
        sim.video(10 + 2 * k, cls=VideoClass.FIRE, area=area)
    ((t, d),) = sim.fires()
    assert t == pytest.approx(16) and d.details["rule"] == "video_growth"


def _heat(sim: Sim, t0: float, t1: float, c0: float, rate_c_min: float) -> None:
    """h1's temperature every second from t0 to t1, climbing at rate_c_min."""
    t = t0
    while t <= t1:
        sim.reading(t, "h1", c0 + (t - t0) * rate_c_min / 60, Quantity.TEMPERATURE_C, point="t")
        t += 1.0


def test_heat_detector_whose_fire_keeps_growing_confirms_in_seconds() -> None:
    """A clean-burning fire (fat, alcohol) trips only the heat detector; its
    temperature keeps climbing: confirmed heat_climb_s after the alarm, not
    after persistence (45 s). Fails on the rule chain before: persistence."""
    sim = Sim()
    _heat(sim, 0, 29, 22, 60)  # 60 C a minute: 57 C at 35 s
    sim.alarm(35, "h1")
    _heat(sim, 30, 120, 52, 60)
    sim.until(120)
    ((t, d),) = sim.fires()
    assert d.details["rule"] == "heat_climb" and t == pytest.approx(45, abs=1)


def test_heating_test_with_the_gun_held_on_is_not_a_climb() -> None:
    """The gun held 8 s past the alarm, then the detector cools: held back."""
    sim = Sim()
    _heat(sim, 0, 20, 22, 150)
    sim.alarm(20, "h1")
    _heat(sim, 21, 28, 72, 150)
    sim.alarm(28, "h1", active=False)
    _heat(sim, 29, 200, 90, -20)
    sim.until(200)
    assert not sim.fires()


def test_heat_alarm_at_a_steady_temperature_waits_for_persistence() -> None:
    """In alarm with its temperature flat (no growing fire under it): no
    heat_climb; the continuous alarm confirms at persistence_s, as before."""
    sim = Sim()
    _heat(sim, 0, 9, 60, 0)
    sim.alarm(10, "h1")
    _heat(sim, 11, 120, 60, 0)
    sim.until(120)
    ((t, d),) = sim.fires()
    assert d.details["rule"] == "persistence" and t == pytest.approx(55, abs=1)
