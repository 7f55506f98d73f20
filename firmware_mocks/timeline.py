"""Scenarios as data: a site, a timeline of point values, expected decisions.

A scenario file (firmware_mocks/scenarios/*.yaml) says what the physical world
does, in the words of the device profiles: which point of which device takes
which engineering value when (steps and ramps), when a device stops
answering, what a camera's vote confirms (class, score, region area over
time), what a panel prints. It never says what a driver would send: that is
derived here the way a driver derives it, so that the same timeline can drive
the firmware mocks end to end (``Timeline.values_at`` gives every point's
engineering value at a time, ready for a mock's ``set_point``).

Three layers, usable on their own:

* ``Scenario`` / ``load_scenario``: the validated file (pydantic, unknown keys
  are errors that name the key).
* ``Timeline``: the interpreter: point values over time, online/offline,
  camera and panel events.
* ``replay``: drives the confirmation engine in simulated time with a driver
  emulation (poll every ``poll_interval_s``; StateChange on edges and once
  when a device first answers, via the profile point's ``condition`` /
  ``active_when`` / flags; a Reading per quantity point per poll with the
  setpoint of its ``setpoint_point``; OFFLINE after ``offline_after`` failed
  polls; a reset command blanks the detector's alarm for
  ``reset_restart_s``) and ``check`` compares the decisions with the
  expectations.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import Field, ValidationError, model_validator

from agent.events import (
    Command,
    CommandResult,
    Condition,
    Decision,
    DecisionType,
    DeviceKind,
    Observation,
    Reading,
    Region,
    StateChange,
    VideoClass,
    VideoDetection,
)
from agent.model import Strict
from agent.siteconfig import LoadedSite, load_site
from agent.siteconfig.models import RtuBus, TcpBus
from drivers.profile import DataType, ModbusProfile, PanelProfile, Point

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
WALL0 = 1_800_000_000.0  # wall clock at scenario time 0 (2027-01-15), fixed for determinism
MONO0 = 1000.0  # monotonic clock at scenario time 0

Value = float | int | bool


class PointSetter(Protocol):
    """What a firmware mock device offers the timeline."""

    def set_point(self, point_name: str, value: Value) -> None: ...


# ---------------------------------------------------------------------- format


class Ramp(Strict):
    point: str
    to: float
    over_s: float = Field(gt=0)


class VideoSpec(Strict):
    cls: VideoClass = VideoClass.SMOKE
    score: float = Field(default=0.8, ge=0, le=1)
    area: int = Field(default=2000, ge=1, description="region area in pixels")
    every_s: float | None = Field(
        default=None, gt=0, description="repeat as updates every this many seconds"
    )
    until: float | None = Field(default=None, description="last update at this scenario time")
    grow_to: int | None = Field(
        default=None,
        ge=1,
        description="linear growth: area at `until`; `growth: flame`: the largest area "
        "(the flame fills the view)",
    )
    growth: Literal["linear", "flame"] = Field(
        default="linear",
        description="how the region grows: linearly from `area` to `grow_to`, or as a "
        "free-burning flame: area proportional to (t - ignition)^1.8 from `area` at `at`",
    )
    ignition: float | None = Field(
        default=None, ge=0, description="scenario time of ignition (`growth: flame`)"
    )

    @model_validator(mode="after")
    def _flame_needs_ignition(self) -> VideoSpec:
        if self.growth == "flame" and self.ignition is None:
            raise ValueError("`growth: flame` needs `ignition` (scenario seconds)")
        return self


class Event(Strict):
    at: float = Field(ge=0, description="scenario seconds")
    device: str | None = None
    camera: str | None = None
    panel: str | None = None
    set: dict[str, Value] | None = Field(default=None, description="point -> engineering value")
    ramp: Ramp | None = None
    offline: bool | None = None
    video: VideoSpec | Literal["end"] | None = None
    fault: Literal["stale", "frozen", "offline"] | None = None
    active: bool = True
    line: str | None = None
    note: str = ""

    @model_validator(mode="after")
    def _one_thing(self) -> Event:
        targets = [x for x in (self.device, self.camera, self.panel) if x is not None]
        if len(targets) != 1:
            raise ValueError("an event names exactly one of device, camera, panel")
        if self.device is not None and (self.set, self.ramp, self.offline) == (None, None, None):
            raise ValueError("a device event needs set, ramp or offline")
        if self.camera is not None and (self.video is None) == (self.fault is None):
            raise ValueError("a camera event needs video or fault (one of them)")
        if self.panel is not None and self.line is None:
            raise ValueError("a panel event needs line")
        return self


class Expect(Strict):
    type: DecisionType
    zone: str | None = None
    count: int | None = Field(default=None, ge=0, description="exact number; none: at least one")
    by_s: float | None = Field(default=None, description="first match at or before this time")
    after_s: float | None = Field(default=None, description="first match at or after this time")
    verified: bool | None = None
    rule: str | None = None
    reason_contains: str | None = None


class Scenario(Strict):
    name: str
    description: str
    truth: Literal["fire", "nuisance", "electrical", "fault", "normal"]
    zone: str = Field(description="the zone the truth is about")
    site: str = "sites/school.yaml"
    duration_s: float = Field(gt=0, le=86400)
    reset_restart_s: float = Field(
        default=3.0, ge=0, le=60, description="a reset blanks the alarm bit this long"
    )
    reset_fails: tuple[str, ...] = Field(
        default=(), description="devices that refuse the reset command (write-protected)"
    )
    initial: dict[str, dict[str, Value]] = Field(default_factory=dict)
    events: tuple[Event, ...] = ()
    expect: tuple[Expect, ...] = Field(min_length=1)
    honest_note: str = Field(default="", description="what the engine cannot do here, and why")
    path: Path | None = None


class ScenarioError(Exception):
    """A scenario file is not usable; the message names the file and the problem."""


def load_scenario(path: Path | str) -> Scenario:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ScenarioError(f"{path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping (name:, events:, expect:)")
    try:
        return Scenario.model_validate({**data, "path": path})
    except ValidationError as e:
        lines = [
            f"{path}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
            for err in e.errors(include_url=False)
        ]
        raise ScenarioError("\n".join(lines)) from None


def corpus(directory: Path = SCENARIO_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


_SITES: dict[Path, LoadedSite] = {}


def scenario_site(sc: Scenario) -> LoadedSite:
    base = sc.path.parent if sc.path is not None else SCENARIO_DIR
    p = (base / sc.site).resolve()
    if p not in _SITES:
        _SITES[p] = load_site(p)
    return _SITES[p]


# ------------------------------------------------------------------ interpreter


def _inactive(point: Point) -> Value:
    """The value of a point at rest: conditions inactive, measurements 0."""
    if point.type is DataType.BOOL:
        return not point.active_when
    if point.flags:
        return sum(1 << f.bit for f in point.flags if not f.active_when)
    return 0


@dataclass
class _Series:
    """One point's value over time: steps and linear ramps."""

    times: list[float] = field(default_factory=list)
    starts: list[Value] = field(default_factory=list)  # value right at `times[i]`
    ramps: list[tuple[float, float] | None] = field(default_factory=list)  # (to, over_s)

    def at(self, t: float, initial: Value) -> Value:
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return initial
        v = self.starts[i]
        r = self.ramps[i]
        if r is None:
            return v
        to, over = r
        frac = min(1.0, (t - self.times[i]) / over)
        return float(v) + (to - float(v)) * frac


class Timeline:
    """The physical world of a scenario: point values over time, by device."""

    def __init__(self, scenario: Scenario, site: LoadedSite) -> None:
        self.scenario = scenario
        self.site = site
        self.profiles: dict[str, ModbusProfile] = {}
        self.panels: dict[str, PanelProfile] = {}
        for _bus, dev in site.config.devices():
            self.profiles[dev.name] = site.modbus_profile(dev.profile)
        for pb in site.config.panels():
            self.panels[pb.name] = site.panel_profile(pb.profile)
        cameras = {c.name for c in site.config.cameras}
        self.initial: dict[tuple[str, str], Value] = {}
        for name, prof in self.profiles.items():
            for p in prof.points:
                self.initial[(name, p.name)] = _inactive(p)
        where = f"scenario {scenario.name}"
        for dev_name, values in scenario.initial.items():
            for point, v in values.items():
                self._check_point(dev_name, point, where)
                self.initial[(dev_name, point)] = v
        self.series: dict[tuple[str, str], _Series] = {}
        self.offline: dict[str, list[tuple[float, bool]]] = {}
        self.camera_events: list[Event] = []
        self.panel_events: list[Event] = []
        for ev in sorted(scenario.events, key=lambda e: e.at):
            if ev.device is not None:
                if ev.device not in self.profiles:
                    raise ScenarioError(f"{where}: unknown device {ev.device!r}")
                for point, v in (ev.set or {}).items():
                    self._check_point(ev.device, point, where)
                    self._add(ev.device, point, ev.at, v, None)
                if ev.ramp is not None:
                    self._check_point(ev.device, ev.ramp.point, where)
                    pt = self.profiles[ev.device].point_by_name[ev.ramp.point]
                    if pt.type is DataType.BOOL or pt.flags:
                        raise ScenarioError(
                            f"{where}: {ev.device}.{ev.ramp.point} is a state, not a measured "
                            "value: use `set`, not `ramp`"
                        )
                    start = self.value(ev.device, ev.ramp.point, ev.at)
                    self._add(ev.device, ev.ramp.point, ev.at, start, (ev.ramp.to, ev.ramp.over_s))
                if ev.offline is not None:
                    self.offline.setdefault(ev.device, []).append((ev.at, ev.offline))
            elif ev.camera is not None:
                if ev.camera not in cameras:
                    raise ScenarioError(f"{where}: unknown camera {ev.camera!r}")
                self.camera_events.append(ev)
            elif ev.panel is not None:
                if ev.panel not in self.panels:
                    raise ScenarioError(f"{where}: unknown panel {ev.panel!r}")
                self.panel_events.append(ev)

    def _check_point(self, device: str, point: str, where: str) -> None:
        prof = self.profiles.get(device)
        if prof is None:
            raise ScenarioError(f"{where}: unknown device {device!r}")
        if point not in prof.point_by_name:
            raise ScenarioError(
                f"{where}: device {device!r} ({prof.model}) has no point {point!r}; "
                f"points: {', '.join(prof.point_by_name)}"
            )

    def _add(
        self, device: str, point: str, at: float, v: Value, ramp: tuple[float, float] | None
    ) -> None:
        s = self.series.setdefault((device, point), _Series())
        s.times.append(at)
        s.starts.append(v)
        s.ramps.append(ramp)

    def value(self, device: str, point: str, t: float) -> Value:
        """Engineering value of ``device``'s ``point`` at scenario time ``t``."""
        init = self.initial[(device, point)]
        s = self.series.get((device, point))
        return init if s is None else s.at(t, init)

    def online(self, device: str, t: float) -> bool:
        state = True
        for at, off in self.offline.get(device, ()):
            if at > t:
                break
            state = not off
        return state

    def values_at(self, t: float) -> dict[str, dict[str, Value]]:
        """Every device's point values at ``t`` (what a firmware mock should hold)."""
        return {
            dev: {p.name: self.value(dev, p.name, t) for p in prof.points}
            for dev, prof in self.profiles.items()
        }

    def apply(self, t: float, mocks: Mapping[str, PointSetter]) -> int:
        """Set every point of every device in ``mocks`` (device name -> mock) to
        its value at ``t``; returns how many points were set. Whether a device
        answers at all is ``online(device, t)``: the caller silences its mock."""
        n = 0
        for dev, mock in mocks.items():
            prof = self.profiles.get(dev)
            if prof is None:
                raise ScenarioError(f"scenario {self.scenario.name}: no device {dev!r} in its site")
            for p in prof.points:
                mock.set_point(p.name, self.value(dev, p.name, t))
                n += 1
        return n

    def change_times(self) -> list[float]:
        """Scenario times at which something changes (ramps: their start and end)."""
        ts: set[float] = {0.0}
        for s in self.series.values():
            for t, r in zip(s.times, s.ramps, strict=True):
                ts.add(t)
                if r is not None:
                    ts.add(t + r[1])
        for lst in self.offline.values():
            ts.update(t for t, _ in lst)
        ts.update(e.at for e in (*self.camera_events, *self.panel_events))
        return sorted(ts)


# -------------------------------------------------------------- driver emulation


def _kind(site: LoadedSite, device: str) -> DeviceKind:
    for _bus, dev in site.config.devices():
        if dev.name == device:
            return dev.kind or site.modbus_profile(dev.profile).device_kind
    raise KeyError(device)


@dataclass
class _DeviceSim:
    name: str
    zone: str
    kind: DeviceKind
    profile: ModbusProfile
    poll_s: float
    offline_after: int
    offline_poll_s: float
    fails: int = 0
    offline_reported: bool = False
    known: dict[tuple[Condition, str], bool] = field(default_factory=dict)
    answered: bool = False
    blank_alarm_until: float = -1.0


@dataclass
class ReplayResult:
    scenario: Scenario
    decisions: list[tuple[float, Decision]]
    suppressed: list[tuple[float, Any]]
    commands: list[tuple[float, Command]]
    observations: int
    first_raw_alarm: dict[str, float]  # zone -> scenario time of the first raw alarm
    feed_calls: int = 0

    def of(self, type_: DecisionType, zone: str | None = None) -> list[tuple[float, Decision]]:
        return [
            (t, d)
            for t, d in self.decisions
            if d.type is type_ and (zone is None or d.zone == zone)
        ]


def replay(
    scenario: Scenario,
    engine_factory: Callable[[LoadedSite], Any] | None = None,
    *,
    site: LoadedSite | None = None,
    observe: Callable[[Observation], None] | None = None,
) -> ReplayResult:
    """Run ``scenario`` through a fresh engine in simulated time.

    ``engine_factory(site)`` builds the engine (default: agent.engine.Engine);
    ``observe`` sees every observation fed, in order (for recording traces).
    """
    if site is None:
        site = scenario_site(scenario)
    if engine_factory is None:
        from agent.engine import Engine

        engine_factory = Engine
    engine = engine_factory(site)
    tl = Timeline(scenario, site)
    tick_s = site.config.engine.tick_s
    sims: dict[str, _DeviceSim] = {}
    for _bus, dev in site.config.devices():
        bus = _bus
        assert isinstance(bus, RtuBus | TcpBus)
        sims[dev.name] = _DeviceSim(
            name=dev.name,
            zone=dev.zone,
            kind=_kind(site, dev.name),
            profile=site.modbus_profile(dev.profile),
            poll_s=dev.poll_interval_s,
            offline_after=bus.offline_after,
            offline_poll_s=bus.offline_poll_s,
        )
    camera_zone = {c.name: c.zone for c in site.config.cameras}
    panel_cfg = {p.name: p for p in site.config.panels()}
    camera_classes: dict[str, dict[VideoClass, None]] = {}  # camera -> classes going

    seq = itertools.count()
    queue: list[tuple[float, int, str, Any]] = []

    def push(t: float, what: str, payload: Any) -> None:
        heapq.heappush(queue, (t, next(seq), what, payload))

    for i, name in enumerate(sims):
        # drivers do not poll in step: spread first polls over the interval
        push((0.05 + 0.13 * i) % sims[name].poll_s, "poll", name)
    for ev in tl.camera_events:
        for t, payload in _expand_camera(ev):
            push(t, "camera", payload)
    for ev in tl.panel_events:
        push(ev.at, "panel", ev)
    push(0.0, "tick", None)

    result = ReplayResult(scenario, [], [], [], 0, {})
    panel_state: dict[tuple[str, str, Condition], bool] = {}

    def feed(obs: Observation, t: float) -> None:
        result.observations += 1
        if observe is not None:
            observe(obs)
        _note_raw(obs, t)
        handle(engine.feed(obs, MONO0 + t, WALL0 + t), t)

    def _note_raw(obs: Observation, t: float) -> None:
        raw = (
            isinstance(obs, StateChange)
            and obs.active
            and obs.condition is Condition.ALARM
            and obs.kind not in (DeviceKind.RESIDUAL_CURRENT, DeviceKind.ELECTRICAL_FIRE)
        ) or (isinstance(obs, VideoDetection) and obs.active and obs.confirmed)
        if raw:
            result.first_raw_alarm.setdefault(obs.zone, t)

    def handle(out: Any, t: float) -> None:
        for d in out.decisions:
            result.decisions.append((t, d))
        for s in out.suppressed:
            result.suppressed.append((t, s))
        for c in out.commands:
            result.commands.append((t, c))
            push(t + 0.05, "command", c)

    def obs_common(sim: _DeviceSim, t: float) -> dict[str, Any]:
        return {"source": sim.name, "zone": sim.zone, "wall": WALL0 + t, "mono": MONO0 + t}

    def poll(sim: _DeviceSim, t: float) -> float:
        """One poll; returns when the next one is due."""
        if not tl.online(sim.name, t):
            sim.fails += 1
            if sim.fails >= sim.offline_after and not sim.offline_reported:
                sim.offline_reported = True
                feed(
                    StateChange(
                        **obs_common(sim, t),
                        kind=sim.kind,
                        condition=Condition.OFFLINE,
                        active=True,
                        detail=f"no answer to {sim.fails} polls",
                    ),
                    t,
                )
            return sim.offline_poll_s if sim.offline_reported else sim.poll_s
        sim.fails = 0
        if sim.offline_reported:
            sim.offline_reported = False
            sim.known.clear()  # it answers again: tell its state afresh
            feed(
                StateChange(
                    **obs_common(sim, t), kind=sim.kind, condition=Condition.OFFLINE, active=False
                ),
                t,
            )
        conds: dict[tuple[Condition, str], tuple[bool, str]] = {}

        def cond(c: Condition, sub: str, active: bool, detail: str) -> None:
            prev = conds.get((c, sub))
            if prev is None or (active and not prev[0]):
                conds[(c, sub)] = (active, detail)

        readings: list[Reading] = []
        for p in sim.profile.points:
            v = tl.value(sim.name, p.name, t)
            if p.type is DataType.BOOL and p.condition is not None:
                active = bool(v) == p.active_when
                if p.condition is Condition.ALARM and t < sim.blank_alarm_until:
                    active = False  # just reset: the detector is restarting
                cond(p.condition, p.sub_point, active, p.detail)
            elif p.flags:
                word = int(v)
                for f in p.flags:
                    active = bool((word >> f.bit) & 1) == f.active_when
                    cond(f.condition, f.point, active, f.detail)
            elif p.quantity is not None:
                raw = round((float(v) - p.offset) / p.scale) if p.scale else 0
                sentinel = p.sentinels.get(raw)
                cond(Condition.FAULT, p.sub_point, sentinel is not None, sentinel or "")
                if sentinel is not None:
                    continue
                sp: float | None = None
                if p.setpoint_point is not None:
                    spv = float(tl.value(sim.name, p.setpoint_point, t))
                    sp = spv if spv > 0 else None
                readings.append(
                    Reading(
                        **obs_common(sim, t),
                        point=p.sub_point,
                        quantity=p.quantity,
                        value=float(v),
                        unit=p.unit,
                        setpoint=sp,
                    )
                )
        for (c, sub), (active, detail) in conds.items():
            if sim.known.get((c, sub)) == active:
                continue
            sim.known[(c, sub)] = active
            feed(
                StateChange(
                    **obs_common(sim, t),
                    point=sub,
                    kind=sim.kind,
                    condition=c,
                    active=active,
                    detail=detail if active else "",
                ),
                t,
            )
        for r in readings:
            feed(r, t)
        return sim.poll_s

    def command(cmd: Command, t: float) -> None:
        sim = sims.get(cmd.target)
        ok, detail = True, ""
        if sim is None or cmd.action not in sim.profile.commands:
            ok, detail = False, f"{cmd.target} has no command {cmd.action!r}"
        elif not tl.online(sim.name, t):
            ok, detail = False, "device not answering"
        elif sim.name in scenario.reset_fails:
            ok, detail = False, "exception 0x01 (illegal function): write protected"
        else:
            sim.blank_alarm_until = t + scenario.reset_restart_s
        feed(
            CommandResult(
                source=cmd.target,
                zone=sim.zone if sim else "",
                wall=WALL0 + t,
                mono=MONO0 + t,
                command_id=cmd.id,
                action=cmd.action,
                ok=ok,
                detail=detail,
            ),
            t,
        )

    def panel_line(ev: Event, t: float) -> None:
        assert ev.panel is not None and ev.line is not None
        prof = tl.panels[ev.panel]
        cfg = panel_cfg[ev.panel]
        for pat in prof.patterns:
            m = pat.compiled.search(ev.line)
            if m is None:
                continue
            gd = m.groupdict()
            if pat.all_points:
                for (pname, point, c), active in sorted(panel_state.items()):
                    if pname == ev.panel and c is pat.condition and active != pat.active:
                        panel_state[(pname, point, c)] = pat.active
                        feed(
                            StateChange(
                                source=ev.panel,
                                zone=cfg.points.get(point, cfg.zone),
                                wall=WALL0 + t,
                                mono=MONO0 + t,
                                point=point,
                                kind=pat.device_kind,
                                condition=c,
                                active=pat.active,
                            ),
                            t,
                        )
                return
            # a driver normalises "L1 A023" to the site config's "1/23"
            point = f"{int(gd['loop'])}/{int(gd['address'])}" if gd.get("loop") else ""
            panel_state[(ev.panel, point, pat.condition)] = pat.active
            feed(
                StateChange(
                    source=ev.panel,
                    zone=cfg.points.get(point, cfg.zone),
                    wall=WALL0 + t,
                    mono=MONO0 + t,
                    point=point,
                    kind=pat.device_kind,
                    condition=pat.condition,
                    active=pat.active,
                    detail=(gd.get("text") or "").strip(),
                ),
                t,
            )
            return

    while queue:
        t, _, what, payload = heapq.heappop(queue)
        if t > scenario.duration_s:
            break
        if what == "tick":
            handle(engine.tick(MONO0 + t, WALL0 + t), t)
            push(t + tick_s, "tick", None)
        elif what == "poll":
            sim = sims[payload]
            push(t + poll(sim, t), "poll", payload)
        elif what == "camera":
            cam, obs_kw = payload
            if obs_kw.get("end"):
                # "end": the camera's detection ended; a camera votes per class,
                # so each class it has going ends (none going: a smoke END)
                ending = camera_classes.pop(cam, None) or {VideoClass.SMOKE: None}
                for cls in ending:
                    feed(_camera_obs(cam, camera_zone[cam], t, {**obs_kw, "cls": cls}), t)
                continue
            if "spec" in obs_kw:
                camera_classes.setdefault(cam, {})[obs_kw["spec"].cls] = None
            feed(_camera_obs(cam, camera_zone[cam], t, obs_kw), t)
        elif what == "panel":
            panel_line(payload, t)
        elif what == "command":
            command(payload, t)
    return result


def _expand_camera(ev: Event) -> Iterable[tuple[float, tuple[str, dict[str, Any]]]]:
    assert ev.camera is not None
    if ev.fault is not None:
        yield ev.at, (ev.camera, {"fault": ev.fault, "active": ev.active})
        return
    if ev.video == "end":
        yield ev.at, (ev.camera, {"end": True})
        return
    v = ev.video
    assert isinstance(v, VideoSpec)
    if v.every_s is None or v.until is None:
        yield ev.at, (ev.camera, {"spec": v, "area": v.area})
        return
    n = max(0, math.floor((v.until - ev.at) / v.every_s + 1e-9))
    for k in range(n + 1):
        t = ev.at + k * v.every_s
        if v.growth == "flame":
            assert v.ignition is not None
            area = round(v.area * flame_growth(t - v.ignition, ev.at - v.ignition))
            if v.grow_to is not None:
                area = min(area, v.grow_to)
        else:
            frac = 0.0 if n == 0 else k / n
            area = round(v.area + ((v.grow_to or v.area) - v.area) * frac)
        yield t, (ev.camera, {"spec": v, "area": area})


# A free-burning fire spreads over its fuel at a roughly constant speed, so
# its burning area and heat release grow as t^2 (the "t-squared" fire of NFPA
# 72 / BS 7974); the flame's height grows as Q^0.4 (Heskestad), so the flame
# seen by a camera (width x height) grows about as t * t^0.8 = t^1.8. Its
# growth relative to the first sighting therefore depends only on how long
# after ignition the camera first sees it, whatever the fire's growth class.
FLAME_AREA_EXPONENT = 1.8


def flame_growth(age_s: float, first_seen_age_s: float) -> float:
    """The flame's seen area at ``age_s`` after ignition relative to its area
    when first seen, ``first_seen_age_s`` after ignition."""
    if first_seen_age_s <= 0:
        return 1.0
    return max(1.0, age_s / first_seen_age_s) ** FLAME_AREA_EXPONENT


def _camera_obs(cam: str, zone: str, t: float, kw: dict[str, Any]) -> Observation:
    common: dict[str, Any] = {"source": cam, "zone": zone, "wall": WALL0 + t, "mono": MONO0 + t}
    if "fault" in kw:
        return StateChange(
            **common,
            kind=DeviceKind.CAMERA,
            condition=Condition(kw["fault"]),
            active=kw["active"],
        )
    if kw.get("end"):
        return VideoDetection(
            **common,
            cls=kw.get("cls", VideoClass.SMOKE),
            score=0.0,
            confirmed=True,
            active=False,
        )
    spec: VideoSpec = kw["spec"]
    side = max(1, round(math.sqrt(kw["area"])))
    region = Region(
        x=100, y=100, w=side, h=max(1, round(kw["area"] / side)), score=spec.score, cls=spec.cls
    )
    return VideoDetection(
        **common,
        cls=spec.cls,
        score=spec.score,
        confirmed=True,
        active=True,
        regions=(region,),
        frame_size=(1280, 720),
        snapshot_jpeg=b"\xff\xd8" + f"{cam}@{t:.1f}".encode() + b"\xff\xd9",
    )


# ------------------------------------------------------------------ expectations


def check(result: ReplayResult) -> list[str]:
    """Every expectation the replay did not meet, as a sentence (empty: all met)."""
    problems: list[str] = []
    for ex in result.scenario.expect:
        hits = [
            (t, d)
            for t, d in result.decisions
            if d.type is ex.type and (ex.zone is None or d.zone == ex.zone)
        ]
        what = f"{ex.type.value}{' in ' + ex.zone if ex.zone else ''}"
        if ex.count is not None and len(hits) != ex.count:
            got = ", ".join(f"{d.zone}@{t:.1f}s ({d.reason})" for t, d in hits) or "none"
            problems.append(f"expected {ex.count} x {what}, got {len(hits)}: {got}")
            continue
        if ex.count is None and not hits:
            problems.append(f"expected {what}, got none")
            continue
        if not hits:
            continue
        t, d = hits[0]
        if ex.by_s is not None and t > ex.by_s:
            problems.append(f"{what} at {t:.1f} s, expected by {ex.by_s:g} s ({d.reason})")
        if ex.after_s is not None and t < ex.after_s:
            problems.append(f"{what} at {t:.1f} s, expected not before {ex.after_s:g} s")
        if ex.verified is not None and d.verified != ex.verified:
            problems.append(f"{what}: verified={d.verified}, expected {ex.verified}")
        if ex.rule is not None and d.details.get("rule") != ex.rule:
            problems.append(f"{what}: rule {d.details.get('rule')!r}, expected {ex.rule!r}")
        if ex.reason_contains is not None and ex.reason_contains not in d.reason:
            problems.append(f"{what}: reason {d.reason!r} lacks {ex.reason_contains!r}")
    return problems
