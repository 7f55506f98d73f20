"""Property tests: the engine is deterministic and never loses a persisting alarm."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.engine import Engine
from agent.events import (
    CommandResult,
    Condition,
    DecisionType,
    DeviceKind,
    Observation,
    Quantity,
    Reading,
    Region,
    StateChange,
    VideoClass,
    VideoDetection,
)
from tests.engine.engine_sim import WALL0, site

INDEX = site(stats_interval_s=600)
DETECTORS = ["s1", "s2", "h1", "n1"]
TICK_S = 0.5


def _obs(kind: str, t: float, src: str, flag: bool, value: float) -> Observation:
    common: dict[str, Any] = {"wall": WALL0 + t, "mono": t}
    if kind == "alarm":
        dev = INDEX.devices[src]
        return StateChange(
            source=src,
            zone=dev.zone,
            kind=dev.kind,
            condition=Condition.ALARM,
            active=flag,
            **common,
        )
    if kind == "offline":
        dev = INDEX.devices[src]
        return StateChange(
            source=src,
            zone=dev.zone,
            kind=dev.kind,
            condition=Condition.OFFLINE,
            active=flag,
            **common,
        )
    if kind == "temp":
        return Reading(
            source="h1", zone="z", quantity=Quantity.TEMPERATURE_C, value=value, unit="C", **common
        )
    if kind == "leak":
        return Reading(
            source="rc",
            zone="z2",
            point="loop1",
            quantity=Quantity.RESIDUAL_CURRENT_MA,
            value=value * 10,
            unit="mA",
            setpoint=300.0,
            **common,
        )
    if kind == "video":
        cam = "cam" if src in ("s1", "s2", "h1") else "cam2"
        return VideoDetection(
            source=cam,
            zone=INDEX.cameras[cam],
            cls=VideoClass.FIRE,
            score=0.7,
            confirmed=True,
            active=flag,
            regions=(Region(x=0, y=0, w=int(value) + 1, h=40, score=0.7, cls=VideoClass.FIRE),),
            **common,
        )
    if kind == "panel":
        return StateChange(
            source="panel",
            zone="z",
            point="1/24",
            kind=DeviceKind.MANUAL_CALL_POINT,
            condition=Condition.ALARM,
            active=flag,
            **common,
        )
    return CommandResult(source=src, zone="z", command_id="x", action="reset", ok=flag, **common)


event = st.tuples(
    st.floats(min_value=0, max_value=400, allow_nan=False),
    st.sampled_from(["alarm", "offline", "temp", "leak", "video", "panel", "result"]),
    st.sampled_from(DETECTORS),
    st.booleans(),
    st.floats(min_value=0, max_value=100, allow_nan=False),
)


def _run(events: list[Observation], end_s: float) -> list[tuple[str, Any]]:
    """Feed in time order with ticks; a comparable trace of everything produced."""
    engine = Engine(INDEX)
    trace: list[tuple[str, Any]] = []
    t_next = 0.0

    def take(out: Any, t: float) -> None:
        for d in out.decisions:
            dd = d.to_dict()
            del dd["id"]
            dd["details"].pop("of_id", None)  # the id of the decision a RESTORE ends
            for e in dd["evidence"]:
                del e["observation_id"]
            trace.append(("decision", (t, dd)))
        for c in out.commands:
            trace.append(("command", (t, c.target, c.action, c.mono)))
        for s in out.suppressed:
            sd = s.to_dict()
            for e in sd["evidence"]:
                del e["observation_id"]
            trace.append(("suppressed", (t, sd)))

    for obs in events:
        while t_next <= obs.mono:
            take(engine.tick(t_next, WALL0 + t_next), t_next)
            t_next += TICK_S
        take(engine.feed(obs, obs.mono, obs.wall), obs.mono)
    while t_next <= end_s:
        take(engine.tick(t_next, WALL0 + t_next), t_next)
        t_next += TICK_S
    return trace


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=60))
def test_same_input_same_output(raw: list[tuple[float, str, str, bool, float]]) -> None:
    raw.sort(key=lambda e: e[0])
    obs = [_obs(k, t, s, f, v) for t, k, s, f, v in raw]
    a = _run(obs, 800)
    b = _run(obs, 800)
    assert a == b


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(event, max_size=50),
    st.sampled_from(DETECTORS),
    st.floats(min_value=0, max_value=300, allow_nan=False),
)
def test_a_persisting_alarm_is_never_lost(
    raw: list[tuple[float, str, str, bool, float]], target: str, t0: float
) -> None:
    # noise may do anything except clear the target detector's alarm
    noise = [e for e in raw if not (e[1] == "alarm" and e[2] == target)]
    noise.append((t0, "alarm", target, True, 0.0))
    noise.sort(key=lambda e: e[0])
    obs = [_obs(k, t, s, f, v) for t, k, s, f, v in noise]
    zone = INDEX.devices[target].zone
    ceiling = INDEX.policies[zone].ceiling_s
    trace = _run(obs, t0 + ceiling + 5)
    fires = [
        t
        for kind, item in trace
        if kind == "decision"
        for t, d in [item]
        if d["type"] == DecisionType.FIRE_ALARM.value and d["zone"] == zone
    ]
    assert fires, f"alarm of {target} at {t0:.1f} s was never forwarded"
    assert min(fires) <= t0 + ceiling + TICK_S + 1e-9
    restores_after = [
        t
        for kind, item in trace
        if kind == "decision"
        for t, d in [item]
        if d["type"] == "restore"
        and d["zone"] == zone
        and d["details"].get("of") == "fire_alarm"
        and t > t0
    ]
    assert not restores_after, "a fire incident with a persisting alarm must not be restored"
