"""A frozen copy of the confirmation engine BEFORE issue 15 (the rule chain).

Kept only so that bench/engine_corpus.py measures the old rules and the new
evidence rules in the same run. Not used by the agent; do not change it.

The confirmation engine: a pure, deterministic state machine.

It is given observations and the current time, and returns what to forward
(decisions), what to ask of a device (commands: reset a detector for alarm
verification) and which nuisances it held back (suppressed). It does no I/O,
never sleeps and never reads a clock, so a scenario of an hour replays in
milliseconds and gives the same answer every time (only the random ids of
decisions and commands differ).

Rules, per zone (windows from the zone's ``ZonePolicy``; docs/confirmation.md
explains each and which nuisances they can and cannot hold back):

* Manual call points and a panel's fire signal: forwarded at once.
* A point detector (smoke, heat, multi) alarm opens a zone incident that is
  confirmed by the first of: a confirmed video detection in the zone during
  the incident; a second detector of the zone alarming within
  ``coincidence_window_s``; a temperature rise of ``heat_rise_c`` in the zone;
  alarm verification (a resettable detector is reset; still or again in alarm
  after ``reset_window_s``, or a new alarm within ``confirmation_window_s``
  after that); a continuous alarm of ``persistence_s``; and at the latest the
  hard ceiling: ``ceiling_s`` after the first alarm, an alarm that persists
  (or whose detector went offline or faulty while in alarm) is forwarded
  marked unverified. A persisting alarm is never dropped.
* A camera alone: a confirmed detection held ``video_only_s``, or whose region
  grows to ``video_growth_ratio`` times its first area.
* One FIRE_ALARM per zone incident; the incident ends with a RESTORE after the
  zone has been quiet ``incident_clear_s``.
* Electrical monitors: a reading over its setpoint for ``electrical_sustain_s``
  (judged on readings, so one inrush poll never counts) or the device's own
  alarm/pre-alarm bit gives an ELECTRICAL_PREALARM; RESTORE once below
  ``restore_hysteresis`` x setpoint for ``electrical_sustain_s``.
* Faults (offline, fault, dirty, disabled, camera stale/frozen): FAULT after
  ``fault_debounce_s``, or at once when flapping; RESTORE after clear for
  ``fault_restore_s``.
* An unconfirmed incident that goes quiet for ``coincidence_window_s`` is a
  nuisance: each detector or camera in it is reported in ``suppressed`` and
  counted; every ``stats_interval_s`` a STATS decision names the
  nuisance-prone detectors.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.engine.site import RESET_COMMAND, SiteIndex
from agent.events import (
    GATEWAY_ZONE,
    Command,
    CommandResult,
    Condition,
    Decision,
    DecisionType,
    DeviceKind,
    Evidence,
    Observation,
    Quantity,
    Reading,
    StateChange,
    VideoDetection,
)
from agent.siteconfig import LoadedSite, ZonePolicy

DETECTOR_KINDS = frozenset({DeviceKind.SMOKE, DeviceKind.HEAT, DeviceKind.MULTI})
IMMEDIATE_KINDS = frozenset({DeviceKind.MANUAL_CALL_POINT, DeviceKind.PANEL})
ELECTRICAL_KINDS = frozenset({DeviceKind.RESIDUAL_CURRENT, DeviceKind.ELECTRICAL_FIRE})
FAULT_CONDITIONS = frozenset(
    {
        Condition.FAULT,
        Condition.DIRTY,
        Condition.OFFLINE,
        Condition.DISABLED,
        Condition.STALE,
        Condition.FROZEN,
    }
)
# A detector that stops answering or reports a sensor fault while in alarm may
# have been destroyed by the fire: its alarm is kept, never silently cancelled.
LOSING_CONDITIONS = frozenset({Condition.OFFLINE, Condition.FAULT})
MAX_EVIDENCE = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppressed:
    """One nuisance held back: a detector (or camera) whose alarm was not confirmed.

    ``count`` is that detector's total of held-back nuisances so far, this one
    included; ``evidence`` lists what it saw, with times.
    """

    zone: str
    source: str  # detector key: device name, or "device:point" for a sub-point
    reason: str
    first_seen_wall: float
    first_seen_mono: float
    wall: float
    mono: float
    count: int
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "source": self.source,
            "reason": self.reason,
            "first_seen_wall": self.first_seen_wall,
            "wall": self.wall,
            "held_s": round(self.mono - self.first_seen_mono, 3),
            "count": self.count,
            "evidence": [
                {
                    "source": e.source,
                    "what": e.what,
                    "wall": e.wall,
                    "observation_id": e.observation_id,
                }
                for e in self.evidence
            ],
        }


@dataclass(slots=True)
class EngineOutput:
    """What one call to ``feed`` or ``tick`` produced, in the order it happened."""

    decisions: list[Decision] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    suppressed: list[Suppressed] = field(default_factory=list)

    def extend(self, other: EngineOutput) -> None:
        self.decisions.extend(other.decisions)
        self.commands.extend(other.commands)
        self.suppressed.extend(other.suppressed)

    def __bool__(self) -> bool:
        return bool(self.decisions or self.commands or self.suppressed)


# ----------------------------------------------------------------------- state


@dataclass(slots=True)
class _Detector:
    key: str
    source: str
    point: str
    zone: str
    kind: DeviceKind
    resettable: bool
    alarm: bool = False
    alarm_since_mono: float = 0.0
    offline: bool = False
    lost_in_alarm: bool = False  # went offline/faulty while alarmed in an open incident
    nuisance_total: int = 0
    nuisance_period: int = 0


@dataclass(slots=True)
class _Camera:
    name: str
    zone: str
    active: bool = False
    since_mono: float = 0.0
    first_area: int = 0
    max_area: int = 0
    nuisance_total: int = 0
    nuisance_period: int = 0


@dataclass(slots=True)
class _Verification:
    reset_mono: float
    restart_end_mono: float
    confirm_end_mono: float
    command_id: str
    failed: bool = False  # the reset could not be done: persistence and ceiling apply

    def live(self, now: float) -> bool:
        return not self.failed and now <= self.confirm_end_mono


@dataclass(slots=True)
class _Incident:
    zone: str
    first_mono: float
    first_wall: float
    last_activity_mono: float
    evidence: list[Evidence] = field(default_factory=list)
    devices: dict[str, None] = field(default_factory=dict)  # ordered set
    cameras: dict[str, None] = field(default_factory=dict)
    alarm_onsets: dict[str, float] = field(default_factory=dict)  # detector key -> first onset
    alarm_first_wall: dict[str, float] = field(default_factory=dict)
    verifications: dict[str, _Verification] = field(default_factory=dict)
    video_seen: bool = False
    snapshot: bytes | None = None
    confirmed: bool = False

    def add(self, ev: Evidence) -> None:
        if len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append(ev)
        else:  # keep how it started and the latest
            self.evidence[-1] = ev


@dataclass(slots=True)
class _Electrical:
    source: str
    point: str
    zone: str
    quantity: Quantity | None = None
    value: float = 0.0
    setpoint: float = 0.0
    over_since_mono: float | None = None
    over_since_wall: float = 0.0
    under_since_mono: float | None = None
    reading_over: bool = False  # over the setpoint for the sustain time
    bit_active: bool = False  # the device's own alarm / pre-alarm
    reported: bool = False
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(slots=True)
class _Fault:
    source: str
    point: str
    zone: str
    condition: Condition
    active: bool = False
    since_mono: float = 0.0  # onset if active, clear time if not
    first_wall: float = 0.0
    detail: str = ""
    onsets: deque[float] = field(default_factory=deque)
    reported: bool = False
    reported_intermittent: bool = False
    evidence: list[Evidence] = field(default_factory=list)


def _evidence(obs: Observation, what: str) -> Evidence:
    return Evidence(
        observation_id=obs.id, source=obs.source, what=what, wall=obs.wall, mono=obs.mono
    )


def _key(source: str, point: str) -> str:
    return f"{source}:{point}" if point else source


def _video_area(obs: VideoDetection) -> int:
    return sum(r.area for r in obs.regions)


# ---------------------------------------------------------------------- engine


class Engine:
    """The confirmation engine of one site. Not thread-safe; one caller at a time.

    Callers may rely on: ``feed`` and ``tick`` never raise on any observation
    (unknown sources are counted and ignored), never block, and return at most
    one FIRE_ALARM per zone incident; an alarm that persists is forwarded at the
    latest ``ceiling_s`` (plus one tick) after its first raw observation.
    """

    def __init__(self, site: LoadedSite | SiteIndex) -> None:
        self.site = site if isinstance(site, SiteIndex) else SiteIndex.from_site(site)
        self._detectors: dict[str, _Detector] = {}
        self._zone_detectors: dict[str, list[_Detector]] = {}
        self._cameras: dict[str, _Camera] = {
            name: _Camera(name, zone) for name, zone in self.site.cameras.items()
        }
        self._zone_cameras: dict[str, list[_Camera]] = {}
        for cam in self._cameras.values():
            self._zone_cameras.setdefault(cam.zone, []).append(cam)
        self._incidents: dict[str, _Incident] = {}
        self._temps: dict[str, deque[tuple[float, float]]] = {}
        self._zone_temps: dict[str, list[str]] = {}
        self._electrical: dict[str, _Electrical] = {}
        self._faults: dict[tuple[str, str, Condition], _Fault] = {}
        self._offline_sources: set[str] = set()
        self._seed_totals: dict[str, int] = {}
        self._stats_start_mono: float | None = None
        self.counters: dict[str, int] = {
            "observations": 0,
            "unknown_source": 0,
            "unconfirmed_video": 0,
            "fire_alarm": 0,
            "electrical_prealarm": 0,
            "fault": 0,
            "restore": 0,
            "stats": 0,
            "suppressed": 0,
            "commands": 0,
            "incidents_resumed": 0,
        }

    # ------------------------------------------------------------------ inputs

    def feed(self, obs: Observation, now_mono: float, now_wall: float) -> EngineOutput:
        """Take one observation; ``now_*`` is the engine's current time (>= obs times)."""
        out = EngineOutput()
        self._start(now_mono)
        self.counters["observations"] += 1
        zone = self.site.zone_of(obs.source, obs.point, obs.zone)
        if zone is None:
            self.counters["unknown_source"] += 1
            return out
        if isinstance(obs, StateChange):
            self._on_state(obs, zone, now_mono, now_wall, out)
        elif isinstance(obs, Reading):
            self._on_reading(obs, zone, now_mono, now_wall, out)
        elif isinstance(obs, VideoDetection):
            if not obs.confirmed:  # raw frame scores are the camera's business
                self.counters["unconfirmed_video"] += 1
                return out
            self._on_video(obs, zone)
        elif isinstance(obs, CommandResult):
            self._on_command_result(obs, zone)
        self._evaluate_zone(zone, now_mono, now_wall, out)
        return out

    def tick(self, now_mono: float, now_wall: float) -> EngineOutput:
        """Run the time-based rules (windows, ceilings, debounce, stats)."""
        out = EngineOutput()
        self._start(now_mono)
        for zone in list(self._incidents):
            self._evaluate_zone(zone, now_mono, now_wall, out)
        for fault in self._faults.values():
            self._evaluate_fault(fault, now_mono, now_wall, out)
        self._maybe_stats(now_mono, now_wall, out)
        return out

    # ---------------------------------------------------------------- queries

    def open_incidents(self) -> dict[str, bool]:
        """Zone -> confirmed, for every open incident."""
        return {z: inc.confirmed for z, inc in self._incidents.items()}

    def confirmed_incidents(self, now: float, wall: float) -> dict[str, dict[str, float]]:
        """Open fire incidents already forwarded: zone -> first seen and last
        activity (wall clock), for the runner to carry over a restart."""
        return {
            z: {
                "first_seen_wall": inc.first_wall,
                "last_activity_wall": wall - (now - inc.last_activity_mono),
            }
            for z, inc in self._incidents.items()
            if inc.confirmed
        }

    def resume_incident(
        self, zone: str, first_seen_wall: float, last_activity_wall: float, now: float, wall: float
    ) -> bool:
        """Carry a forwarded fire incident over a restart of the agent.

        A detector still in alarm after the restart then belongs to the incident
        the centre already has (no second FIRE_ALARM with a new id); the incident
        ends with a RESTORE after ``incident_clear_s`` of quiet as usual. Returns
        False (nothing resumed) for an unknown zone, a zone that already has an
        incident, or an incident that would have cleared while the agent was down.
        """
        if zone not in self.site.policies or zone in self._incidents:
            return False
        quiet_s = wall - last_activity_wall
        if not -60.0 <= quiet_s < self._policy(zone).incident_clear_s:
            return False  # cleared meanwhile, or a clock that jumped: start afresh
        self._incidents[zone] = _Incident(
            zone=zone,
            first_mono=now - (wall - first_seen_wall),
            first_wall=first_seen_wall,
            last_activity_mono=now - max(0.0, quiet_s),
            confirmed=True,
        )
        self.counters["incidents_resumed"] += 1
        return True

    def seed_nuisance_totals(self, totals: Mapping[str, int]) -> None:
        """Carry per-detector nuisance totals over a restart (from the local log).

        Only raises totals; the stats period counts are not touched."""
        for key, n in totals.items():
            self._seed_totals[key] = max(n, self._seed_totals.get(key, 0))
            det = self._detectors.get(key)
            if det is not None:
                det.nuisance_total = max(det.nuisance_total, n)
            cam = self._cameras.get(key)
            if cam is not None:
                cam.nuisance_total = max(cam.nuisance_total, n)

    def nuisance_counts(self) -> dict[str, int]:
        """Held-back nuisances per detector or camera (with seeded totals)."""
        out = {k: n for k, n in self._seed_totals.items() if n}
        out.update({d.key: d.nuisance_total for d in self._detectors.values() if d.nuisance_total})
        out.update({c.name: c.nuisance_total for c in self._cameras.values() if c.nuisance_total})
        return out

    def status(self) -> dict[str, Any]:
        return {
            "open_incidents": self.open_incidents(),
            "detectors_in_alarm": sorted(k for k, d in self._detectors.items() if d.alarm),
            "active_faults": sorted(
                _key(f.source, f.point) + f" {f.condition.value}"
                for f in self._faults.values()
                if f.reported
            ),
            "electrical_prealarms": sorted(
                _key(e.source, e.point) for e in self._electrical.values() if e.reported
            ),
            "counters": dict(self.counters),
        }

    # ------------------------------------------------------------ observations

    def _start(self, now: float) -> None:
        if self._stats_start_mono is None:
            self._stats_start_mono = now

    def _policy(self, zone: str) -> ZonePolicy:
        pol = self.site.policies.get(zone)
        return pol if pol is not None else ZonePolicy()

    def _kind_of(self, obs: StateChange) -> DeviceKind:
        dev = self.site.devices.get(obs.source)
        if dev is None or obs.kind is DeviceKind.CAMERA:
            return obs.kind
        # a panel point or an electrical monitor's flag may carry its own kind
        if dev.kind in ELECTRICAL_KINDS or obs.kind in ELECTRICAL_KINDS:
            return dev.kind if dev.kind in ELECTRICAL_KINDS else obs.kind
        return dev.kind

    def _detector(self, source: str, point: str, zone: str, kind: DeviceKind) -> _Detector:
        key = _key(source, point)
        det = self._detectors.get(key)
        if det is None:
            dev = self.site.devices.get(source)
            det = _Detector(
                key=key,
                source=source,
                point=point,
                zone=zone,
                kind=kind,
                resettable=dev is not None and dev.resettable,
                offline=source in self._offline_sources,
                nuisance_total=self._seed_totals.get(key, 0),
            )
            self._detectors[key] = det
            self._zone_detectors.setdefault(zone, []).append(det)
        return det

    def _incident(self, zone: str, obs: Observation) -> _Incident:
        inc = self._incidents.get(zone)
        if inc is None:
            inc = _Incident(
                zone=zone, first_mono=obs.mono, first_wall=obs.wall, last_activity_mono=obs.mono
            )
            self._incidents[zone] = inc
        return inc

    def _on_state(
        self, obs: StateChange, zone: str, now: float, wall: float, out: EngineOutput
    ) -> None:
        kind = self._kind_of(obs)
        cond = obs.condition
        if cond in FAULT_CONDITIONS:
            self._on_fault_edge(obs, zone, now, wall, out)
            return
        if cond is Condition.ALARM:
            if kind in IMMEDIATE_KINDS:
                self._on_immediate(obs, zone, kind)
            elif kind in DETECTOR_KINDS:
                self._on_detector_alarm(obs, zone, kind)
            elif kind in ELECTRICAL_KINDS:
                self._on_electrical_bit(obs, zone, now, wall, out)
        elif cond is Condition.PREALARM and kind in ELECTRICAL_KINDS:
            self._on_electrical_bit(obs, zone, now, wall, out)

    def _on_immediate(self, obs: StateChange, zone: str, kind: DeviceKind) -> None:
        det = self._detector(obs.source, obs.point, zone, kind)
        det.alarm = obs.active
        if not obs.active:
            inc = self._incidents.get(zone)
            if inc is not None:
                inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
                inc.add(_evidence(obs, "alarm cleared"))
            return
        det.alarm_since_mono = obs.mono
        inc = self._incident(zone, obs)
        inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
        inc.devices[obs.source] = None
        what = "manual call point" if kind is DeviceKind.MANUAL_CALL_POINT else "panel fire"
        inc.add(_evidence(obs, f"{what}{': ' + obs.detail if obs.detail else ''}"))
        inc.alarm_onsets.setdefault(det.key, obs.mono)
        inc.alarm_first_wall.setdefault(det.key, obs.wall)

    def _on_detector_alarm(self, obs: StateChange, zone: str, kind: DeviceKind) -> None:
        det = self._detector(obs.source, obs.point, zone, kind)
        inc = self._incidents.get(zone)
        if not obs.active:
            if det.alarm and inc is not None:
                inc.add(
                    _evidence(obs, f"alarm cleared after {obs.mono - det.alarm_since_mono:.1f} s")
                )
                inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
            det.alarm = False
            det.lost_in_alarm = False
            return
        det.lost_in_alarm = False
        if det.alarm:
            return  # a repeated initial state, not a new alarm
        det.alarm = True
        det.alarm_since_mono = obs.mono
        inc = self._incident(zone, obs)
        inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
        inc.devices[obs.source] = None
        again = det.key in inc.alarm_onsets
        inc.add(_evidence(obs, "alarm again" if again else "alarm"))
        inc.alarm_onsets.setdefault(det.key, obs.mono)
        inc.alarm_first_wall.setdefault(det.key, obs.wall)

    def _on_video(self, obs: VideoDetection, zone: str) -> None:
        cam = self._cameras.get(obs.source)
        if cam is None:
            cam = self._cameras[obs.source] = _Camera(obs.source, zone)
            self._zone_cameras.setdefault(zone, []).append(cam)
        area = _video_area(obs)
        inc = self._incidents.get(zone)
        if not obs.active:
            if cam.active and inc is not None:
                inc.add(_evidence(obs, f"video {obs.cls.value} ended"))
                inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
            cam.active = False
            return
        if not cam.active:
            cam.active = True
            cam.since_mono = obs.mono
            cam.first_area = area
            cam.max_area = area
        cam.max_area = max(cam.max_area, area)
        inc = self._incident(zone, obs)
        inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
        inc.cameras[obs.source] = None
        inc.video_seen = True
        if obs.snapshot_jpeg is not None:
            inc.snapshot = obs.snapshot_jpeg
        inc.add(_evidence(obs, f"video {obs.cls.value} {obs.score:.2f} confirmed, area {area} px"))

    def _on_command_result(self, obs: CommandResult, zone: str) -> None:
        inc = self._incidents.get(zone)
        if inc is None or obs.action != RESET_COMMAND:
            return
        for ver in inc.verifications.values():
            if ver.command_id == obs.command_id:
                if not obs.ok:
                    ver.failed = True
                inc.add(
                    _evidence(
                        obs,
                        f"reset {'done' if obs.ok else 'failed'}"
                        + (f": {obs.detail}" if obs.detail else ""),
                    )
                )
                return

    def _on_reading(
        self, obs: Reading, zone: str, now: float, wall: float, out: EngineOutput
    ) -> None:
        if obs.quantity is Quantity.TEMPERATURE_C:
            tkey = _key(obs.source, obs.point)
            hist = self._temps.get(tkey)
            if hist is None:
                hist = self._temps[tkey] = deque()
                self._zone_temps.setdefault(zone, []).append(tkey)
            hist.append((obs.mono, obs.value))
            horizon = obs.mono - self._policy(zone).heat_rise_window_s
            while hist and hist[0][0] < horizon:
                hist.popleft()
        dev = self.site.devices.get(obs.source)
        if dev is None or dev.kind not in ELECTRICAL_KINDS:
            return
        if obs.quantity not in (Quantity.RESIDUAL_CURRENT_MA, Quantity.TEMPERATURE_C):
            return
        pol = self._policy(zone)
        e = self._elec(obs.source, obs.point or obs.quantity.value, zone)
        e.quantity = obs.quantity
        default = (
            pol.residual_current_setpoint_ma
            if obs.quantity is Quantity.RESIDUAL_CURRENT_MA
            else pol.cable_temperature_setpoint_c
        )
        sp = obs.setpoint if obs.setpoint is not None and obs.setpoint > 0 else default
        e.value, e.setpoint = obs.value, sp
        if obs.value >= sp:
            if e.over_since_mono is None:
                e.over_since_mono, e.over_since_wall = obs.mono, obs.wall
                e.evidence = [_evidence(obs, f"{obs.quantity.value} {obs.value:g} >= {sp:g}")]
            e.under_since_mono = None
            if not e.reading_over and obs.mono - e.over_since_mono >= pol.electrical_sustain_s:
                e.reading_over = True
                e.evidence.append(
                    _evidence(
                        obs,
                        f"{obs.quantity.value} {obs.value:g} >= {sp:g} for "
                        f"{obs.mono - e.over_since_mono:.1f} s",
                    )
                )
        else:
            # one reading under the setpoint restarts the sustain time: an
            # inrush spike of one poll never becomes a pre-alarm
            e.over_since_mono = None
            if obs.value < sp * pol.restore_hysteresis:
                if e.under_since_mono is None:
                    e.under_since_mono = obs.mono
                if e.reading_over and obs.mono - e.under_since_mono >= pol.electrical_sustain_s:
                    e.reading_over = False
            else:
                e.under_since_mono = None  # in the hysteresis band: hold
        self._evaluate_electrical(e, obs, now, wall, out)

    def _elec(self, source: str, point: str, zone: str) -> _Electrical:
        k = _key(source, point)
        e = self._electrical.get(k)
        if e is None:
            e = self._electrical[k] = _Electrical(source=source, point=point, zone=zone)
        return e

    def _on_electrical_bit(
        self, obs: StateChange, zone: str, now: float, wall: float, out: EngineOutput
    ) -> None:
        e = self._elec(obs.source, obs.point, zone)
        e.bit_active = obs.active
        if obs.active and not e.reported:
            e.over_since_wall = obs.wall
            e.evidence = [
                _evidence(obs, f"device {obs.condition.value}: {obs.detail}".rstrip(": "))
            ]
        self._evaluate_electrical(e, obs, now, wall, out)

    def _evaluate_electrical(
        self, e: _Electrical, obs: Observation, now: float, wall: float, out: EngineOutput
    ) -> None:
        if not e.reported and (e.reading_over or e.bit_active):
            e.reported = True
            if e.bit_active and not e.reading_over:
                what = "the device's own alarm"
            else:
                unit = "mA" if e.quantity is Quantity.RESIDUAL_CURRENT_MA else "C"
                what = f"{e.quantity.value if e.quantity else 'value'} {e.value:g} {unit} over setpoint {e.setpoint:g} {unit}"
            first = e.evidence[0] if e.evidence else _evidence(obs, "")
            self._emit(
                out,
                Decision(
                    type=DecisionType.ELECTRICAL_PREALARM,
                    zone=e.zone,
                    reason=f"electrical pre-alarm on {_key(e.source, e.point)}: {what}",
                    first_seen_wall=first.wall,
                    first_seen_mono=first.mono,
                    wall=wall,
                    mono=now,
                    devices=(e.source,),
                    evidence=tuple(e.evidence),
                    details={
                        "point": e.point,
                        "quantity": e.quantity.value if e.quantity else None,
                        "value": e.value,
                        "setpoint": e.setpoint,
                        "device_bit": e.bit_active,
                    },
                ),
            )
        elif e.reported and not e.reading_over and not e.bit_active and e.over_since_mono is None:
            e.reported = False
            self._emit(
                out,
                Decision(
                    type=DecisionType.RESTORE,
                    zone=e.zone,
                    reason=f"electrical pre-alarm on {_key(e.source, e.point)} cleared",
                    first_seen_wall=obs.wall,
                    first_seen_mono=obs.mono,
                    wall=wall,
                    mono=now,
                    devices=(e.source,),
                    evidence=(_evidence(obs, f"value {e.value:g}, setpoint {e.setpoint:g}"),),
                    details={"of": DecisionType.ELECTRICAL_PREALARM.value, "point": e.point},
                ),
            )

    # ------------------------------------------------------------------ faults

    def _on_fault_edge(
        self, obs: StateChange, zone: str, now: float, wall: float, out: EngineOutput
    ) -> None:
        fk = (obs.source, obs.point, obs.condition)
        f = self._faults.get(fk)
        if f is None:
            f = self._faults[fk] = _Fault(obs.source, obs.point, zone, obs.condition)
        if obs.condition in LOSING_CONDITIONS:
            self._on_losing(obs, zone, obs.active)
        if obs.active == f.active:
            return
        f.active = obs.active
        f.since_mono = obs.mono
        if obs.active:
            f.first_wall = obs.wall if not f.reported else f.first_wall
            f.detail = obs.detail
            f.onsets.append(obs.mono)
            f.evidence = [*f.evidence[-(MAX_EVIDENCE - 1) :], _evidence(obs, obs.condition.value)]
        else:
            f.evidence = [
                *f.evidence[-(MAX_EVIDENCE - 1) :],
                _evidence(obs, f"{obs.condition.value} cleared"),
            ]
        self._evaluate_fault(f, now, wall, out)

    def _on_losing(self, obs: StateChange, zone: str, active: bool) -> None:
        """A device went offline / faulty (or came back): keep its alarms."""
        inc = self._incidents.get(zone)
        if obs.condition is Condition.OFFLINE:
            if active:
                self._offline_sources.add(obs.source)
            else:
                self._offline_sources.discard(obs.source)
        for det in self._zone_detectors.get(zone, ()):
            if det.source != obs.source or (obs.point and det.point != obs.point):
                continue
            if obs.condition is Condition.OFFLINE:
                det.offline = active
            if (
                active
                and inc is not None
                and not inc.confirmed
                and (det.alarm or det.key in inc.alarm_onsets)
            ):
                det.lost_in_alarm = True
                inc.add(_evidence(obs, f"{obs.condition.value} during its alarm"))
                inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
            elif not active and obs.condition is Condition.OFFLINE:
                # it answers again: the driver tells its alarm state afresh
                det.lost_in_alarm = False

    def _evaluate_fault(self, f: _Fault, now: float, wall: float, out: EngineOutput) -> None:
        pol = self._policy(f.zone)
        while f.onsets and f.onsets[0] < now - pol.fault_flap_window_s:
            f.onsets.popleft()
        if f.active and not f.reported:
            held = now - f.since_mono >= pol.fault_debounce_s
            flapping = len(f.onsets) >= pol.fault_flap_count
            if held or flapping:
                f.reported = True
                f.reported_intermittent = flapping and not held
                where = _key(f.source, f.point)
                self._emit(
                    out,
                    Decision(
                        type=DecisionType.FAULT,
                        zone=f.zone,
                        reason=f"{where}: {f.condition.value}"
                        + (f" ({f.detail})" if f.detail else "")
                        + (" - intermittent" if f.reported_intermittent else ""),
                        first_seen_wall=f.first_wall,
                        first_seen_mono=f.since_mono if held else f.onsets[0],
                        wall=wall,
                        mono=now,
                        devices=() if f.source in self._cameras else (f.source,),
                        cameras=(f.source,) if f.source in self._cameras else (),
                        evidence=tuple(f.evidence),
                        details={
                            "condition": f.condition.value,
                            "point": f.point,
                            "intermittent": f.reported_intermittent,
                        },
                    ),
                )
        elif f.reported and not f.active and now - f.since_mono >= pol.fault_restore_s:
            f.reported = False
            where = _key(f.source, f.point)
            self._emit(
                out,
                Decision(
                    type=DecisionType.RESTORE,
                    zone=f.zone,
                    reason=f"{where}: {f.condition.value} cleared",
                    first_seen_wall=f.evidence[-1].wall if f.evidence else wall,
                    first_seen_mono=f.since_mono,
                    wall=wall,
                    mono=now,
                    devices=() if f.source in self._cameras else (f.source,),
                    cameras=(f.source,) if f.source in self._cameras else (),
                    evidence=tuple(f.evidence[-4:]),
                    details={"of": DecisionType.FAULT.value, "condition": f.condition.value},
                ),
            )
            f.evidence = []

    # -------------------------------------------------------------------- fire

    def _heat_rise(self, zone: str, inc: _Incident) -> tuple[str, float] | None:
        """The largest temperature rise in the zone from a sensor other than the
        alarming detectors themselves (a heat detector's own rise is the same
        signal as its alarm, not a second one)."""
        pol = self._policy(zone)
        best: tuple[str, float] | None = None
        for tkey in self._zone_temps.get(zone, ()):
            if tkey.split(":", 1)[0] in inc.devices:
                continue
            hist = self._temps[tkey]
            if len(hist) < 2:
                continue
            rise = hist[-1][1] - min(v for _, v in hist)
            if rise >= pol.heat_rise_c and (best is None or rise > best[1]):
                best = (tkey, rise)
        return best

    def _evaluate_zone(self, zone: str, now: float, wall: float, out: EngineOutput) -> None:
        inc = self._incidents.get(zone)
        if inc is None:
            return
        pol = self._policy(zone)
        dets = self._zone_detectors.get(zone, [])
        cams = self._zone_cameras.get(zone, [])
        if inc.confirmed:
            if any(d.alarm or d.lost_in_alarm for d in dets) or any(c.active for c in cams):
                inc.last_activity_mono = max(inc.last_activity_mono, now)
            elif now - inc.last_activity_mono >= pol.incident_clear_s:
                del self._incidents[zone]
                self._emit(
                    out,
                    Decision(
                        type=DecisionType.RESTORE,
                        zone=zone,
                        reason=f"fire alarm in zone {zone} cleared: quiet for "
                        f"{now - inc.last_activity_mono:.0f} s",
                        first_seen_wall=inc.first_wall,
                        first_seen_mono=inc.first_mono,
                        wall=wall,
                        mono=now,
                        devices=tuple(inc.devices),
                        cameras=tuple(inc.cameras),
                        details={"of": DecisionType.FIRE_ALARM.value},
                    ),
                )
            return

        alarming = [d for d in dets if d.alarm]
        # an offline detector's last known alarm persists (ceiling) but confirms nothing
        answering = [d for d in alarming if not d.offline]
        lost = [d for d in dets if d.lost_in_alarm]
        has_detector = bool(inc.alarm_onsets)
        rule = ""
        reason = ""
        verified = True
        first_mono, first_wall = inc.first_mono, inc.first_wall

        immediate = [d for d in alarming if d.kind in IMMEDIATE_KINDS]
        if immediate:
            d = immediate[0]
            rule = "immediate"
            what = (
                "manual call point"
                if d.kind is DeviceKind.MANUAL_CALL_POINT
                else "panel fire signal"
            )
            reason = f"{what} {d.key}"
        elif has_detector and pol.video_confirms and inc.video_seen:
            rule = "video"
            reason = f"detector alarm confirmed by video ({', '.join(inc.cameras)})"
        elif has_detector and (pair := self._coincident(inc, pol)) is not None:
            rule = "coincidence"
            reason = f"two detectors in alarm within {pair[2]:.0f} s: {pair[0]}, {pair[1]}"
        elif has_detector and (rise := self._heat_rise(zone, inc)) is not None:
            rule = "heat_rise"
            reason = f"detector alarm corroborated by a {rise[1]:.1f} C rise at {rise[0]}"
        elif (ver := self._verified(inc, answering, now)) is not None:
            rule = "verification"
            reason = f"alarm verification: {ver} in alarm again after the reset"
        elif (pers := self._persisting(inc, answering, now, pol)) is not None:
            rule = "persistence"
            reason = f"{pers.key} in alarm continuously for {now - pers.alarm_since_mono:.0f} s"
        elif now - inc.first_mono >= pol.ceiling_s and (alarming or lost):
            rule = "ceiling"
            verified = False
            names = [f"{d.key} (lost in alarm)" if d.lost_in_alarm else d.key for d in alarming]
            names += [f"{d.key} (lost in alarm)" for d in lost if not d.alarm]
            reason = (
                f"alarm persisting {now - inc.first_mono:.0f} s without confirmation "
                f"(hard ceiling {pol.ceiling_s:g} s): {', '.join(names)}"
            )
        elif not has_detector and (cam_rule := self._video_only(cams, now, pol)) is not None:
            rule, reason, cam = cam_rule
            first_mono = cam.since_mono
            first_wall = inc.first_wall + (cam.since_mono - inc.first_mono)

        if rule:
            inc.confirmed = True
            inc.last_activity_mono = max(inc.last_activity_mono, now)
            self._emit(
                out,
                Decision(
                    type=DecisionType.FIRE_ALARM,
                    zone=zone,
                    reason=reason,
                    first_seen_wall=first_wall,
                    first_seen_mono=first_mono,
                    wall=wall,
                    mono=now,
                    devices=tuple(inc.devices),
                    cameras=tuple(inc.cameras),
                    evidence=tuple(inc.evidence),
                    verified=verified,
                    snapshot_jpeg=inc.snapshot,
                    details={"rule": rule, "held_s": round(now - first_mono, 3)},
                ),
            )
            return

        # not (yet) confirmed: start alarm verification where a detector can be reset
        if pol.verification:
            for d in answering:
                if d.resettable and not d.offline and d.key not in inc.verifications:
                    cmd = Command(target=d.source, action=RESET_COMMAND, wall=wall, mono=now)
                    inc.verifications[d.key] = _Verification(
                        reset_mono=now,
                        restart_end_mono=now + pol.reset_window_s,
                        confirm_end_mono=now + pol.reset_window_s + pol.confirmation_window_s,
                        command_id=cmd.id,
                    )
                    out.commands.append(cmd)
                    self.counters["commands"] += 1

        busy = (
            alarming
            or lost
            or any(c.active for c in cams)
            or any(v.live(now) for v in inc.verifications.values())
        )
        if not busy and now - inc.last_activity_mono >= pol.coincidence_window_s:
            del self._incidents[zone]
            self._close_nuisance(inc, now, wall, out)

    def _coincident(self, inc: _Incident, pol: ZonePolicy) -> tuple[str, str, float] | None:
        onsets = sorted(inc.alarm_onsets.items(), key=lambda kv: kv[1])
        for (k1, t1), (k2, t2) in itertools.pairwise(onsets):
            if t2 - t1 <= pol.coincidence_window_s:
                return k1, k2, t2 - t1
        return None

    def _verified(self, inc: _Incident, alarming: list[_Detector], now: float) -> str | None:
        for d in alarming:
            ver = inc.verifications.get(d.key)
            if ver is None or ver.failed:
                continue
            # in alarm at the end of the reset period, or again within the confirmation period
            if ver.restart_end_mono <= now <= ver.confirm_end_mono:
                return d.key
        return None

    def _persisting(
        self, inc: _Incident, alarming: list[_Detector], now: float, pol: ZonePolicy
    ) -> _Detector | None:
        for d in alarming:
            ver = inc.verifications.get(d.key)
            if ver is not None and not ver.failed and d.alarm_since_mono >= ver.reset_mono:
                continue  # alarm verification decides for this detector
            if now - d.alarm_since_mono >= pol.persistence_s:
                return d
        return None

    def _video_only(
        self, cams: list[_Camera], now: float, pol: ZonePolicy
    ) -> tuple[str, str, _Camera] | None:
        for c in cams:
            if not c.active:
                continue
            if now - c.since_mono >= pol.video_only_s:
                return (
                    "video_only",
                    f"camera {c.name} alone: fire/smoke confirmed for {now - c.since_mono:.0f} s",
                    c,
                )
            if c.first_area > 0 and c.max_area >= pol.video_growth_ratio * c.first_area:
                return (
                    "video_growth",
                    f"camera {c.name} alone: region grew {c.max_area / c.first_area:.1f}x",
                    c,
                )
        return None

    def _close_nuisance(self, inc: _Incident, now: float, wall: float, out: EngineOutput) -> None:
        for key, onset in inc.alarm_onsets.items():
            det = self._detectors[key]
            det.nuisance_total += 1
            det.nuisance_period += 1
            ver = inc.verifications.get(key)
            if ver is not None and not ver.failed:
                reason = (
                    "alarm verification: no new alarm within "
                    f"{ver.confirm_end_mono - ver.reset_mono:.0f} s after the reset"
                )
            else:
                reason = "alarm cleared before any confirmation"
            self._suppress(
                inc,
                key,
                reason,
                onset,
                inc.alarm_first_wall[key],
                det.nuisance_total,
                now,
                wall,
                out,
            )
        for name in inc.cameras:
            cam = self._cameras[name]
            cam.nuisance_total += 1
            cam.nuisance_period += 1
            self._suppress(
                inc,
                name,
                f"video detection ended before {self._policy(inc.zone).video_only_s:g} s "
                "without a detector alarm or growth",
                inc.first_mono,
                inc.first_wall,
                cam.nuisance_total,
                now,
                wall,
                out,
            )

    def _suppress(
        self,
        inc: _Incident,
        key: str,
        reason: str,
        first_mono: float,
        first_wall: float,
        count: int,
        now: float,
        wall: float,
        out: EngineOutput,
    ) -> None:
        src = key.split(":", 1)[0]
        out.suppressed.append(
            Suppressed(
                zone=inc.zone,
                source=key,
                reason=reason,
                first_seen_wall=first_wall,
                first_seen_mono=first_mono,
                wall=wall,
                mono=now,
                count=count,
                evidence=tuple(e for e in inc.evidence if e.source == src),
            )
        )
        self.counters["suppressed"] += 1

    # ------------------------------------------------------------------- stats

    def _maybe_stats(self, now: float, wall: float, out: EngineOutput) -> None:
        start = self._stats_start_mono
        if start is None or now - start < self.site.stats_interval_s:
            return
        self._stats_start_mono = now
        period: dict[str, int] = {}
        total: dict[str, int] = {}
        for d in self._detectors.values():
            if d.nuisance_total:
                period[d.key], total[d.key] = d.nuisance_period, d.nuisance_total
                d.nuisance_period = 0
        for c in self._cameras.values():
            if c.nuisance_total:
                period[c.name], total[c.name] = c.nuisance_period, c.nuisance_total
                c.nuisance_period = 0
        prone = sorted(k for k, n in period.items() if n >= self.site.nuisance_prone_count)
        self._emit(
            out,
            Decision(
                type=DecisionType.STATS,
                zone=GATEWAY_ZONE,
                reason=(
                    f"{sum(period.values())} nuisance alarm(s) held back in the last "
                    f"{now - start:.0f} s"
                    + (f"; nuisance-prone: {', '.join(prone)}" if prone else "")
                ),
                first_seen_wall=wall - (now - start),
                first_seen_mono=start,
                wall=wall,
                mono=now,
                details={
                    "interval_s": now - start,
                    "nuisances": period,
                    "nuisances_total": total,
                    "nuisance_prone": prone,
                    "active_faults": self.status()["active_faults"],
                    "counters": dict(self.counters),
                },
            ),
        )

    def _emit(self, out: EngineOutput, d: Decision) -> None:
        self.counters[d.type.value] += 1
        out.decisions.append(d)
