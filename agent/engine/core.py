"""The confirmation engine: a pure, deterministic state machine.

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
  grows to ``video_growth_ratio`` times its first area and stays so in the
  camera's next report (one report's region is never growth); per camera and class
  (a camera votes for fire and smoke apart: the end of one never ends or
  restarts the other's hold, and growth is measured within one class).
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
import math
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
    VideoClass,
    VideoDetection,
    iso,
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
SNAPSHOT_VERSION = 2  # of Engine.snapshot(); 1 (fire incidents, pre-alarms, faults) still read
# Longest stop over which the age of what is carried keeps growing: past it, an
# alarm still being confirmed is well past its ceiling whatever the stop lasted.
MAX_CARRIED_DOWNTIME_S = 86400.0
MAX_CARRIED_TIMES = 64  # per detector and kind of trust record
# After a restart a source must report a fault again within this time (one
# offline detection at the slowest usual poll, a camera's stale time) or the
# fault is taken as cleared while the agent was down.
RESTART_FAULT_GRACE_S = 60.0
SMOKE_LEVELS = frozenset({Quantity.SMOKE_PERCENT_FT, Quantity.SMOKE_DB_M})


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
    cleared_mono: float = float("-inf")  # when its latest alarm cleared
    offline: bool = False
    lost_in_alarm: bool = False  # went offline/faulty while alarmed in an open incident
    nuisance_total: int = 0
    nuisance_period: int = 0
    short_trips: deque[float] = field(default_factory=deque)  # alarms that cleared on their own
    nuisance_times: deque[float] = field(default_factory=deque)  # held-back nuisances


@dataclass(slots=True)
class _VideoTrack:
    """One camera's ongoing confirmed detection of one class (fire or smoke)."""

    since_mono: float  # its START: the camera-alone hold counts from here
    first_area: int  # the region's area at START: growth is measured against it
    last_area: int  # the area the camera reported last
    # the largest area two consecutive reports both reached: growth must hold, so
    # one report's region (noise, a person walking by) never counts as growth
    held_area: int


@dataclass(slots=True)
class _Camera:
    name: str
    zone: str
    # the ongoing detections, per class: a camera's fire and smoke votes start
    # and end on their own, so the end of one never ends (or restarts) the other
    tracks: dict[VideoClass, _VideoTrack] = field(default_factory=dict)
    nuisance_total: int = 0
    nuisance_period: int = 0

    @property
    def active(self) -> bool:
        """A detection of either class is ongoing."""
        return bool(self.tracks)


@dataclass(slots=True)
class _Verification:
    reset_mono: float
    restart_end_mono: float
    confirm_end_mono: float
    command_id: str
    failed: bool = False  # the reset could not be done: persistence and ceiling apply
    alarm_s_at_reset: float = 0.0  # the detector's alarm time in the incident at the reset
    longest_gap_s: float = 0.0  # the detector's longest time out of alarm since the reset

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
    video_fire: bool = False  # a camera saw flames, not only smoke (which steam resembles)
    alarm_acc_s: dict[str, float] = field(default_factory=dict)  # detector -> ended alarm time
    own_clears: dict[str, int] = field(default_factory=dict)  # clears not caused by a reset
    longest_gap_s: dict[str, float] = field(default_factory=dict)  # out of alarm, between alarms
    snapshot: bytes | None = None
    confirmed: bool = False
    state_sent: bool = False  # a "verifying" zone state went out for this incident
    state_id: str = ""  # the id of that "verifying" zone state
    # carried over a restart: detector key -> when its alarm began, for a detector
    # in alarm when the agent stopped (its first report after the start decides)
    carried_alarms: dict[str, float] = field(default_factory=dict)
    stopped_mono: float = 0.0  # when the agent stopped (the snapshot), this run's time
    resume_until_mono: float = float("-inf")  # held open until the sources reported again

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
        self._smoke: dict[str, deque[tuple[float, float]]] = {}  # source -> analogue level
        self._zone_temps: dict[str, list[str]] = {}
        self._electrical: dict[str, _Electrical] = {}
        self._faults: dict[tuple[str, str, Condition], _Fault] = {}
        # until then, faults carried over a restart may still be presumed cleared
        # ahead (restore: now + the grace); no lookup per observation after it
        self._carry_until_mono = -math.inf
        self._offline_sources: set[str] = set()
        self._episode_ids: dict[tuple[str, ...], str] = {}  # open episode -> its decision id
        self._dirty_sources: set[str] = set()  # detectors reporting dirty / service required
        self._policy_cache: dict[str, tuple[float, ZonePolicy]] = {}
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
            "confirming_resumed": 0,
            "zone_state": 0,
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
        if obs.mono < self._carry_until_mono and isinstance(obs, StateChange | Reading):
            self._answers(obs, now_mono, now_wall, out)
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

    def _policy_at(self, zone: str, wall: float) -> ZonePolicy:
        """The zone's policy with the schedules in force at ``wall`` (per minute)."""
        base = self._policy(zone)
        if not base.schedules:
            return base
        minute = wall // 60.0
        hit = self._policy_cache.get(zone)
        if hit is None or hit[0] != minute:
            hit = (minute, base.at(wall))
            self._policy_cache[zone] = hit
        return hit[1]

    def _trusted(self, d: _Detector, pol: ZonePolicy, now: float) -> bool:
        """Whether a detector's alarm may confirm by alarm verification alone: not
        reporting dirty / service, no run of short self-clearing trips lately,
        no string of held-back nuisances (a clean record restores it)."""
        if d.source in self._dirty_sources:
            return False
        while d.short_trips and d.short_trips[0] < now - pol.distrust_window_s:
            d.short_trips.popleft()
        while d.nuisance_times and d.nuisance_times[0] < now - pol.trust_restore_s:
            d.nuisance_times.popleft()
        return (
            len(d.short_trips) < pol.distrust_trips and len(d.nuisance_times) < pol.distrust_trips
        )

    def _alarm_share(self, inc: _Incident, d: _Detector, now: float) -> float:
        """Share of the time since the detector's first alarm of the incident that
        it has been in alarm (1.0 for a continuous alarm)."""
        onset = inc.alarm_onsets.get(d.key)
        if onset is None or now <= onset:
            return 1.0
        return self._alarm_on_s(inc, d, now) / (now - onset)

    def _alarm_on_s(self, inc: _Incident, d: _Detector, now: float) -> float:
        """Seconds the detector has been in alarm during the incident."""
        return inc.alarm_acc_s.get(d.key, 0.0) + (now - d.alarm_since_mono if d.alarm else 0.0)

    def _recurring(
        self,
        inc: _Incident,
        dets: list[_Detector],
        alarming: list[_Detector],
        now: float,
        pol: ZonePolicy,
    ) -> _Detector | None:
        """A detector whose alarm persists for the ceiling: in alarm at least
        ``ceiling_alarm_share`` of the time since its first alarm, and in alarm
        now, or flickering (cleared on its own twice, the last time only seconds
        ago, and never out of alarm longer than ``self_clear_s``)."""
        recent = [
            d
            for d in dets
            if not d.alarm
            and d.key in inc.alarm_onsets
            and inc.own_clears.get(d.key, 0) >= 2  # flickering, not one puff that just ended
            and now - d.cleared_mono <= pol.self_clear_s
        ]
        for d in alarming:
            if self._alarm_share(inc, d, now) >= pol.ceiling_alarm_share:
                return d
        for d in recent:  # not in alarm this very second: it flickers, never away for long
            if (
                inc.longest_gap_s.get(d.key, 0.0) <= pol.self_clear_s
                and self._alarm_share(inc, d, now) >= pol.ceiling_alarm_share
            ):
                return d
        return None

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
        # in alarm when the agent stopped: this first report after the start tells
        carried = inc.carried_alarms.pop(det.key, None) if inc is not None else None
        if not obs.active:
            if carried is not None and inc is not None and not det.alarm:
                # it cleared while the agent was down: its alarm counts up to the stop
                run_s = max(0.0, inc.stopped_mono - carried)
                inc.alarm_acc_s[det.key] = inc.alarm_acc_s.get(det.key, 0.0) + run_s
                det.cleared_mono = max(det.cleared_mono, inc.stopped_mono)
                inc.add(_evidence(obs, "alarm cleared while the gateway restarted"))
            if det.alarm and inc is not None:
                run_s = obs.mono - det.alarm_since_mono
                inc.add(_evidence(obs, f"alarm cleared after {run_s:.1f} s"))
                inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
                inc.alarm_acc_s[det.key] = inc.alarm_acc_s.get(det.key, 0.0) + run_s
                ver = inc.verifications.get(det.key)
                reset_in_run = (
                    ver is not None and det.alarm_since_mono <= ver.reset_mono <= obs.mono
                )
                if not reset_in_run:
                    inc.own_clears[det.key] = inc.own_clears.get(det.key, 0) + 1
                if run_s <= self._policy(zone).self_clear_s and not reset_in_run:
                    det.short_trips.append(obs.mono)  # cleared on its own within seconds
            if det.alarm:
                det.cleared_mono = obs.mono
            det.alarm = False
            det.lost_in_alarm = False
            return
        det.lost_in_alarm = False
        if det.alarm:
            return  # a repeated initial state, not a new alarm
        det.alarm = True
        det.alarm_since_mono = obs.mono
        if carried is not None:
            # in alarm before and after the restart: one alarm, from its first onset
            # (the ceiling and persistence count from there, not from the restart)
            det.alarm_since_mono = min(obs.mono, carried)
        inc = self._incident(zone, obs)
        if carried is None and det.cleared_mono >= inc.first_mono:  # back after a gap
            gap = obs.mono - det.cleared_mono
            inc.longest_gap_s[det.key] = max(inc.longest_gap_s.get(det.key, 0.0), gap)
            ver = inc.verifications.get(det.key)
            if ver is not None and det.cleared_mono >= ver.reset_mono:
                ver.longest_gap_s = max(ver.longest_gap_s, gap)
        inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
        inc.devices[obs.source] = None
        again = det.key in inc.alarm_onsets
        what = "alarm again" if again else "alarm"
        inc.add(_evidence(obs, "still in alarm after the restart" if carried is not None else what))
        inc.alarm_onsets.setdefault(det.key, obs.mono)
        inc.alarm_first_wall.setdefault(det.key, obs.wall)

    def _on_video(self, obs: VideoDetection, zone: str) -> None:
        cam = self._cameras.get(obs.source)
        if cam is None:
            cam = self._cameras[obs.source] = _Camera(obs.source, zone)
            self._zone_cameras.setdefault(zone, []).append(cam)
        area = _video_area(obs)
        track = cam.tracks.get(obs.cls)
        if not obs.active:
            # the END of one class: the other class's detection, if any, goes on
            inc = self._incidents.get(zone)
            if track is not None and inc is not None:
                inc.add(_evidence(obs, f"video {obs.cls.value} ended"))
                inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
            cam.tracks.pop(obs.cls, None)
            return
        if track is None:
            track = cam.tracks[obs.cls] = _VideoTrack(
                since_mono=obs.mono, first_area=area, last_area=area, held_area=area
            )
        track.held_area = max(track.held_area, min(track.last_area, area))
        track.last_area = area
        inc = self._incident(zone, obs)
        inc.last_activity_mono = max(inc.last_activity_mono, obs.mono)
        inc.cameras[obs.source] = None
        # corroboration of a detector: a confirmed detection of either class in
        # the zone during the incident (smoke only where the policy lets smoke
        # confirm); the end of one class does not take back what it showed
        inc.video_seen = True
        if obs.cls is VideoClass.FIRE:
            inc.video_fire = True
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
        elif obs.quantity in SMOKE_LEVELS:
            hist = self._smoke.get(obs.source)
            if hist is None:
                hist = self._smoke[obs.source] = deque()
            hist.append((obs.mono, obs.value))
            horizon = obs.mono - 2 * self._policy(zone).shape_climb_s
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

    def _answers(
        self, obs: StateChange | Reading, now: float, wall: float, out: EngineOutput
    ) -> None:
        """A device that says anything (a state or a reading) answers: an OFFLINE
        of it carried over a restart is cleared from now (its RESTORE follows
        after ``fault_restore_s``), not presumed cleared at the end of the grace."""
        if isinstance(obs, StateChange) and obs.condition is Condition.OFFLINE and obs.active:
            return  # still offline
        f = self._faults.get((obs.source, "", Condition.OFFLINE))
        if f is not None:
            self._clear_carried(f, obs.mono, now, wall, out)

    def _clear_carried(
        self, f: _Fault, mono: float, now: float, wall: float, out: EngineOutput
    ) -> None:
        """A fault carried over a restart is presumed cleared at the end of its
        grace (``since_mono`` ahead); its source says at ``mono`` that it is clear."""
        if not f.active and f.reported and f.since_mono > mono:
            f.since_mono = mono
            self._evaluate_fault(f, now, wall, out)

    def _on_fault_edge(
        self, obs: StateChange, zone: str, now: float, wall: float, out: EngineOutput
    ) -> None:
        fk = (obs.source, obs.point, obs.condition)
        f = self._faults.get(fk)
        if f is None:
            f = self._faults[fk] = _Fault(obs.source, obs.point, zone, obs.condition)
        if obs.condition in LOSING_CONDITIONS:
            self._on_losing(obs, zone, obs.active)
        if obs.condition is Condition.DIRTY:
            if obs.active:
                self._dirty_sources.add(obs.source)
            else:
                self._dirty_sources.discard(obs.source)
        if obs.active == f.active:
            if not obs.active:  # a driver re-reports every state at a first answer
                self._clear_carried(f, obs.mono, now, wall, out)
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
                    details={
                        "of": DecisionType.FAULT.value,
                        "condition": f.condition.value,
                        "point": f.point,
                    },
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
        base = self._policy(zone)
        pol = self._policy_at(zone, wall)  # with the schedule in force now
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

        flick: _Detector | None = None
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
        elif (
            has_detector
            and pol.video_confirms
            and inc.video_seen
            and (inc.video_fire or pol.video_smoke_confirms)
        ):
            rule = "video"
            reason = f"detector alarm confirmed by video ({', '.join(inc.cameras)})"
        elif has_detector and (pair := self._coincident(inc, now, pol)) is not None:
            rule = "coincidence"
            reason = f"two detectors in alarm {pair[2]:.0f} s apart: {pair[0]}, {pair[1]}"
        elif has_detector and (rise := self._heat_rise(zone, inc)) is not None:
            rule = "heat_rise"
            reason = f"detector alarm corroborated by a {rise[1]:.1f} C rise at {rise[0]}"
        elif has_detector and (hot := self._heat_climbing(answering, now, base)) is not None:
            rule = "heat_climb"
            reason = (
                f"heat detector {hot[0]} in alarm {base.heat_climb_s:g} s while its temperature "
                f"kept climbing {hot[1]:g} -> {hot[2]:g} C (a growing fire, not a heating test)"
            )
        elif has_detector and (shape := self._climbing(answering, now, pol)) is not None:
            rule = "signal_shape"
            reason = (
                f"{shape[0]} in alarm after its smoke level climbed steadily "
                f"{shape[1]:g} -> {shape[2]:g} over {pol.shape_climb_s:g} s (a smoulder)"
            )
        elif (ver := self._verified(inc, answering, now, pol)) is not None:
            rule = "verification"
            reason = f"alarm verification: {ver} in alarm again after the reset"
        elif (pers := self._persisting(inc, answering, now, pol, base)) is not None:
            rule = "persistence"
            reason = f"{pers.key} in alarm continuously for {now - pers.alarm_since_mono:.0f} s"
        elif now - inc.first_mono >= base.ceiling_s and (
            lost or (flick := self._recurring(inc, dets, alarming, now, base)) is not None
        ):
            rule = "ceiling"
            verified = False
            names = [f"{d.key} (lost in alarm)" if d.lost_in_alarm else d.key for d in alarming]
            names += [f"{d.key} (lost in alarm)" for d in lost if not d.alarm]
            if not names and flick is not None:
                names = [f"{flick.key} (flickering, cleared {now - flick.cleared_mono:.0f} s ago)"]
            reason = (
                f"alarm persisting {now - inc.first_mono:.0f} s without confirmation "
                f"(hard ceiling {pol.ceiling_s:g} s): {', '.join(names)}"
            )
        elif (cam_rule := self._video_only(cams, now, pol, base)) is not None:
            # a camera alone confirms whether or not a detector is in alarm too:
            # a detector's alarm never makes a fire slower to confirm than none
            rule, reason, since = cam_rule
            first_mono = since
            first_wall = inc.first_wall + (since - inc.first_mono)

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
            if inc.state_sent:
                self._zone_state(
                    inc, "confirmed", f"fire alarm: {reason}", now, wall, out, rule=rule
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
                        alarm_s_at_reset=self._alarm_on_s(inc, d, now),
                    )
                    out.commands.append(cmd)
                    self.counters["commands"] += 1

        if not inc.state_sent:
            inc.state_sent = True
            applying, deadline_s = self._applying(inc, alarming, cams, pol, base, now)
            self._zone_state(
                inc,
                "verifying",
                f"alarm in zone {zone} being verified: {applying}",
                now,
                wall,
                out,
                rule=applying,
                deadline=iso(inc.first_wall + deadline_s),
                deadline_s=deadline_s,
            )

        busy = (
            alarming
            or lost
            or any(c.active for c in cams)
            or any(v.live(now) for v in inc.verifications.values())
            or (inc.carried_alarms and now < inc.resume_until_mono)  # not reported yet
        )
        if not busy and now - inc.last_activity_mono >= pol.coincidence_window_s:
            del self._incidents[zone]
            self._close_nuisance(inc, now, wall, out)
            if inc.state_sent:
                why = "; ".join(s.reason for s in out.suppressed if s.zone == zone) or "cleared"
                self._zone_state(inc, "held", f"held back as a nuisance: {why}", now, wall, out)

    def _applying(
        self,
        inc: _Incident,
        alarming: list[_Detector],
        cams: list[_Camera],
        pol: ZonePolicy,
        base: ZonePolicy,
        now: float,
    ) -> tuple[str, float]:
        """In words, the rule an unconfirmed incident now waits on, and its
        latest deadline (seconds after the first alarm)."""
        if not inc.alarm_onsets:
            smoke_only = all(cls is VideoClass.SMOKE for c in cams for cls in c.tracks)
            if smoke_only and not pol.video_smoke_confirms:
                return (
                    "camera alone, smoke (does not confirm at this hour): a growing region, "
                    f"else ceiling {base.ceiling_s:g} s",
                    base.ceiling_s,
                )
            return (
                f"camera alone: held {pol.video_only_s:g} s or a growing region",
                pol.video_only_s,
            )
        d = alarming[0] if alarming else None
        if d is not None and d.resettable and pol.verification and pol.verification_confirms:
            if self._trusted(d, pol, now):
                return (
                    f"alarm verification of {d.key} (reset, back in alarm at the end of "
                    f"{pol.reset_window_s:g} s), else persistence {pol.persistence_s:g} s, "
                    f"ceiling {base.ceiling_s:g} s",
                    base.ceiling_s,
                )
            return (
                f"{d.key} not trusted alone (dirty or self-clearing trips): corroboration or "
                f"persistence {pol.persistence_s:g} s, ceiling {base.ceiling_s:g} s",
                base.ceiling_s,
            )
        return (
            f"corroboration (camera, second detector, heat) or persistence "
            f"{pol.persistence_s:g} s, ceiling {base.ceiling_s:g} s",
            base.ceiling_s,
        )

    def _zone_state(
        self,
        inc: _Incident,
        state: str,
        reason: str,
        now: float,
        wall: float,
        out: EngineOutput,
        **details: Any,
    ) -> None:
        """A zone's state for the centre's display (retained upstream); never paged.
        A state that ends "verifying" names it in ``details.of_id``."""
        if state != "verifying" and inc.state_id:
            details = {**details, "of_id": inc.state_id}
        d = Decision(
            type=DecisionType.ZONE_STATE,
            zone=inc.zone,
            reason=reason,
            first_seen_wall=inc.first_wall,
            first_seen_mono=inc.first_mono,
            wall=wall,
            mono=now,
            devices=tuple(inc.devices),
            cameras=tuple(inc.cameras),
            evidence=tuple(inc.evidence[-4:]),
            details={"state": state, **details},
        )
        if state == "verifying":
            inc.state_id = d.id
        self._emit(out, d)

    def _heat_climbing(
        self, alarming: list[_Detector], now: float, pol: ZonePolicy
    ) -> tuple[str, float, float] | None:
        """A heat detector in alarm for ``heat_climb_s`` whose own temperature rose
        at ``heat_climb_c_per_min`` or faster over that time, in each half of it:
        the fire under it is still growing. A heating test's alarm ends when the
        gun comes off, seconds after the alarm; a hot-air blast cools at once.
        (Its own temperature is not a second witness of its alarm, so it does
        not count as ``heat_rise``: what counts here is that it goes on.)"""
        span = pol.heat_climb_s
        if span <= 0:
            return None
        for d in alarming:
            if d.kind is not DeviceKind.HEAT or now - d.alarm_since_mono < span:
                continue
            start = now - span
            for tkey in self._zone_temps.get(d.zone, ()):
                if tkey.split(":", 1)[0] != d.source:
                    continue
                hist = self._temps[tkey]
                before = [(t, v) for t, v in hist if t <= start]
                window = before[-1:] + [(t, v) for t, v in hist if t > start]
                if len(window) < 3 or window[-1][0] - window[0][0] < 0.5 * span:
                    continue
                (t0, v0), (t1, v1) = window[0], window[-1]
                mid = window[len(window) // 2][1]
                if (v1 - v0) * 60 / (t1 - t0) < pol.heat_climb_c_per_min:
                    continue
                if mid <= v0 or v1 <= mid:
                    continue  # a jump, then flat (or falling): not still climbing
                return d.key, round(v0, 1), round(v1, 1)
        return None

    def _climbing(
        self, alarming: list[_Detector], now: float, pol: ZonePolicy
    ) -> tuple[str, float, float] | None:
        """A detector in alarm whose own analogue smoke level climbed steadily over
        the last ``shape_climb_s``: it rose by at least a tenth of its present
        value, in every quarter of the window, never falling back by more than a
        fifth of the rise. Steam and dust jump within seconds from a flat level: not a climb."""
        for d in alarming:
            hist = self._smoke.get(d.source)
            if not hist or hist[0][0] > now - pol.shape_climb_s + 1.0:
                continue
            start = now - pol.shape_climb_s
            window = [(t, v) for t, v in hist if t >= start]
            if len(window) < 4:
                continue
            first, last = window[0][1], window[-1][1]
            rise = last - first
            if last <= 0 or rise < 0.1 * last:
                continue
            n = len(window)
            marks = [
                window[0][1],
                window[n // 4][1],
                window[n // 2][1],
                window[3 * n // 4][1],
                last,
            ]
            if any(b - a < 0.1 * rise for a, b in itertools.pairwise(marks)):
                continue  # flat, then a jump (steam, dust): not a climb in every quarter
            peak = first
            steady = True
            for _t, v in window:
                if v < peak - 0.2 * rise:
                    steady = False
                    break
                peak = max(peak, v)
            if steady:
                return d.key, round(first, 2), round(last, 2)
        return None

    def _coincident(
        self, inc: _Incident, now: float, pol: ZonePolicy
    ) -> tuple[str, str, float] | None:
        """Two detectors as two witnesses: alarms begun within coincidence_window_s
        of each other, but not within coincidence_independent_s (one burst of dust
        trips both at once) unless both have held coincidence_hold_s."""
        if len(inc.alarm_onsets) < 2:
            return None
        onsets = sorted(inc.alarm_onsets.items(), key=lambda kv: kv[1])
        for (k1, t1), (k2, t2) in itertools.combinations(onsets, 2):
            gap = t2 - t1
            if gap > pol.coincidence_window_s:
                continue
            if gap > pol.coincidence_independent_s:
                return k1, k2, gap
            d1, d2 = self._detectors[k1], self._detectors[k2]
            if (
                d1.alarm
                and d2.alarm
                and now - d1.alarm_since_mono >= pol.coincidence_hold_s
                and now - d2.alarm_since_mono >= pol.coincidence_hold_s
            ):
                return k1, k2, gap
        return None

    def _verified(
        self, inc: _Incident, alarming: list[_Detector], now: float, pol: ZonePolicy
    ) -> str | None:
        """Alarm verification: a trusted detector in alarm at or after the end of
        the reset period (within the confirmation period) that came back at once
        after its reset (within verification_rearm_s) and held without a break,
        or that has been in alarm ``verification_share`` of the time since its
        reset, never away longer than ``self_clear_s`` (smoke that keeps coming
        back). One later puff is neither:
        persistence, corroboration or the ceiling decide."""
        if not pol.verification_confirms:
            return None
        for d in alarming:
            ver = inc.verifications.get(d.key)
            if ver is None or ver.failed:
                continue
            if not ver.restart_end_mono <= now <= ver.confirm_end_mono:
                continue
            back_at_once = d.alarm_since_mono <= ver.reset_mono + pol.verification_rearm_s
            on_s = self._alarm_on_s(inc, d, now) - ver.alarm_s_at_reset
            since_s = now - ver.reset_mono
            # judged over at least twice the reset period: a few sprays of aerosol
            # in a row fill the first half minute as well as a smoulder does
            keeps_coming = (
                since_s >= 2 * pol.reset_window_s
                and on_s >= pol.verification_share * since_s
                and ver.longest_gap_s <= pol.self_clear_s  # never away long: not a new puff
            )
            if (back_at_once or keeps_coming) and self._trusted(d, pol, now):
                return d.key
        return None

    def _persisting(
        self,
        inc: _Incident,
        alarming: list[_Detector],
        now: float,
        pol: ZonePolicy,
        base: ZonePolicy,
    ) -> _Detector | None:
        for d in alarming:
            ver = inc.verifications.get(d.key)
            if (
                ver is not None
                and not ver.failed
                and d.alarm_since_mono >= ver.reset_mono
                and now < ver.restart_end_mono
            ):
                continue  # alarm verification decides for this detector until its end
            # a heat detector keeps the zone's own policy at every hour (no schedule)
            p = base if d.kind is DeviceKind.HEAT else pol
            if now - d.alarm_since_mono >= p.persistence_s:
                return d
        return None

    def _video_only(
        self, cams: list[_Camera], now: float, pol: ZonePolicy, base: ZonePolicy
    ) -> tuple[str, str, float] | None:
        """A camera alone: one class's detection held ``video_only_s`` from its
        own START, or its region grown ``video_growth_ratio`` x its own first
        area in two consecutive reports of the camera. Where smoke does not
        confirm (``video_smoke_confirms: false``, e.g. a kitchen's meal
        schedule) smoke is held to the zone's ceiling
        instead and its growth does not count, as a detector's alarm would be.
        Returns the rule, the reason and that detection's START."""
        for c in cams:
            for cls, t in c.tracks.items():
                smoke_held = cls is VideoClass.SMOKE and not pol.video_smoke_confirms
                hold = base.ceiling_s if smoke_held else pol.video_only_s
                if now - t.since_mono >= hold:
                    return (
                        "video_only",
                        f"camera {c.name} alone: {cls.value} confirmed for "
                        f"{now - t.since_mono:.0f} s"
                        + (
                            " (smoke does not confirm at this hour: held to the ceiling)"
                            if smoke_held
                            else ""
                        ),
                        t.since_mono,
                    )
                if t.first_area > 0 and t.held_area >= pol.video_growth_ratio * t.first_area:
                    return (
                        "video_growth",
                        f"camera {c.name} alone: {cls.value} region grew "
                        f"{t.held_area / t.first_area:.1f}x",
                        t.since_mono,
                    )
        return None

    def _close_nuisance(self, inc: _Incident, now: float, wall: float, out: EngineOutput) -> None:
        for key, onset in inc.alarm_onsets.items():
            det = self._detectors[key]
            det.nuisance_total += 1
            det.nuisance_period += 1
            det.nuisance_times.append(now)
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
        self._track_episode(d)
        out.decisions.append(d)

    # ------------------------------------------------ snapshot over a restart
    #
    # Everything the centre has been told is open (a forwarded fire incident,
    # an electrical pre-alarm, a fault) is carried over a restart of the agent
    # with the id of the decision that opened it, so that it ends with exactly
    # one RESTORE naming that id and is never forwarded a second time under a
    # new id. An alarm still being confirmed is carried too (its first alarm,
    # verification and "verifying" zone state), so that the hard ceiling still
    # counts from its first alarm, and so is each detector's trust record (its
    # short trips and held-back nuisances; the dirty bit the device reports
    # again). What is not carried: cameras' detections and analogue histories
    # (a camera confirms again within seconds; the trend is measured afresh).

    def _track_episode(self, d: Decision) -> None:
        key = _episode_key(d)
        if key is None:
            return
        if d.type is DecisionType.RESTORE:
            opened = self._episode_ids.pop(key, None)
            if opened is not None:
                d.details.setdefault("of_id", opened)
        else:
            self._episode_ids[key] = d.id

    def snapshot(self, now_mono: float, now_wall: float) -> dict[str, Any]:
        """Every episode the centre was told is open, JSON-ready (wall-clock
        times), for :meth:`restore` after a restart. ``active`` marks a fire
        incident with a detector or camera still in alarm: its last activity
        is then "now", whenever the agent stops."""

        def wall_of(mono: float) -> float:
            return now_wall - (now_mono - mono)

        fires = []
        for zone, inc in self._incidents.items():
            if not inc.confirmed:
                continue
            dets = self._zone_detectors.get(zone, [])
            cams = self._zone_cameras.get(zone, [])
            active = any(d.alarm or d.lost_in_alarm for d in dets) or any(c.active for c in cams)
            fires.append(
                {
                    "zone": zone,
                    "id": self._episode_ids.get(("fire", zone), ""),
                    "first_seen_wall": inc.first_wall,
                    "last_activity_wall": wall_of(inc.last_activity_mono),
                    "active": active,
                    "devices": list(inc.devices),
                    "cameras": list(inc.cameras),
                }
            )
        prealarms = [
            {
                "source": e.source,
                "point": e.point,
                "zone": e.zone,
                "id": self._episode_ids.get(("electrical", e.source, e.point), ""),
                "quantity": e.quantity.value if e.quantity else None,
                "value": e.value,
                "setpoint": e.setpoint,
                "reading_over": e.reading_over,
                "bit_active": e.bit_active,
                "first_seen_wall": e.over_since_wall,
            }
            for e in self._electrical.values()
            if e.reported
        ]
        faults = [
            {
                "source": f.source,
                "point": f.point,
                "zone": f.zone,
                "condition": f.condition.value,
                "id": self._episode_ids.get(("fault", f.source, f.point, f.condition.value), ""),
                "first_seen_wall": f.first_wall,
                "detail": f.detail,
                "intermittent": f.reported_intermittent,
            }
            for f in self._faults.values()
            if f.reported
        ]
        return {
            "version": SNAPSHOT_VERSION,
            "wall": now_wall,
            "mono": now_mono,
            "fires": fires,
            "prealarms": prealarms,
            "faults": faults,
            "confirming": [
                self._snapshot_confirming(inc)
                for inc in self._incidents.values()
                if not inc.confirmed
            ],
            "trust": self._snapshot_trust(now_mono),
        }

    # Alarms still being confirmed and each detector's trust record are carried
    # in this run's monotonic time (stable from one snapshot to the next, so the
    # file is rewritten only when something changes); ``restore`` shifts them by
    # the snapshot's own (mono, wall) and the wall-clock time since it.

    def _snapshot_confirming(self, inc: _Incident) -> dict[str, Any]:
        dets = []
        for key, onset in inc.alarm_onsets.items():
            d = self._detectors.get(key)
            if d is None:
                continue
            since = d.alarm_since_mono if d.alarm else inc.carried_alarms.get(key)
            cleared = d.cleared_mono if d.cleared_mono >= inc.first_mono else None
            dets.append(
                {
                    "source": d.source,
                    "point": d.point,
                    "kind": d.kind.value,
                    "onset": _r(onset),
                    "first_seen_wall": inc.alarm_first_wall.get(key, inc.first_wall),
                    "alarm_s": _r(inc.alarm_acc_s.get(key, 0.0)),
                    "own_clears": inc.own_clears.get(key, 0),
                    "longest_gap_s": _r(inc.longest_gap_s.get(key, 0.0)),
                    "alarm_since": None if since is None else _r(since),
                    "cleared": None if cleared is None else _r(cleared),
                    "lost": d.lost_in_alarm,
                }
            )
        return {
            "zone": inc.zone,
            "state_id": inc.state_id,
            "state_sent": inc.state_sent,
            "first_seen_wall": inc.first_wall,
            "first": _r(inc.first_mono),
            "last_activity": _r(inc.last_activity_mono),
            "devices": list(inc.devices),
            "cameras": list(inc.cameras),
            "video_seen": inc.video_seen,
            "video_fire": inc.video_fire,
            "detectors": dets,
            "verifications": {
                key: {
                    "reset": _r(v.reset_mono),
                    "restart_end": _r(v.restart_end_mono),
                    "confirm_end": _r(v.confirm_end_mono),
                    "command_id": v.command_id,
                    "failed": v.failed,
                    "alarm_s_at_reset": _r(v.alarm_s_at_reset),
                    "longest_gap_s": _r(v.longest_gap_s),
                }
                for key, v in inc.verifications.items()
            },
            "evidence": [
                {
                    "id": e.observation_id,
                    "source": e.source,
                    "what": e.what,
                    "wall": e.wall,
                    "mono": _r(e.mono),
                }
                for e in inc.evidence
            ],
        }

    def _snapshot_trust(self, now: float) -> dict[str, Any]:
        """Each detector's history that lowers its trust (short self-clearing
        trips, held-back nuisances) within the windows that still count it. The
        dirty / service bit is not kept: the device reports it again."""
        trust: dict[str, Any] = {}
        for d in self._detectors.values():
            pol = self._policy(d.zone)
            trips = [_r(t) for t in d.short_trips if t >= now - pol.distrust_window_s]
            held = [_r(t) for t in d.nuisance_times if t >= now - pol.trust_restore_s]
            if trips or held:
                trust[d.key] = {
                    "source": d.source,
                    "point": d.point,
                    "kind": d.kind.value,
                    "short_trips": trips[-MAX_CARRIED_TIMES:],
                    "nuisance_times": held[-MAX_CARRIED_TIMES:],
                }
        return trust

    def restore(
        self,
        doc: Mapping[str, Any],
        now_mono: float,
        now_wall: float,
        *,
        fault_grace_s: float = RESTART_FAULT_GRACE_S,
    ) -> EngineOutput:
        """Take back the open episodes of :meth:`snapshot` after a restart.

        Call once, before the first ``feed``. Returns the RESTOREs of episodes
        that ended while the agent was down (a fire incident quiet for
        ``incident_clear_s``, a device or zone no longer in the site config),
        each naming the opening decision in ``details.of_id``.

        A restored episode still active after the restart is never forwarded
        again: its source's first report meets an episode already reported.
        One that cleared meanwhile ends as it would have: a pre-alarm once
        the readings stay under the restore threshold (or the device's own bit
        is off), a fault once nothing re-reports it within ``fault_grace_s``
        (time for the source to be polled again) plus ``fault_restore_s``
        (a source that answers again sends no "offline cleared", so a fault
        is presumed cleared unless re-reported). Malformed entries are skipped.

        An alarm still being confirmed (version 2) goes on from its first
        alarm: a detector in alarm at the stop and again at its first report is
        one alarm from its first onset (persistence and the ceiling count from
        there); its verification goes on (no second reset) and its "verifying"
        zone state is the one the centre has (no second one; ``confirmed`` or
        ``held`` name it in ``details.of_id``). It is held open ``fault_grace_s``
        for its detectors to report; one that never reports again ends ``held``
        as any quiet incident. Version 1 (no such entries) is read as before.
        """
        out = EngineOutput()
        self._start(now_mono)
        version = doc.get("version")
        if version not in (1, SNAPSHOT_VERSION):
            return out

        def mono_of(wall: float) -> float:
            return now_mono - max(0.0, now_wall - wall)

        for item in _items(doc.get("fires")):
            try:
                zone, id_ = str(item["zone"]), str(item.get("id", ""))
                first, last = float(item["first_seen_wall"]), float(item["last_activity_wall"])
                active = bool(item.get("active", False))
                devices = tuple(str(x) for x in item.get("devices", ()))
                cameras = tuple(str(x) for x in item.get("cameras", ()))
            except (KeyError, TypeError, ValueError):
                continue
            if zone in self._incidents:
                continue
            if id_:
                self._episode_ids[("fire", zone)] = id_
            if active or now_wall - last < -60.0:  # still alarming, or a clock jump
                last = now_wall
            quiet_s = now_wall - last
            known = zone in self.site.policies
            if not known or quiet_s >= self._policy(zone).incident_clear_s:
                why = "while the gateway was restarting" if known else "zone no longer configured"
                self._emit(
                    out,
                    Decision(
                        type=DecisionType.RESTORE,
                        zone=zone,
                        reason=f"fire alarm in zone {zone} cleared: quiet for {quiet_s:.0f} s "
                        f"({why})",
                        first_seen_wall=first,
                        first_seen_mono=mono_of(first),
                        wall=now_wall,
                        mono=now_mono,
                        devices=devices,
                        cameras=cameras,
                        details={"of": DecisionType.FIRE_ALARM.value, "restarted": True},
                    ),
                )
                continue
            inc = _Incident(
                zone=zone,
                first_mono=mono_of(first),
                first_wall=first,
                last_activity_mono=mono_of(last),
                confirmed=True,
            )
            inc.devices.update(dict.fromkeys(devices))
            inc.cameras.update(dict.fromkeys(cameras))
            self._incidents[zone] = inc
            self.counters["incidents_resumed"] += 1

        for item in _items(doc.get("prealarms")):
            try:
                source, point, zone = str(item["source"]), str(item["point"]), str(item["zone"])
                id_ = str(item.get("id", ""))
                quantity = Quantity(item["quantity"]) if item.get("quantity") else None
                value, setpoint = float(item["value"]), float(item["setpoint"])
                first = float(item["first_seen_wall"])
                reading_over, bit = bool(item["reading_over"]), bool(item["bit_active"])
            except (KeyError, TypeError, ValueError):
                continue
            if id_:
                self._episode_ids[("electrical", source, point)] = id_
            if source not in self.site.devices:
                self._emit(
                    out,
                    Decision(
                        type=DecisionType.RESTORE,
                        zone=zone,
                        reason=f"electrical pre-alarm on {_key(source, point)} ended: "
                        "device no longer configured",
                        first_seen_wall=first,
                        first_seen_mono=mono_of(first),
                        wall=now_wall,
                        mono=now_mono,
                        devices=(source,),
                        details={
                            "of": DecisionType.ELECTRICAL_PREALARM.value,
                            "point": point,
                            "restarted": True,
                        },
                    ),
                )
                continue
            e = self._elec(source, point, self.site.zone_of(source, point, zone) or zone)
            e.quantity, e.value, e.setpoint = quantity, value, setpoint
            e.reading_over, e.bit_active, e.reported = reading_over, bit, True
            e.over_since_wall = first

        for item in _items(doc.get("faults")):
            try:
                source, point, zone = str(item["source"]), str(item["point"]), str(item["zone"])
                condition = Condition(item["condition"])
                id_ = str(item.get("id", ""))
                first = float(item["first_seen_wall"])
                detail, intermittent = str(item.get("detail", "")), bool(item["intermittent"])
            except (KeyError, TypeError, ValueError):
                continue
            if condition not in FAULT_CONDITIONS:
                continue
            if id_:
                self._episode_ids[("fault", source, point, condition.value)] = id_
            fzone = self.site.zone_of(source, point, "")
            if fzone is None:
                is_cam = source in self._cameras
                self._emit(
                    out,
                    Decision(
                        type=DecisionType.RESTORE,
                        zone=zone,
                        reason=f"{_key(source, point)}: {condition.value} ended: "
                        "no longer configured",
                        first_seen_wall=first,
                        first_seen_mono=mono_of(first),
                        wall=now_wall,
                        mono=now_mono,
                        devices=() if is_cam else (source,),
                        cameras=(source,) if is_cam else (),
                        details={
                            "of": DecisionType.FAULT.value,
                            "condition": condition.value,
                            "point": point,
                            "restarted": True,
                        },
                    ),
                )
                continue
            # presumed cleared from the end of the grace on (see the docstring);
            # a re-report before then makes it active again, already reported
            self._carry_until_mono = max(self._carry_until_mono, now_mono + fault_grace_s)
            self._faults[(source, point, condition)] = _Fault(
                source,
                point,
                fzone,
                condition,
                active=False,
                since_mono=now_mono + fault_grace_s,
                first_wall=first,
                detail=detail,
                reported=True,
                reported_intermittent=intermittent,
            )
        if version != 1:
            shift = _carry_shift(doc, now_mono, now_wall)
            if shift is not None:
                snap_mono = float(doc["mono"])
                self._restore_trust(doc.get("trust"), snap_mono, shift)
                for item in _items(doc.get("confirming")):
                    self._restore_confirming(
                        item, snap_mono, shift, now_mono, now_wall, fault_grace_s, out
                    )
        return out

    def _restore_trust(self, value: Any, snap_mono: float, shift: float) -> None:
        if not isinstance(value, Mapping):
            return
        for item in value.values():
            if not isinstance(item, Mapping):
                continue
            try:
                det = self._carried_detector(item)
                trips = [_past(t, snap_mono) + shift for t in item.get("short_trips", ())]
                held = [_past(t, snap_mono) + shift for t in item.get("nuisance_times", ())]
            except (KeyError, TypeError, ValueError):
                continue
            if det is None:
                continue
            det.short_trips.extend(sorted(trips)[-MAX_CARRIED_TIMES:])
            det.nuisance_times.extend(sorted(held)[-MAX_CARRIED_TIMES:])

    def _carried_detector(self, item: Mapping[str, Any]) -> _Detector | None:
        """The detector a carried record names, if the site still has it."""
        source, point = str(item["source"]), str(item.get("point", ""))
        kind = DeviceKind(item["kind"])
        if kind not in DETECTOR_KINDS:
            return None
        zone = self.site.zone_of(source, point, "")
        if zone is None:
            return None
        return self._detector(source, point, zone, kind)

    def _restore_confirming(
        self,
        item: Mapping[str, Any],
        snap_mono: float,
        shift: float,
        now: float,
        wall: float,
        grace_s: float,
        out: EngineOutput,
    ) -> None:
        """An alarm still being confirmed when the agent stopped: it goes on
        from its first alarm (the ceiling counts from there), with its
        verification and its "verifying" zone state; held open ``grace_s`` for
        its detectors to report again, then it ends as it would have."""
        try:
            zone = str(item["zone"])
            inc = _Incident(
                zone=zone,
                first_mono=_past(item["first"], snap_mono) + shift,
                first_wall=float(item["first_seen_wall"]),
                last_activity_mono=_past(item["last_activity"], snap_mono) + shift,
                state_sent=bool(item.get("state_sent", False)),
                state_id=str(item.get("state_id", "")),
                video_seen=bool(item.get("video_seen", False)),
                video_fire=bool(item.get("video_fire", False)),
                stopped_mono=snap_mono + shift,
                resume_until_mono=now + grace_s,
            )
            inc.devices.update(dict.fromkeys(str(x) for x in item.get("devices", ())))
            inc.cameras.update(dict.fromkeys(str(x) for x in item.get("cameras", ())))
            evidence = [
                Evidence(
                    observation_id=str(e["id"]),
                    source=str(e["source"]),
                    what=str(e["what"]),
                    wall=float(e["wall"]),
                    mono=_past(e["mono"], snap_mono) + shift,
                )
                for e in _items(item.get("evidence"))
            ]
        except (KeyError, TypeError, ValueError):
            return
        inc.evidence = evidence[:MAX_EVIDENCE]
        if zone not in self.site.policies or zone in self._incidents:
            if zone not in self.site.policies and inc.state_sent:
                self._zone_state(inc, "held", "zone no longer configured", now, wall, out)
            return
        for d_item in _items(item.get("detectors")):
            try:
                det = self._carried_detector(d_item)
                if det is None or det.zone != zone:
                    continue
                key = det.key
                onset = _past(d_item["onset"], snap_mono) + shift
                first_wall = float(d_item["first_seen_wall"])
                acc, gap = float(d_item["alarm_s"]), float(d_item["longest_gap_s"])
                clears = int(d_item["own_clears"])
                since, cleared = d_item.get("alarm_since"), d_item.get("cleared")
                since_mono = None if since is None else _past(since, snap_mono) + shift
                cleared_mono = None if cleared is None else _past(cleared, snap_mono) + shift
            except (KeyError, TypeError, ValueError):
                continue
            inc.alarm_onsets[key] = onset
            inc.alarm_first_wall[key] = first_wall
            inc.alarm_acc_s[key], inc.longest_gap_s[key] = max(0.0, acc), max(0.0, gap)
            inc.own_clears[key] = max(0, clears)
            if since_mono is not None:
                inc.carried_alarms[key] = since_mono
            if cleared_mono is not None:
                det.cleared_mono = cleared_mono
            if d_item.get("lost"):
                det.lost_in_alarm = True
        for key, v in (item.get("verifications") or {}).items():
            try:
                inc.verifications[str(key)] = _Verification(
                    reset_mono=_past(v["reset"], snap_mono) + shift,
                    restart_end_mono=float(v["restart_end"]) + shift,
                    confirm_end_mono=float(v["confirm_end"]) + shift,
                    command_id=str(v["command_id"]),
                    failed=bool(v["failed"]),
                    alarm_s_at_reset=float(v["alarm_s_at_reset"]),
                    longest_gap_s=float(v["longest_gap_s"]),
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        self._incidents[zone] = inc
        self.counters["confirming_resumed"] += 1


def _r(t: float) -> float:
    return round(t, 3)


def _past(value: Any, snap_mono: float) -> float:
    """A carried time of the old run, never after its snapshot (nor NaN)."""
    t = float(value)
    if t != t:  # NaN
        raise ValueError("not a time")
    return min(t, snap_mono)


def _carry_shift(doc: Mapping[str, Any], now_mono: float, now_wall: float) -> float | None:
    """What to add to the old run's monotonic times to make them this run's:
    the time since the snapshot is the wall clock's, never negative (a clock
    set back: the stop is then counted as nothing, so what was carried is
    never made younger than it was at the stop) and at most a day (a clock
    set forward only makes it older, so a ceiling comes earlier, never later)."""
    try:
        snap_mono, snap_wall = float(doc["mono"]), float(doc["wall"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (abs(snap_mono) < 1e15 and abs(snap_wall) < 1e15):  # also NaN, inf
        return None
    down = now_wall - snap_wall
    down = min(max(down, 0.0), MAX_CARRIED_DOWNTIME_S) if down == down else 0.0
    return now_mono - down - snap_mono


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _episode_key(d: Decision) -> tuple[str, ...] | None:
    """What episode a decision opens or ends (None: not one carried over a restart)."""
    if d.zone == GATEWAY_ZONE:
        return None
    kind = d.details.get("of", d.type.value) if d.type is DecisionType.RESTORE else d.type.value
    if kind == DecisionType.FIRE_ALARM.value:
        return ("fire", d.zone)
    point = str(d.details.get("point", ""))
    if kind == DecisionType.ELECTRICAL_PREALARM.value and d.devices:
        return ("electrical", d.devices[0], point)
    if kind == DecisionType.FAULT.value and (d.devices or d.cameras):
        source = d.devices[0] if d.devices else d.cameras[0]
        return ("fault", source, point, str(d.details.get("condition", "")))
    return None
