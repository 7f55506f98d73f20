"""A seeded generator of scenarios: nuisance and fire families, randomised.

Each family is a function ``(rng, index) -> Scenario`` that draws its own
durations, phases, repetitions and device mix (which zone of the scenario
site, hence which detector type, camera or not, resettable or not) from a
``random.Random``. ``generate(seed, n_nuisance, n_fire)`` cycles through the
families; the same seed gives the same scenarios. The poll phase is drawn too:
every event is shifted by a random fraction of a poll interval, so the
drivers' polls see each edge at another moment.

The scenarios are ordinary ``Scenario`` objects on the scenario site
(``scenarios/sites/school.yaml``): ``replay`` runs them through the engine, and
``Timeline.values_at`` can drive the firmware mocks end to end.

Nuisance families (docs/confirmation.md, "Which nuisances..."): short cooking
fumes / toast / kettle steam; aerosol spray; shower steam holding a detector
45-90 s after PE; steam re-tripping a resettable detector 30-90 s after its
reset; insects or dust re-tripping again and again for minutes; a burst of
dust tripping two detectors of a zone within a second; a dirty detector (its
service bit set) tripping 3-4 s every ~30 s; a dirty detector without the
bit whose trips clear on their own; cooking steam that trips the kitchen
detector and passes the camera's vote at breakfast; a heat detector's heating
test; leakage inrush on a motor start; sunlight flickering on a camera; a
single-poll glitch. Fire families: fast flaming, slow smoulder over 10
minutes, electrical cabinet, heat only, camera only, detector offline during
a fire.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from firmware_mocks.timeline import SCENARIO_DIR, Event, Expect, Scenario, VideoSpec

POLL_S = 1.0  # the scenario site's detectors are polled every second

# zones of the scenario site, by what covers them (device, resettable, camera)
SMOKE = {
    "classroom-12": ("classroom12-smoke", True, "cam-classroom12"),
    "classroom-14": ("classroom14-smoke", False, None),
    "kitchen": ("kitchen-smoke", True, "cam-kitchen"),
    "staff-room": ("staff-smoke", True, None),
    "storeroom": ("storeroom-smoke", False, "cam-storeroom"),
    "corridor": ("corridor-smoke", True, None),
    "changing-room": ("changing-smoke", False, None),
    "electrical-room": ("elec-smoke", True, None),
    "music-room": ("music-smoke", True, None),  # analogue: obscuration %/ft
}
ALARM_POINT = "smoke_alarm"
# detectors whose alarm is a bit of a status word, and whose smoke level is analogue
ANALOG = {"music-smoke": ("status", 1, 0, "smoke_level")}

Family = Callable[[random.Random, int], Scenario]


def _ev(at: float, **kw: Any) -> Event:
    return Event(at=round(at, 3), **kw)


def _alarm(dev: str, on: bool) -> dict[str, Any]:
    """The point values that put ``dev`` in (or out of) alarm."""
    if dev in ANALOG:
        point, v_on, v_off, _level = ANALOG[dev]
        return {point: v_on if on else v_off}
    return {ALARM_POINT: on}


def _trip(dev: str, at: float, dur: float, level: bool = True) -> list[Event]:
    """An alarm of ``dur`` s; an analogue detector's level jumps and falls with it
    (steam and dust rise and fall within seconds)."""
    ev = [
        _ev(at, device=dev, set=_alarm(dev, True)),
        _ev(at + dur, device=dev, set=_alarm(dev, False)),
    ]
    if dev in ANALOG and level:
        pt = ANALOG[dev][3]
        ev.append(_ev(at - 2, device=dev, ramp={"point": pt, "to": 3.0, "over_s": 2}))
        ev.append(_ev(at + dur, device=dev, ramp={"point": pt, "to": 0.2, "over_s": 3}))
    return ev


def _shift(e: Event, by: float) -> Event:
    update: dict[str, Any] = {"at": round(e.at + by, 3)}
    if isinstance(e.video, VideoSpec) and e.video.ignition is not None:
        update["video"] = e.video.model_copy(update={"ignition": round(e.video.ignition + by, 3)})
    return e.model_copy(update=update)


def _scenario(
    name: str,
    truth: str,
    zone: str,
    events: list[Event],
    rng: random.Random,
    tail_s: float = 200.0,
    description: str = "",
    **kw: Any,
) -> Scenario:
    """A scenario with every event shifted by a random poll phase."""
    phase = rng.uniform(0.0, POLL_S)
    shifted = tuple(_shift(e, phase) for e in events)
    end = max((e.at for e in shifted), default=0.0) + tail_s
    expect = (
        Expect(type="fire_alarm", zone=zone)
        if truth == "fire"
        else Expect(type="fire_alarm", count=0)
    )
    return Scenario(
        name=name,
        description=description or name,
        truth=truth,
        zone=zone,
        duration_s=round(end, 3),
        events=shifted,
        expect=(expect,),
        path=SCENARIO_DIR / f"{name}.yaml",
        **kw,
    )


# ------------------------------------------------------------------ nuisances


def cooking_short(rng: random.Random, i: int) -> Scenario:
    """Cooking fumes, burnt toast, kettle steam: one puff of 2-25 s."""
    zone = rng.choice(
        ["classroom-12", "classroom-14", "staff-room", "kitchen", "storeroom", "music-room"]
    )
    dev = SMOKE[zone][0]
    t0 = rng.uniform(20, 60)
    ev = _trip(dev, t0, rng.uniform(2, 25))
    return _scenario(f"gen-cooking-short-{i}", "nuisance", zone, ev, rng)


def aerosol(rng: random.Random, i: int) -> Scenario:
    """Aerosol spray (deodorant, cleaning spray): one to three sprays of 3-15 s."""
    zone = rng.choice(
        ["classroom-12", "classroom-14", "staff-room", "corridor", "storeroom", "music-room"]
    )
    dev = SMOKE[zone][0]
    t = rng.uniform(20, 60)
    ev: list[Event] = []
    for _ in range(rng.randint(1, 3)):
        d = rng.uniform(3, 15)
        ev += _trip(dev, t, d)
        t += d + rng.uniform(3, 20)
    return _scenario(f"gen-aerosol-{i}", "nuisance", zone, ev, rng)


def shower_steam_long(rng: random.Random, i: int) -> Scenario:
    """Shower steam after PE holding the changing room's detector 45-90 s."""
    t0 = rng.uniform(20, 60)
    ev = _trip("changing-smoke", t0, rng.uniform(45, 90))
    return _scenario(f"gen-shower-steam-long-{i}", "nuisance", "changing-room", ev, rng)


def steam_retrip(rng: random.Random, i: int) -> Scenario:
    """Steam (or smoke from cooking) that re-trips a resettable detector 30-90 s
    after its reset: a first puff of 3-20 s, then one of 3-30 s."""
    zone = rng.choice(["classroom-12", "staff-room", "corridor", "kitchen", "music-room"])
    dev = SMOKE[zone][0]
    t0 = rng.uniform(20, 60)
    ev = _trip(dev, t0, rng.uniform(3, 20))
    ev += _trip(dev, t0 + rng.uniform(31, 90), rng.uniform(3, 30))
    return _scenario(f"gen-steam-retrip-{i}", "nuisance", zone, ev, rng)


def recurring_trips(rng: random.Random, i: int) -> Scenario:
    """Insects or dust in the chamber: trips of 1-4 s every 8-40 s for 2-8 minutes."""
    zone = rng.choice(list(SMOKE))
    dev = SMOKE[zone][0]
    t = rng.uniform(20, 60)
    end = t + rng.uniform(120, 480)
    ev: list[Event] = []
    while t < end:
        d = rng.uniform(1, 4)
        ev += _trip(dev, t, d)
        t += d + rng.uniform(8, 40)
    return _scenario(f"gen-recurring-trips-{i}", "nuisance", zone, ev, rng)


def dust_burst_two(rng: random.Random, i: int) -> Scenario:
    """A burst of dust (works, sweeping) tripping both workshop detectors within a
    second of each other for 2-9 s; one to three bursts 10-60 s apart."""
    t = rng.uniform(20, 60)
    ev: list[Event] = []
    for _ in range(rng.randint(1, 3)):
        lag = rng.uniform(0, 1)
        first, second = rng.sample(["workshop-smoke-1", "workshop-smoke-2"], 2)
        ev += _trip(first, t, rng.uniform(2, 9))
        ev += _trip(second, t + lag, rng.uniform(2, 9))
        t += rng.uniform(10, 60)
    return _scenario(f"gen-dust-burst-two-{i}", "nuisance", "workshop", ev, rng)


def dirty_service(rng: random.Random, i: int) -> Scenario:
    """The issue's corridor detector: service bit set, trips 3-4 s every ~30 s."""
    zone = rng.choice(["corridor", "classroom-12", "kitchen", "staff-room"])
    dev = SMOKE[zone][0]
    ev = [_ev(rng.uniform(0, 10), device=dev, set={"service_alarm": True})]
    t = rng.uniform(20, 60)
    end = t + rng.uniform(120, 600)
    while t < end:
        d = rng.uniform(3, 4)
        ev += _trip(dev, t, d)
        t += rng.uniform(25, 35)
    return _scenario(f"gen-dirty-service-{i}", "nuisance", zone, ev, rng)


def dirty_no_bit(rng: random.Random, i: int) -> Scenario:
    """A dirty detector that does not say so: trips of 2-6 s every 20-60 s."""
    zone = rng.choice(["classroom-14", "storeroom", "changing-room", "staff-room"])
    dev = SMOKE[zone][0]
    t = rng.uniform(20, 60)
    end = t + rng.uniform(150, 600)
    ev: list[Event] = []
    while t < end:
        d = rng.uniform(2, 6)
        ev += _trip(dev, t, d)
        t += d + rng.uniform(20, 60)
    return _scenario(f"gen-dirty-no-bit-{i}", "nuisance", zone, ev, rng)


def cooking_camera(rng: random.Random, i: int) -> Scenario:
    """Breakfast in the kitchen: steam trips the detector for 5-40 s and the
    camera's vote passes "smoke" for 4-20 s; the cooker warms the room 0-4 C."""
    t0 = rng.uniform(20, 60)
    ev = _trip("kitchen-smoke", t0, rng.uniform(5, 40))
    v0 = t0 + rng.uniform(-5, 10)
    v1 = v0 + rng.uniform(4, 20)
    area = rng.randint(1500, 6000)
    ev.append(
        _ev(
            v0,
            camera="cam-kitchen",
            video={
                "cls": "smoke",
                "score": rng.uniform(0.5, 0.8),
                "area": area,
                "every_s": 3.0,
                "until": v1,
                "grow_to": int(area * rng.uniform(0.8, 1.3)),
            },
        )
    )
    ev.append(_ev(v1 + 1, camera="cam-kitchen", video="end"))
    ev.append(
        _ev(
            t0 - 10,
            device="kitchen-heat",
            ramp={"point": "temperature", "to": 24 + rng.uniform(0, 4), "over_s": 60},
        )
    )
    return _scenario(
        f"gen-cooking-camera-{i}",
        "nuisance",
        "kitchen",
        ev,
        rng,
        initial={"kitchen-heat": {"temperature": 22.0}},
    )


def heating_test(rng: random.Random, i: int) -> Scenario:
    """A maintenance heating test of the kitchen heat detector (heat gun 10-25 s)."""
    t0 = rng.uniform(20, 60)
    d = rng.uniform(10, 25)
    ev = [
        _ev(t0, device="kitchen-heat", ramp={"point": "temperature", "to": 70, "over_s": d}),
        _ev(t0 + d * 0.8, device="kitchen-heat", set={"heat_alarm": True}),
        _ev(t0 + d, device="kitchen-heat", set={"heat_alarm": False}),
        _ev(t0 + d, device="kitchen-heat", ramp={"point": "temperature", "to": 23, "over_s": 120}),
    ]
    return _scenario(
        f"gen-heating-test-{i}",
        "nuisance",
        "kitchen",
        ev,
        rng,
        initial={"kitchen-heat": {"temperature": 22.0}},
    )


def motor_inrush(rng: random.Random, i: int) -> Scenario:
    """Motor starts: leakage spikes over the setpoint for one poll, 1-5 times."""
    t = rng.uniform(20, 60)
    ev: list[Event] = []
    for _ in range(rng.randint(1, 5)):
        ev.append(_ev(t, device="main-board-leakage", set={"leakage_l1": rng.uniform(320, 900)}))
        ev.append(
            _ev(t + rng.uniform(0.5, 1.9), device="main-board-leakage", set={"leakage_l1": 120})
        )
        t += rng.uniform(30, 120)
    return _scenario(
        f"gen-motor-inrush-{i}",
        "nuisance",
        "electrical-room",
        ev,
        rng,
        initial={"main-board-leakage": {"leakage_l1": 120, "setpoint_l1": 300}},
    )


def sunlight(rng: random.Random, i: int) -> Scenario:
    """Low sun on the floor: the camera's vote passes "fire" for 2-15 s, 1-4
    times 20-120 s apart; the region does not grow. No detector sees anything."""
    cam, zone = rng.choice(
        [("cam-gym", "gym"), ("cam-classroom12", "classroom-12"), ("cam-storeroom", "storeroom")]
    )
    t = rng.uniform(20, 60)
    ev: list[Event] = []
    for _ in range(rng.randint(1, 4)):
        d = rng.uniform(2, 15)
        area = rng.randint(2000, 8000)
        ev.append(
            _ev(
                t,
                camera=cam,
                video={
                    "cls": "fire",
                    "score": rng.uniform(0.55, 0.7),
                    "area": area,
                    "every_s": 2.0,
                    "until": t + d,
                    "grow_to": int(area * rng.uniform(0.7, 1.2)),
                },
            )
        )
        ev.append(_ev(t + d + 0.5, camera=cam, video="end"))
        t += d + rng.uniform(20, 120)
    return _scenario(f"gen-sunlight-{i}", "nuisance", zone, ev, rng)


def glitch(rng: random.Random, i: int) -> Scenario:
    """A single-poll glitch of the alarm bit."""
    zone = rng.choice(list(SMOKE))
    ev = _trip(SMOKE[zone][0], rng.uniform(20, 60), rng.uniform(0.1, 0.9))
    return _scenario(f"gen-glitch-{i}", "nuisance", zone, ev, rng)


NUISANCE_FAMILIES: dict[str, Family] = {
    "cooking-short": cooking_short,
    "aerosol": aerosol,
    "shower-steam-long": shower_steam_long,
    "steam-retrip": steam_retrip,
    "recurring-trips": recurring_trips,
    "dust-burst-two": dust_burst_two,
    "dirty-service": dirty_service,
    "dirty-no-bit": dirty_no_bit,
    "cooking-camera": cooking_camera,
    "heating-test": heating_test,
    "motor-inrush": motor_inrush,
    "sunlight": sunlight,
    "glitch": glitch,
}


# ---------------------------------------------------------------------- fires


def _video(cam: str, at: float, until: float, cls: str, area: int, grow_to: int) -> Event:
    return _ev(
        at,
        camera=cam,
        video={
            "cls": cls,
            "score": 0.85,
            "area": area,
            "every_s": 2.0,
            "until": until,
            "grow_to": grow_to,
        },
    )


# the largest flame region a camera reports: a third of a 1280 x 720 view
FLAME_VIEW_CAP = 300_000


# False: flames grow linearly 4-20x over 300 s, the model before 2026-12-06
# (bench/engine_corpus.py --linear-flames, to show what the growth model changes)
FLAME_GROWTH = True


def _flames(cam: str, ignition: float, at: float, until: float, area: int) -> Event:
    """Flames of a free-burning fire, first seen at ``at`` with ``area``
    pixels, growing as the fire does (timeline's ``growth: flame``)."""
    if not FLAME_GROWTH:
        grow = area * random.Random(f"{cam}{at}").randint(4, 20)
        return _video(cam, at, at + 300, "fire", area, grow)
    return _ev(
        at,
        camera=cam,
        video={
            "cls": "fire",
            "score": 0.85,
            "area": area,
            "every_s": 2.0,
            "until": until,
            "grow_to": FLAME_VIEW_CAP,
            "growth": "flame",
            "ignition": ignition,
        },
    )


def fast_flaming(rng: random.Random, i: int) -> Scenario:
    """A flaming fire (bin, curtain, sofa): the detector trips 5-40 s after
    ignition and stays; a camera, where there is one, sees flames 2-20 s
    after ignition, growing; the workshop's second detector follows."""
    zone = rng.choice([*SMOKE, "workshop"])
    ign = rng.uniform(20, 60)
    ev: list[Event] = []
    if zone == "workshop":
        a, b = rng.sample(["workshop-smoke-1", "workshop-smoke-2"], 2)
        ev.append(_ev(ign + rng.uniform(5, 30), device=a, set=_alarm(a, True)))
        ev.append(_ev(ign + rng.uniform(30, 60), device=b, set=_alarm(b, True)))
    else:
        dev, _res, cam = SMOKE[zone]
        ev.append(_ev(ign + rng.uniform(5, 40), device=dev, set=_alarm(dev, True)))
        if cam is not None and rng.random() < 0.85:  # sometimes the camera looks elsewhere
            v0 = ign + rng.uniform(2, 20)
            ev.append(_flames(cam, ign, v0, v0 + 300, rng.randint(800, 3000)))
        if zone == "kitchen":
            ev.append(
                _ev(
                    ign,
                    device="kitchen-heat",
                    ramp={"point": "temperature", "to": 90, "over_s": 180},
                )
            )
    return _scenario(
        f"gen-fast-flaming-{i}",
        "fire",
        zone,
        ev,
        rng,
        tail_s=150,
        initial={"kitchen-heat": {"temperature": 22.0}},
    )


def slow_smoulder(rng: random.Random, i: int) -> Scenario:
    """A smoulder building over 10 minutes: the detector first flickers near its
    threshold (0-5 trips of 5-30 s, 2-10 s apart), then stays in alarm; a camera
    sees the smoke, if at all, 10-120 s after the first trip."""
    zone = rng.choice(list(SMOKE))
    dev, _res, cam = SMOKE[zone]
    t = rng.uniform(300, 600)  # smouldering unseen before this
    first = t
    ev: list[Event] = []
    for _ in range(rng.randint(0, 5)):
        d = rng.uniform(5, 30)
        ev += _trip(dev, t, d, level=False)
        t += d + rng.uniform(2, 10)
    ev.append(_ev(t, device=dev, set=_alarm(dev, True)))
    if dev in ANALOG:  # the obscuration climbs for ten minutes up to the first trip
        s0 = max(0.0, first - 600)
        ev.append(
            _ev(s0, device=dev, ramp={"point": ANALOG[dev][3], "to": 3.0, "over_s": first - s0})
        )
        ev.append(_ev(first, device=dev, ramp={"point": ANALOG[dev][3], "to": 6.0, "over_s": 300}))
    if cam is not None and rng.random() < 0.6:
        v0 = first + rng.uniform(10, 120)
        area = rng.randint(1500, 4000)
        ev.append(_video(cam, v0, v0 + 200, "smoke", area, int(area * rng.uniform(1.0, 1.4))))
    return _scenario(f"gen-slow-smoulder-{i}", "fire", zone, ev, rng, tail_s=150)


def electrical_cabinet(rng: random.Random, i: int) -> Scenario:
    """A loose terminal in the cabinet: cable temperature and leakage climb for
    1-4 minutes, then smoke reaches the room's detector and stays."""
    t0 = rng.uniform(10, 40)
    climb = rng.uniform(60, 240)
    ev = [
        _ev(
            t0,
            device="cabinet-ef",
            ramp={"point": "t1", "to": rng.uniform(80, 120), "over_s": climb},
        ),
        _ev(
            t0 + 10,
            device="cabinet-ef",
            ramp={"point": "leakage", "to": rng.uniform(320, 600), "over_s": climb},
        ),
        _ev(
            t0 + climb * rng.uniform(0.6, 1.2), device="elec-smoke", set=_alarm("elec-smoke", True)
        ),
    ]
    return _scenario(
        f"gen-electrical-cabinet-{i}",
        "fire",
        "electrical-room",
        ev,
        rng,
        tail_s=150,
        initial={
            "cabinet-ef": {
                "leakage": 80,
                "t1": 35,
                "t2": 33,
                "t3": 32,
                "t4": 31,
                "leakage_setpoint": 300,
                "temp_setpoint": 70,
            },
            "main-board-leakage": {"leakage_l1": 120, "setpoint_l1": 300},
        },
    )


def heat_only(rng: random.Random, i: int) -> Scenario:
    """A clean-burning fire (fat, alcohol) in the kitchen: no smoke alarm, the
    heat detector's temperature climbs 20-60 C/min and it alarms at 57 C."""
    t0 = rng.uniform(20, 60)
    rate_c_min = rng.uniform(20, 60)
    over = (90 - 22) / rate_c_min * 60
    at_alarm = t0 + (57 - 22) / rate_c_min * 60
    ev = [
        _ev(t0, device="kitchen-heat", ramp={"point": "temperature", "to": 90, "over_s": over}),
        _ev(at_alarm, device="kitchen-heat", set={"heat_alarm": True}),
    ]
    return _scenario(
        f"gen-heat-only-{i}",
        "fire",
        "kitchen",
        ev,
        rng,
        tail_s=150,
        initial={"kitchen-heat": {"temperature": 22.0}},
    )


def camera_only(rng: random.Random, i: int) -> Scenario:
    """A fire only a camera sees (gym, or a zone whose detector is far away),
    held 30-300 s: smoke, growing 1-6x or not; or flames, seen 2-20 s after
    ignition, either whole (growing as a free-burning fire does) or, one time
    in three, partly hidden (behind shelving: the seen region stays 1-1.3x)."""
    cam, zone = rng.choice([("cam-gym", "gym"), ("cam-gym", "gym"), ("cam-storeroom", "storeroom")])
    t0 = rng.uniform(20, 60)
    area = rng.randint(1000, 4000)
    until = t0 + rng.uniform(30, 300)
    cls = rng.choice(["fire", "smoke"])
    if cls == "fire" and rng.random() < 2 / 3:
        ev = [_flames(cam, t0 - rng.uniform(2, 20), t0, until, area)]
    else:
        grow = area * (rng.uniform(1.0, 6.0) if cls == "smoke" else rng.uniform(1.0, 1.3))
        ev = [_video(cam, t0, until, cls, area, int(grow))]
    return _scenario(f"gen-camera-only-{i}", "fire", zone, ev, rng, tail_s=150)


def detector_offline(rng: random.Random, i: int) -> Scenario:
    """The fire destroys the detector: in alarm, then it stops answering 2-40 s later."""
    zone = rng.choice(list(SMOKE))
    dev, _res, cam = SMOKE[zone]
    t0 = rng.uniform(20, 60)
    ev = [
        _ev(t0, device=dev, set=_alarm(dev, True)),
        _ev(t0 + rng.uniform(2, 40), device=dev, offline=True),
    ]
    if cam is not None and rng.random() < 0.5:
        v0 = t0 + rng.uniform(0, 30)
        area = rng.randint(1500, 4000)
        ev.append(_video(cam, v0, v0 + 200, "smoke", area, int(area * rng.uniform(1.0, 3.0))))
    return _scenario(f"gen-detector-offline-{i}", "fire", zone, ev, rng, tail_s=150)


FIRE_FAMILIES: dict[str, Family] = {
    "fast-flaming": fast_flaming,
    "slow-smoulder": slow_smoulder,
    "electrical-cabinet": electrical_cabinet,
    "heat-only": heat_only,
    "camera-only": camera_only,
    "detector-offline": detector_offline,
}


def generate(seed: int, n_nuisance: int, n_fire: int) -> list[tuple[str, Scenario]]:
    """``n_nuisance`` nuisance and ``n_fire`` fire scenarios, (family, scenario),
    cycling through the families; deterministic for a seed."""
    rng = random.Random(seed)
    out: list[tuple[str, Scenario]] = []
    nf = list(NUISANCE_FAMILIES.items())
    for k in range(n_nuisance):
        name, fam = nf[k % len(nf)]
        out.append((name, fam(rng, k)))
    ff = list(FIRE_FAMILIES.items())
    for k in range(n_fire):
        name, fam = ff[k % len(ff)]
        out.append((name, fam(rng, k)))
    return out
