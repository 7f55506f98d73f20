"""One test (or a few) per confirmation rule, fed by hand in simulated time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.events import Condition, DecisionType, DeviceKind, Quantity
from agent.siteconfig import ZonePolicy
from tests.engine.engine_sim import Sim, site


def test_manual_call_point_and_panel_fire_are_immediate() -> None:
    sim = Sim()
    sim.state(5, "panel", Condition.ALARM, point="1/24", kind=DeviceKind.MANUAL_CALL_POINT)
    sim.state(6, "panel", Condition.ALARM, point="1/9", kind=DeviceKind.PANEL)
    (t1, d1), (t2, d2) = sim.fires()
    assert (t1, d1.zone, d1.details["rule"]) == (5, "z2", "immediate")
    assert (t2, d2.zone) == (6, "z")  # unlisted point: the panel's own zone
    assert d1.verified and d1.first_seen_mono == 5


def test_unknown_source_is_counted_not_fatal() -> None:
    sim = Sim()
    sim.state(1, "ghost", Condition.ALARM, kind=DeviceKind.SMOKE, zone="nowhere")
    sim.until(200)
    assert not sim.decisions
    assert sim.engine.counters["unknown_source"] == 1


def test_coincidence_of_two_detectors() -> None:
    sim = Sim()
    sim.alarm(10, "s2")
    sim.alarm(30, "h1")
    ((t, d),) = sim.fires()
    assert t == 30 and d.details["rule"] == "coincidence"
    assert set(d.devices) == {"s2", "h1"}
    assert [e.source for e in d.evidence] == ["s2", "h1"]


def test_no_coincidence_outside_the_window() -> None:
    sim = Sim(site(coincidence_window_s=10, persistence_s=200, ceiling_s=300))
    sim.alarm(10, "s2")
    sim.alarm(12, "s2", active=False)
    sim.alarm(25, "h1")
    sim.alarm(27, "h1", active=False)
    sim.until(400)
    assert not sim.fires()
    assert {s.source for s in sim.out.suppressed} == {"s2", "h1"}


def test_verification_resets_and_a_later_new_alarm_must_persist() -> None:
    # issue 15: steam re-trips a resettable detector 30-90 s after its reset;
    # before, that new alarm confirmed at once ("verified"); now it is another
    # puff and must hold persistence_s (or be corroborated) like any alarm
    sim = Sim()
    out = sim.alarm(10, "s1")
    (cmd,) = out.commands
    assert (cmd.target, cmd.action) == ("s1", "reset")
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)  # the reset cleared it
    sim.alarm(14, "s1")  # inside the reset period: does not count yet
    sim.alarm(20, "s1", active=False)
    sim.until(50)
    assert not sim.fires()
    sim.alarm(70, "s1")  # inside the confirmation period (40..100): a new puff
    sim.until(100)
    assert not sim.fires()
    sim.alarm(100, "s1", active=False)  # steam gone after 30 s: held back
    sim.until(300)
    assert not sim.fires()
    assert len(sim.out.commands) == 1  # one reset per detector per incident


def test_a_new_alarm_after_the_reset_period_that_persists_confirms() -> None:
    sim = Sim()
    (cmd,) = sim.alarm(10, "s1").commands
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)
    sim.alarm(70, "s1")
    sim.until(200)
    ((t, d),) = sim.fires()
    assert 115 <= t <= 116 and d.details["rule"] == "persistence" and d.verified


def test_verification_confirms_when_still_in_alarm_at_end_of_reset_period() -> None:
    sim = Sim()
    (cmd,) = sim.alarm(10, "s1").commands
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)
    sim.alarm(13, "s1")
    sim.until(45)
    ((t, d),) = sim.fires()
    assert t == pytest.approx(40) and d.details["rule"] == "verification"


def test_verification_nuisance_when_no_new_alarm() -> None:
    sim = Sim()
    (cmd,) = sim.alarm(10, "s1").commands
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)
    sim.until(300)
    assert not sim.fires()
    (s,) = sim.out.suppressed
    assert s.source == "s1" and "verification" in s.reason and s.count == 1
    assert 100 <= s.mono <= 101  # held while the confirmation period ran
    assert sim.engine.nuisance_counts() == {"s1": 1}


def test_failed_reset_falls_back_to_persistence() -> None:
    sim = Sim(site(reset_window_s=60, persistence_s=45))
    (cmd,) = sim.alarm(10, "s1").commands
    sim.result(10.5, cmd.id, ok=False)
    sim.until(60)
    ((t, d),) = sim.fires()
    assert t == pytest.approx(55) and d.details["rule"] == "persistence"
    assert any("reset failed" in e.what for e in d.evidence)


def test_persistence_for_a_detector_that_cannot_be_reset() -> None:
    sim = Sim()
    out = sim.alarm(10, "s2")
    assert not out.commands
    sim.until(54.5)
    assert not sim.fires()
    sim.until(56)
    ((t, d),) = sim.fires()
    assert t == 55 and d.details["rule"] == "persistence"


def test_short_alarm_is_held_back() -> None:
    sim = Sim()
    sim.alarm(10, "s2")
    sim.alarm(30, "s2", active=False)
    sim.until(200)
    assert not sim.fires()
    (s,) = sim.out.suppressed
    assert s.first_seen_mono == 10 and "cleared" in s.reason


def test_ceiling_forwards_a_flickering_alarm_unverified() -> None:
    sim = Sim()
    for k in range(8):  # 20 s on, 5 s off: never 45 s in one piece
        sim.alarm(10 + 25 * k, "s2")
        sim.alarm(30 + 25 * k, "s2", active=False)
    sim.until(300)
    ((t, d),) = sim.fires()
    assert d.details["rule"] == "ceiling" and not d.verified
    assert t == pytest.approx(100)  # 10 + 90: in alarm at that moment (85..105)
    assert d.first_seen_mono == 10


def test_alarm_after_ceiling_in_open_incident_forwards_once_it_holds_half_the_time() -> None:
    sim = Sim()
    sim.alarm(10, "s2")
    sim.alarm(30, "s2", active=False)
    sim.alarm(60, "s2")
    sim.alarm(80, "s2", active=False)
    sim.until(100)  # ceiling passed while quiet: nothing to forward
    assert not sim.fires()
    # the incident is still open (quiet < 60 s); in alarm 40 of 110 s so far:
    # a recurring alarm counts as persisting once it fills half the time
    sim.alarm(120, "s2")
    sim.until(200)
    ((t, d),) = sim.fires()
    assert t == pytest.approx(150) and not d.verified and d.details["rule"] == "ceiling"


def test_recurring_short_trips_never_pass_the_ceiling() -> None:
    # insects / dust: 3 s trips every 30 s for ten minutes, never half the time
    sim = Sim()
    for k in range(20):
        sim.alarm(10 + 30 * k, "s2")
        sim.alarm(13 + 30 * k, "s2", active=False)
    sim.until(900)
    assert not sim.fires()


def test_heat_rise_corroborates() -> None:
    sim = Sim()
    sim.reading(0, "h1", 21.0, Quantity.TEMPERATURE_C)
    sim.alarm(10, "s2")
    sim.reading(20, "h1", 25.0, Quantity.TEMPERATURE_C)
    assert not sim.fires()
    sim.reading(30, "h1", 29.5, Quantity.TEMPERATURE_C)
    ((t, d),) = sim.fires()
    assert t == 30 and d.details["rule"] == "heat_rise"


def test_own_temperature_of_alarming_heat_detector_does_not_corroborate() -> None:
    sim = Sim()
    sim.reading(0, "h1", 21.0, Quantity.TEMPERATURE_C)
    sim.alarm(10, "h1")
    sim.reading(11, "h1", 70.0, Quantity.TEMPERATURE_C)
    sim.alarm(25, "h1", active=False)
    sim.until(200)
    assert not sim.fires()


def test_video_confirms_detector_and_carries_snapshot() -> None:
    sim = Sim()
    sim.alarm(10, "s1")
    sim.video(14)
    ((t, d),) = sim.fires()
    assert t == 14 and d.details["rule"] == "video"
    assert d.snapshot_jpeg == b"jpeg" and d.cameras == ("cam",) and d.devices == ("s1",)


def test_video_after_detector_restored_still_confirms() -> None:
    sim = Sim()
    sim.alarm(10, "s2")
    sim.alarm(20, "s2", active=False)
    sim.video(60)
    ((t, d),) = sim.fires()
    assert t == 60 and d.details["rule"] == "video"


def test_video_only_hold_and_growth() -> None:
    sim = Sim()
    sim.video(10, "cam2", area=1000)
    sim.video(14, "cam2", area=1200)
    sim.until(29.5)
    assert not sim.fires()
    sim.until(31)
    ((t, d),) = sim.fires("z2")
    assert t == 30 and d.details["rule"] == "video_only" and d.first_seen_mono == 10

    sim2 = Sim()
    sim2.video(10, area=1000)
    sim2.video(13, area=1600)
    assert not sim2.fires()  # one report's region is not growth yet
    sim2.video(18, area=1700)
    ((t, d),) = sim2.fires("z")
    assert t == 18 and d.details["rule"] == "video_growth"
    assert d.reason.endswith("region grew 1.6x")  # the area both reports reached


def test_growth_in_one_report_only_is_not_growth() -> None:
    """A region reported grown once, then back to its size (cells at the
    threshold around a person walking by): the camera alone waits for its hold.
    Growth counts only when two consecutive reports both reach the ratio."""
    sim = Sim()
    sim.video(10, area=1000)
    sim.video(15, area=3000)  # one report: 3x
    sim.video(20, area=1100)  # not held
    sim.video(25, area=1600)  # grown again, once
    sim.until(29.5)
    assert not sim.fires()
    sim.until(31)
    ((t, d),) = sim.fires("z")
    assert t == 30 and d.details["rule"] == "video_only"


def test_unconfirmed_video_is_ignored_and_short_video_held_back() -> None:
    sim = Sim()
    sim.video(10, confirmed=False)
    sim.until(100)
    assert not sim.decisions and sim.engine.counters["unconfirmed_video"] == 1
    sim.video(110)
    sim.video(116, active=False)
    sim.until(300)
    assert not sim.fires()
    (s,) = sim.out.suppressed
    assert s.source == "cam"


def test_one_fire_alarm_per_incident_and_restore() -> None:
    sim = Sim(site(incident_clear_s=60))
    sim.alarm(10, "s2")
    sim.alarm(12, "h1")
    for k in range(20):  # the fire goes on: more alarms, more polls
        sim.alarm(20 + k * 3, "s2", active=k % 2 == 1)
    sim.video(40)
    sim.alarm(100, "s2", active=False)
    sim.alarm(100, "h1", active=False)
    sim.video(100, active=False)
    sim.until(159)
    assert len(sim.fires()) == 1 and not sim.of(DecisionType.RESTORE)
    sim.until(161)
    ((t, r),) = sim.of(DecisionType.RESTORE)
    assert t == 160 and r.details["of"] == "fire_alarm"
    sim.alarm(300, "s2")  # a new incident afterwards is a new alarm
    sim.alarm(301, "h1")  # 1 s apart: one burst until both have held 10 s
    sim.until(312)
    assert len(sim.fires()) == 2


def test_second_zone_is_judged_on_its_own() -> None:
    sim = Sim()
    sim.alarm(10, "s2")
    sim.alarm(11, "n1")
    sim.alarm(12, "n1", active=False)
    sim.video(15)
    sim.until(300)
    ((_t, d),) = sim.fires()
    assert d.zone == "z"
    assert [s.source for s in sim.out.suppressed] == ["n1"]


def test_offline_during_alarm_is_never_a_silent_cancel() -> None:
    sim = Sim()
    (cmd,) = sim.alarm(10, "s1").commands
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)  # reset cleared it; then the fire kills it
    sim.state(14, "s1", Condition.OFFLINE)
    sim.until(200)
    fires = sim.fires()
    assert len(fires) == 1
    t, d = fires[0]
    assert t == pytest.approx(100) and not d.verified and "lost in alarm" in d.reason
    assert not sim.out.suppressed
    assert sim.of(DecisionType.FAULT)


def test_offline_detector_that_comes_back_quiet_is_a_nuisance() -> None:
    sim = Sim(site(fault_debounce_s=30))
    sim.alarm(10, "s2")
    sim.state(12, "s2", Condition.OFFLINE)
    sim.state(20, "s2", Condition.OFFLINE, active=False)
    sim.alarm(20, "s2", active=False)
    sim.until(300)
    assert not sim.fires()
    assert not sim.of(DecisionType.FAULT)  # 8 s offline: under the debounce


def test_electrical_inrush_is_not_a_prealarm_but_sustained_is() -> None:
    sim = Sim()
    for k in range(10):
        sim.reading(2 * k, "rc", 900 if k == 3 else 150, point="loop1", setpoint=300)
    assert not sim.of(DecisionType.ELECTRICAL_PREALARM)
    for k in range(10, 20):
        sim.reading(2 * k, "rc", 350, point="loop1", setpoint=300)
    ((t, d),) = sim.of(DecisionType.ELECTRICAL_PREALARM)
    assert t == 30 and d.zone == "z2" and d.details["setpoint"] == 300
    assert d.first_seen_mono == 20


def test_electrical_policy_setpoint_when_device_reports_none() -> None:
    sim = Sim(site(residual_current_setpoint_ma=500))
    for k in range(10):
        sim.reading(2 * k, "rc", 400, point="loop2")
    assert not sim.of(DecisionType.ELECTRICAL_PREALARM)
    for k in range(10, 20):
        sim.reading(2 * k, "rc", 520, point="loop2")
    assert sim.of(DecisionType.ELECTRICAL_PREALARM)


def test_electrical_hysteresis_and_restore() -> None:
    sim = Sim()
    t = 0.0
    for v in [350] * 7 + [290, 295, 310] * 5 + [200] * 8:
        sim.reading(t, "rc", v, point="loop1", setpoint=300)
        t += 2
    assert len(sim.of(DecisionType.ELECTRICAL_PREALARM)) == 1
    ((_, r),) = sim.of(DecisionType.RESTORE)
    assert r.details["of"] == "electrical_prealarm"


def test_electrical_device_bit() -> None:
    sim = Sim()
    sim.state(5, "rc", Condition.PREALARM, point="loop3", detail="leakage")
    ((t, d),) = sim.of(DecisionType.ELECTRICAL_PREALARM)
    assert t == 5 and d.details["device_bit"]
    sim.state(50, "rc", Condition.PREALARM, active=False, point="loop3")
    assert sim.of(DecisionType.RESTORE)


def test_fault_debounce_report_and_restore() -> None:
    sim = Sim()
    sim.state(10, "s2", Condition.FAULT, detail="sensor")
    sim.until(39)
    assert not sim.of(DecisionType.FAULT)
    sim.until(41)
    ((t, f),) = sim.of(DecisionType.FAULT)
    assert t == 40 and f.details["condition"] == "fault" and t - 10 <= 100
    sim.state(100, "s2", Condition.FAULT, active=False)
    sim.until(159)
    assert not sim.of(DecisionType.RESTORE)
    sim.until(161)
    assert len(sim.of(DecisionType.RESTORE)) == 1


def test_flapping_fault_is_one_fault() -> None:
    sim = Sim()
    for k in range(60):
        sim.state(10 + 10 * k, "cam", Condition.STALE)
        sim.state(12 + 10 * k, "cam", Condition.STALE, active=False)
    sim.until(700)
    faults = sim.of(DecisionType.FAULT)
    assert len(faults) == 1 and faults[0][1].details["intermittent"]
    assert faults[0][0] <= 10 + 100
    assert faults[0][1].cameras == ("cam",)
    assert len(sim.of(DecisionType.RESTORE)) == 1


def test_stats_name_nuisance_prone_detectors() -> None:
    sim = Sim(site(stats_interval_s=3600))
    for k in range(3):
        sim.alarm(100 + 400 * k, "s2")
        sim.alarm(102 + 400 * k, "s2", active=False)
    sim.alarm(2000, "n1")
    sim.alarm(2001, "n1", active=False)
    sim.until(3601)
    ((_t, st),) = sim.of(DecisionType.STATS)
    assert st.zone == "_gateway"
    assert st.details["nuisances"] == {"s2": 3, "n1": 1}
    assert st.details["nuisance_prone"] == ["s2"]
    sim.until(7201)
    assert sim.of(DecisionType.STATS)[1][1].details["nuisances"] == {"s2": 0, "n1": 0}


def test_policy_rejects_persistence_beyond_ceiling() -> None:
    with pytest.raises(ValidationError, match="must not exceed ceiling_s"):
        ZonePolicy(persistence_s=100, ceiling_s=90)
    with pytest.raises(ValidationError):
        ZonePolicy(reset_window_s=61)  # UL 864: at most 60 s
    with pytest.raises(ValidationError):
        ZonePolicy(confirmation_window_s=30)  # UL 864: at least 60 s


def test_engine_builds_from_the_example_site() -> None:
    from agent.engine import Engine
    from agent.events import StateChange
    from agent.siteconfig import load_site
    from config import EXAMPLE_SITE

    engine = Engine(load_site(EXAMPLE_SITE))
    assert engine.site.devices["kitchen-smoke-1"].resettable
    assert engine.site.devices["main-board-leakage"].kind is DeviceKind.RESIDUAL_CURRENT
    assert engine.site.zone_of("panel", "1/23", "storeroom") == "classroom-12"
    obs = StateChange(
        source="panel",
        zone="storeroom",
        wall=1.0,
        mono=1.0,
        point="1/24",
        kind=DeviceKind.MANUAL_CALL_POINT,
        condition=Condition.ALARM,
        active=True,
    )
    (d,) = engine.feed(obs, 1.0, 1.0).decisions
    assert d.type is DecisionType.FIRE_ALARM and d.zone == "kitchen"
