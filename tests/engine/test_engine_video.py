"""A camera's fire and smoke detections are two detections (per camera and class).

A camera's vote runs per class: one fire seen as flames and as smoke gives two
STARTs and two ENDs that come and go on their own. The end of the smoke must
not end (or restart) the fire's camera-alone hold, nor may one class's region
be measured against the other's for growth.
"""

from __future__ import annotations

from agent.events import DecisionType, VideoClass
from tests.engine.engine_sim import Sim, site

FIRE, SMOKE = VideoClass.FIRE, VideoClass.SMOKE


def _updates(sim: Sim, t0: float, t1: float, cls: VideoClass, area: int, end: bool) -> None:
    """A camera's confirmed detection of ``cls`` from t0, an update every 2 s to t1."""
    t = t0
    while t <= t1:
        sim.video(t, cls=cls, area=area)
        t += 2.0
    if end:
        sim.video(t1 + 1.0, cls=cls, active=False)


def _feed_interleaved(sim: Sim, events: list[tuple[float, VideoClass, int, bool]]) -> None:
    for t, cls, area, active in sorted(events, key=lambda e: e[0]):
        sim.video(t, cls=cls, area=area, active=active)


def test_smoke_ending_does_not_restart_the_fire_hold() -> None:
    """Smoke START (10 s), fire START (12 s), smoke END (20 s), fire still active:
    the camera-alone FIRE_ALARM comes at the fire's own 20 s hold (32 s), counted
    from the fire's START. Before: the smoke's END cleared the camera's one
    state, the next fire update restarted the hold, and the alarm came at 40 s."""
    sim = Sim(site())
    ev: list[tuple[float, VideoClass, int, bool]] = []
    ev += [(10.0 + 2 * k, SMOKE, 2000, True) for k in range(5)]  # 10..18
    ev.append((20.0, SMOKE, 0, False))
    ev += [(12.0 + 2 * k, FIRE, 1600, True) for k in range(30)]  # 12..70, steady
    _feed_interleaved(sim, ev)
    sim.until(80.0)
    fires = sim.fires("z")
    assert len(fires) == 1
    t, d = fires[0]
    assert d.details["rule"] == "video_only"
    assert t == 32.0, f"camera-alone alarm at {t} s, not at the fire's 20 s hold (32 s)"
    assert d.first_seen_mono == 12.0  # the fire's START
    assert "fire confirmed for 20 s" in d.reason


def test_fire_start_does_not_restart_the_smoke_hold() -> None:
    """Smoke held from 5 s; a brief fire START/END in between (10-14 s) changes
    nothing for the smoke's hold: the alarm comes at 25 s."""
    sim = Sim(site())
    ev: list[tuple[float, VideoClass, int, bool]] = []
    ev += [(5.0 + 2 * k, SMOKE, 2000, True) for k in range(20)]
    ev += [(10.0, FIRE, 900, True), (12.0, FIRE, 900, True), (14.0, FIRE, 0, False)]
    _feed_interleaved(sim, ev)
    sim.until(60.0)
    fires = sim.fires("z")
    assert [(t, d.details["rule"]) for t, d in fires] == [(25.0, "video_only")]


def test_growth_is_measured_per_class() -> None:
    """A small steady smoke region and a larger steady fire region: neither grew.
    Before, the fire's area was measured against the smoke's first area and the
    camera alone was forwarded as "region grew" at the fire's START."""
    sim = Sim(site())
    ev: list[tuple[float, VideoClass, int, bool]] = []
    ev += [(10.0 + 2 * k, SMOKE, 900, True) for k in range(5)]  # 10..18
    ev.append((19.0, SMOKE, 0, False))
    ev += [(12.0 + 2 * k, FIRE, 3600, True) for k in range(3)]  # 12..16
    ev.append((17.0, FIRE, 0, False))
    _feed_interleaved(sim, ev)
    sim.until(120.0)
    assert sim.fires() == []
    held = [s.source for s in sim.out.suppressed]
    assert held == ["cam"]  # held back as the camera's nuisance


def test_growth_of_one_class_still_confirms() -> None:
    """The fire's own region grown 1.5x its own first area in two consecutive
    reports confirms at the second; the smoke reports in between do not break it."""
    sim = Sim(site())
    sim.video(10.0, cls=SMOKE, area=900)
    sim.video(11.0, cls=FIRE, area=1600)
    sim.video(13.0, cls=SMOKE, area=900)
    sim.video(14.0, cls=FIRE, area=2000)
    sim.video(15.0, cls=SMOKE, area=900)
    sim.video(16.0, cls=FIRE, area=2500)
    assert sim.fires() == []  # grown in one report only
    sim.video(17.0, cls=SMOKE, area=900)
    sim.video(18.0, cls=FIRE, area=2600)
    fires = sim.fires("z")
    assert [(t, d.details["rule"]) for t, d in fires] == [(18.0, "video_growth")]
    assert fires[0][1].first_seen_mono == 11.0


def test_detector_confirmed_by_fire_while_smoke_ended() -> None:
    """Where only flames confirm a detector (a meal schedule's
    ``video_smoke_confirms: false``), the camera's fire still corroborates a
    detector alarm after the camera's smoke detection ended."""
    sim = Sim(site(video_smoke_confirms=False))
    sim.video(10.0, cls=SMOKE, area=2000)
    sim.video(11.0, cls=FIRE, area=1600)
    sim.video(12.0, cls=SMOKE, area=2000)
    sim.video(13.0, cls=SMOKE, active=False)
    sim.video(13.5, cls=FIRE, area=1600)
    sim.alarm(15.0, "s2")
    fires = sim.fires("z")
    assert [(t, d.details["rule"]) for t, d in fires] == [(15.0, "video")]


def test_smoke_alone_does_not_confirm_where_only_flames_do() -> None:
    """With ``video_smoke_confirms: false`` the camera's smoke alone is no
    corroboration (steam); the detector goes through its other rules."""
    sim = Sim(site(video_smoke_confirms=False))
    for k in range(5):
        sim.video(10.0 + 2 * k, cls=SMOKE, area=2000)
    sim.video(19.0, cls=SMOKE, active=False)
    sim.alarm(15.0 + 5.0, "s2")
    sim.until(21.0)
    assert sim.fires() == []


def test_camera_busy_while_either_class_is_active() -> None:
    """The incident stays open while the fire goes on after the smoke ended:
    no nuisance is closed under a burning fire."""
    sim = Sim(site(video_only_s=60.0, video_growth_ratio=100.0))
    sim.video(0.0, cls=SMOKE, area=2000)
    sim.video(1.0, cls=FIRE, area=1600)
    sim.video(2.0, cls=SMOKE, active=False)
    # the fire is reported again only when it changes; 70 s without an update
    sim.until(61.5)
    assert sim.out.suppressed == []
    fires = sim.fires("z")
    assert [(t, d.details["rule"]) for t, d in fires] == [(61.0, "video_only")]
    assert sim.of(DecisionType.FIRE_ALARM)[0][1].first_seen_mono == 1.0


def test_generated_fires_confirm_once_detector_and_camera_are_both_there() -> None:
    """Issue 15: where a zone's detector alarm and its camera's confirmed
    detection coincide, the engine confirms at once. Over the generated fire
    scenarios with both, the FIRE_ALARM comes within one tick of the later of
    the two (or earlier, by another rule), except where the zone's schedule in
    force says a camera's smoke does not confirm and the camera saw only smoke."""
    from agent.events import Condition, StateChange, VideoDetection
    from firmware_mocks.generator import FIRE_FAMILIES, generate
    from firmware_mocks.timeline import MONO0, WALL0, replay, scenario_site

    fams = ("fast-flaming", "slow-smoulder", "detector-offline")
    items = [
        (f, sc)
        for f, sc in generate(15, 0, 20 * len(FIRE_FAMILIES))
        if f in fams and any(e.camera is not None for e in sc.events)
    ]
    assert len(items) >= 10
    site = scenario_site(items[0][1])
    policies = {z.id: z.policy for z in site.config.zones}
    tick_s = site.config.engine.tick_s
    checked = 0
    for _fam, sc in items:
        first_det: dict[str, float] = {}
        first_cam: dict[str, float] = {}
        classes: set[VideoClass] = set()

        def seen(obs: object, first_det=first_det, first_cam=first_cam, classes=classes) -> None:
            if isinstance(obs, StateChange) and obs.active and obs.condition is Condition.ALARM:
                first_det.setdefault(obs.zone, obs.mono - MONO0)
            if isinstance(obs, VideoDetection) and obs.confirmed and obs.active:
                first_cam.setdefault(obs.zone, obs.mono - MONO0)
                classes.add(obs.cls)

        r = replay(sc, observe=seen)
        if sc.zone not in first_det or sc.zone not in first_cam:
            continue
        both = max(first_det[sc.zone], first_cam[sc.zone])
        pol = policies[sc.zone].at(WALL0 + both)
        if not pol.video_smoke_confirms and classes == {VideoClass.SMOKE}:
            continue  # a meal schedule: smoke on camera is steam until it persists
        t, d = next(
            (t, d)
            for t, d in r.decisions
            if d.type is DecisionType.FIRE_ALARM and d.zone == sc.zone
        )
        assert t <= both + tick_s, (
            f"{sc.name}: detector at {first_det[sc.zone]:.1f} s, camera at "
            f"{first_cam[sc.zone]:.1f} s, fire alarm only at {t:.1f} s ({d.details['rule']})"
        )
        checked += 1
    assert checked >= 5
