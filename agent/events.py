"""The typed event model shared by every part of the agent.

Data flows one way::

    drivers, cameras  --Observation-->  confirmation engine  --Decision-->  outbox  -->  uplink
                      <--Command------  (explicit, e.g. reset a detector)

Every event carries two times:

* ``wall``: seconds since the Unix epoch (UTC), for people and the monitoring
  centre; it can jump when NTP corrects the clock.
* ``mono``: seconds on the agent's monotonic clock, for durations and ordering
  inside the gateway; it never jumps, but it means nothing outside this process.

Times are taken where the fact was observed (at read time on the bus, at
capture time for a frame), never at conversion or publish time.

Events are frozen dataclasses with slots: cheap to create on the hot path,
hashable, and safe to share between tasks. ``to_dict`` gives a JSON-ready form.
"""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


def new_id() -> str:
    """A fresh random UUID (text form), the receiver's de-duplication key."""
    return str(uuid.uuid4())


def iso(wall: float) -> str:
    """Wall-clock seconds as an ISO 8601 UTC string with milliseconds (truncated,
    as ``datetime.isoformat(timespec="milliseconds")`` does after
    ``fromtimestamp`` rounds to the microsecond)."""
    global _iso_second
    frac, whole = math.modf(wall)
    us = round(frac * 1e6)  # fromtimestamp's rounding (half to even)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    second, head = _iso_second
    if second != whole:  # formatted once per second: the uplink stamps every publish
        head = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _iso_second = (whole, head)
    return f"{head}.{us // 1000:03d}Z"


_iso_second: tuple[float, str] = (math.nan, "")  # (whole second, its text) last formatted


class DeviceKind(enum.StrEnum):
    """What a device is, in the field's words; decides which policy applies."""

    SMOKE = "smoke"  # point smoke detector (optical / ionisation)
    HEAT = "heat"  # point heat detector or linear heat
    MULTI = "multi"  # multi-sensor smoke/heat
    MANUAL_CALL_POINT = "manual_call_point"  # a person pressed the button: no verification
    PANEL = "panel"  # fire alarm control panel (its fire signal is already confirmed)
    RESIDUAL_CURRENT = "residual_current"  # residual-current (leakage) monitor
    ELECTRICAL_FIRE = "electrical_fire"  # leakage plus cable temperatures
    CAMERA = "camera"


class Condition(enum.StrEnum):
    """A two-state condition a device (or one point of it) can be in."""

    ALARM = "alarm"  # fire alarm from a detector, panel or call point
    PREALARM = "prealarm"  # device's own early warning (electrical monitors, some panels)
    FAULT = "fault"  # sensor/wiring fault reported by the device itself
    DIRTY = "dirty"  # service required: dirty chamber, drift compensation limit
    OFFLINE = "offline"  # the gateway cannot reach the device
    DISABLED = "disabled"  # isolated / disabled at the panel
    STALE = "stale"  # camera: no frames arrive
    FROZEN = "frozen"  # camera: the same frame over and over


class Quantity(enum.StrEnum):
    """The physical quantity of a reading; fixes its unit."""

    RESIDUAL_CURRENT_MA = "residual_current_ma"
    TEMPERATURE_C = "temperature_c"
    CURRENT_A = "current_a"
    VOLTAGE_V = "voltage_v"
    SMOKE_DB_M = "smoke_db_m"  # obscuration, dB/m
    SMOKE_PERCENT_FT = "smoke_percent_ft"  # obscuration, %/ft
    LEVEL = "level"  # dimensionless analogue level (e.g. 4-20 mA mapped)
    SIGNAL_DBM = "signal_dbm"


class VideoClass(enum.StrEnum):
    SMOKE = "smoke"
    FIRE = "fire"


# --------------------------------------------------------------------- observations


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """Something a driver or camera saw. ``source`` is the device or camera name
    from the site config (unique per site); ``point`` names a sub-part of it
    (a loop of a monitor, a panel address) or is empty."""

    source: str
    zone: str
    wall: float
    mono: float
    point: str = ""
    id: str = field(default_factory=new_id)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event"] = type(self).__name__
        d["time"] = iso(self.wall)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading(Observation):
    """A measured value, already decoded and scaled by the device profile."""

    quantity: Quantity
    value: float
    unit: str
    setpoint: float | None = None  # the device's own alarm setpoint, where it reports one


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChange(Observation):
    """A device (or point) entered (``active=True``) or left a condition.

    Drivers emit a change only on an edge, plus the current state once when a
    device first answers, so that the engine starts from the truth.
    """

    kind: DeviceKind
    condition: Condition
    active: bool
    detail: str = ""  # e.g. "open circuit", "panel text: FIRE L1 A023"


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    """A box in frame pixel coordinates, with the class score inside it."""

    x: int
    y: int
    w: int
    h: int
    score: float
    cls: VideoClass

    @property
    def area(self) -> int:
        return self.w * self.h


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoDetection(Observation):
    """A camera's view of smoke or fire.

    ``confirmed`` is False for a single frame's raw scores and True once the
    per-camera vote over a window of frames has passed; ``active=False`` with
    ``confirmed=True`` says a confirmed detection has ended (hysteresis).
    """

    cls: VideoClass
    score: float
    confirmed: bool
    active: bool = True
    regions: tuple[Region, ...] = ()
    frame_size: tuple[int, int] = (0, 0)  # width, height
    snapshot_jpeg: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = Observation.to_dict(self)
        d["snapshot_jpeg"] = None if self.snapshot_jpeg is None else len(self.snapshot_jpeg)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult(Observation):
    """What became of a command sent to a device (see ``Command``)."""

    command_id: str
    action: str
    ok: bool
    detail: str = ""


# ------------------------------------------------------------------------ commands


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """An explicit request from the engine to one device, e.g. ``action="reset"``
    for alarm verification. Bus workers run it between polls."""

    target: str  # device name
    action: str
    wall: float
    mono: float
    id: str = field(default_factory=new_id)


# ----------------------------------------------------------------------- decisions


class DecisionType(enum.StrEnum):
    """What leaves the gateway. The order of ``PRIORITY`` is the outbox's order."""

    FIRE_ALARM = "fire_alarm"
    ELECTRICAL_PREALARM = "electrical_prealarm"
    FAULT = "fault"
    RESTORE = "restore"
    STATS = "stats"
    # a zone's retained state (verifying / confirmed / held): shown, never paged
    ZONE_STATE = "zone_state"


# Zone of decisions about the gateway itself (its parts, outbox, uplink).
# Zone ids in a site config cannot start with "_", so it never collides.
GATEWAY_ZONE = "_gateway"

PRIORITY: dict[DecisionType, int] = {
    DecisionType.FIRE_ALARM: 0,
    DecisionType.ELECTRICAL_PREALARM: 1,
    DecisionType.FAULT: 2,
    DecisionType.RESTORE: 3,
    DecisionType.STATS: 4,
    DecisionType.ZONE_STATE: 0,  # "verifying" must reach the centre within seconds
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """One observation that contributed to a decision, with its times."""

    observation_id: str
    source: str
    what: str  # e.g. "alarm", "video smoke 0.82 confirmed", "temperature 71.5 C"
    wall: float
    mono: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the gateway decided and why; the unit the outbox stores and the
    uplink publishes. ``id`` is stable from creation to delivery."""

    type: DecisionType
    zone: str
    reason: str
    first_seen_wall: float  # first raw observation that led here
    first_seen_mono: float
    wall: float  # when the decision was taken (confirmed_at)
    mono: float
    devices: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    verified: bool = True  # False: forwarded by the hard ceiling without confirmation
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    snapshot_jpeg: bytes | None = field(default=None, repr=False, hash=False, compare=False)
    id: str = field(default_factory=new_id)

    @property
    def priority(self) -> int:
        return PRIORITY[self.type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form without the snapshot (that travels on its own topic)."""
        return {
            "id": self.id,
            "type": self.type.value,
            "zone": self.zone,
            "reason": self.reason,
            "verified": self.verified,
            "devices": list(self.devices),
            "cameras": list(self.cameras),
            "first_seen": iso(self.first_seen_wall),
            "confirmed_at": iso(self.wall),
            "evidence": [
                {
                    "observation_id": e.observation_id,
                    "source": e.source,
                    "what": e.what,
                    "time": iso(e.wall),
                    "after_first_s": round(e.mono - self.first_seen_mono, 3),
                }
                for e in self.evidence
            ],
            "details": dict(self.details),
            "has_snapshot": self.snapshot_jpeg is not None,
        }


def gateway_decision(
    type_: DecisionType, reason: str, *, part: str, wall: float, mono: float, **details: Any
) -> Decision:
    """A decision about the gateway itself (a part failed, the outbox is full):
    zone GATEWAY_ZONE, observed and decided at the same instant."""
    return Decision(
        type=type_,
        zone=GATEWAY_ZONE,
        reason=reason,
        first_seen_wall=wall,
        first_seen_mono=mono,
        wall=wall,
        mono=mono,
        details={"part": part, **details},
    )
