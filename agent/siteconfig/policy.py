"""Confirmation policy of a zone: the time windows of alarm confirmation.

Defaults come from practice (../shared/reference/standards.md); the engine
that applies them is agent.engine (see docs/confirmation.md):

* UL 864 / NFPA 72 alarm verification: retard-reset-restart at most 60 s,
  then a confirmation period of at least 60 s.
* GB/T 45839-2025: detector to on-site platform <= 30 s, on-site to remote
  < 10 s; fault indication within 100 s.
* GB 14287: electrical-fire alarm within 30 s (residual current), 40 s
  (temperature).

Every window is in seconds of the agent's monotonic clock and counts from the
first raw observation (the read time on the bus), not from when the engine
saw it.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from pydantic import Field, field_validator, model_validator

from agent.model import Strict

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ZoneSchedule(Strict):
    """Hours during which a zone needs more to confirm (kitchen at breakfast,
    changing room after PE). Each field left out keeps the zone's own value.

    A schedule never raises anything above the zone's ``ceiling_s`` and never
    applies to manual call points, a panel's fire signals or heat detectors:
    those keep the zone's own policy at every hour."""

    name: str = Field(default="", description='what happens then, for people ("breakfast")')
    days: tuple[str, ...] = Field(default=DAYS, description="mon..sun; default every day")
    start: str = Field(description="local time HH:MM the hours begin")
    end: str = Field(description="local time HH:MM they end (before start: across midnight)")
    timezone: str = Field(default="UTC", description="IANA time zone of start/end")
    persistence_s: float | None = Field(
        default=None, gt=0, le=300, description="continuous alarm that confirms, during the hours"
    )
    verification: bool | None = Field(
        default=None,
        description="false: a detector in alarm again after its reset is not enough then "
        "(steam outlasts a reset); the detector is still reset",
    )
    video_smoke_confirms: bool | None = Field(
        default=None,
        description="false: a camera's smoke (steam looks like smoke) does not confirm a "
        "detector then; flames, a growing region or heat still do",
    )

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f'{v!r} is not a time of day HH:MM (24 h), e.g. "07:30"')
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in v if d not in DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {bad}: use {', '.join(DAYS)}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}: use an IANA name such as Asia/Shanghai"
            ) from None
        return v

    def covers(self, wall: float) -> bool:
        """Whether the wall-clock time ``wall`` (Unix seconds) falls in these hours."""
        local = dt.datetime.fromtimestamp(wall, zoneinfo.ZoneInfo(self.timezone))
        hhmm = f"{local.hour:02d}:{local.minute:02d}"
        day = DAYS[local.weekday()]
        if self.start <= self.end:
            return day in self.days and self.start <= hhmm < self.end
        if hhmm >= self.start:  # across midnight: the evening part belongs to its day
            return day in self.days
        return hhmm < self.end and DAYS[(local.weekday() - 1) % 7] in self.days


class ZonePolicy(Strict):
    """How observations in one zone become decisions. Every field has a default."""

    coincidence_window_s: float = Field(
        default=60.0,
        gt=0,
        le=600,
        description="a second detector of the zone in alarm within this confirms; also how "
        "long an unconfirmed zone incident stays open after its last activity",
    )
    verification: bool = Field(
        default=True, description="reset a resettable detector and wait for it to alarm again"
    )
    reset_window_s: float = Field(
        default=30.0,
        gt=0,
        le=60,
        description="retard-reset-restart period after the reset (UL 864: at most 60 s); a "
        "detector still or again in alarm at its end is a confirmed alarm",
    )
    confirmation_window_s: float = Field(
        default=60.0,
        ge=60,
        le=600,
        description="after the reset period, a new alarm within this confirms (UL 864: >= 60 s)",
    )
    persistence_s: float = Field(
        default=45.0,
        gt=0,
        le=300,
        description="continuous alarm that confirms (detectors that cannot be reset, or "
        "whose reset failed)",
    )
    ceiling_s: float = Field(
        default=90.0,
        gt=0,
        le=300,
        description="a persisting alarm is forwarded (unverified) at the latest after this",
    )
    video_confirms: bool = Field(
        default=True, description="a confirmed video detection in the zone confirms a detector"
    )
    video_smoke_confirms: bool = Field(
        default=True,
        description="false: only flames (not smoke, which steam resembles) confirm a detector",
    )
    verification_confirms: bool = Field(
        default=True,
        description="false: a detector back in alarm after its reset is not enough to confirm "
        "(persistence, corroboration or the ceiling decide)",
    )
    video_only_s: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="a camera alone (no detector) must hold a confirmed fire this long",
    )
    video_growth_ratio: float = Field(
        default=1.5,
        gt=1,
        le=100,
        description="a camera alone confirms when its region grows to this multiple "
        "of the first confirmed region's area in two consecutive reports of the camera",
    )
    heat_rise_c: float = Field(
        default=8.0, gt=0, le=100, description="a temperature rise in the zone that corroborates"
    )
    heat_rise_window_s: float = Field(
        default=120.0, gt=0, le=3600, description="the rise counts within this window"
    )
    heat_climb_s: float = Field(
        default=10.0,
        ge=0,
        le=120,
        description="a heat detector in alarm this long whose own temperature kept climbing "
        "at heat_climb_c_per_min or faster all that time is a growing fire, not a heating "
        "test (the heat gun comes off at the alarm): its alarm confirms (rule heat_climb); "
        "0: off (the alarm then waits for persistence like any detector)",
    )
    heat_climb_c_per_min: float = Field(
        default=8.0,
        gt=0,
        le=100,
        description="the climb, C per minute, over heat_climb_s (a rate-of-rise heat "
        "detector responds from about 8 C a minute: UL 521's 15 F)",
    )
    electrical_sustain_s: float = Field(
        default=10.0,
        gt=0,
        le=30,
        description="over the setpoint this long before a pre-alarm (GB 14287: within 30 s); "
        "also how long below the restore level before a restore",
    )
    residual_current_setpoint_ma: float = Field(
        default=300.0, ge=20, le=1000, description="used where a device reports no setpoint"
    )
    cable_temperature_setpoint_c: float = Field(
        default=70.0, ge=45, le=140, description="used where a device reports no setpoint"
    )
    restore_hysteresis: float = Field(
        default=0.9, gt=0, lt=1, description="restore below this fraction of the setpoint"
    )
    fault_debounce_s: float = Field(
        default=30.0, ge=0, le=90, description="a fault must hold this long (report within 100 s)"
    )
    fault_flap_count: int = Field(
        default=3,
        ge=2,
        le=100,
        description="this many fault onsets within fault_flap_window_s report an intermittent "
        "fault even if none held for fault_debounce_s",
    )
    fault_flap_window_s: float = Field(default=100.0, gt=0, le=100)
    fault_restore_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="a reported fault must stay clear this long before its restore is sent "
        "(a flapping device gives one fault, not a flood)",
    )
    incident_clear_s: float = Field(
        default=300.0,
        ge=10,
        le=86400,
        description="a forwarded fire incident ends (restore) after the zone is quiet this "
        "long; until then further alarms belong to the same incident",
    )

    # ---- evidence (issue 15): which alarms are independent, trusted witnesses
    self_clear_s: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="an alarm that clears on its own (no reset) within this is a short trip: "
        "dust, insects, a dirty chamber",
    )
    distrust_trips: int = Field(
        default=2,
        ge=1,
        le=100,
        description="this many short trips within distrust_window_s, or this many held-back "
        "nuisances within trust_restore_s, and a detector is not trusted alone",
    )
    distrust_window_s: float = Field(default=600.0, gt=0, le=86400)
    trust_restore_s: float = Field(
        default=86400.0,
        gt=0,
        le=30 * 86400,
        description="a detector with no nuisance for this long is trusted again",
    )
    verification_rearm_s: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="alarm verification confirms a detector back in alarm within this after "
        "its reset and still in alarm, without a break, at the end of reset_window_s",
    )
    verification_share: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="alarm verification also confirms a detector in alarm after the reset "
        "period that has been in alarm this share of the time since its reset (smoke that "
        "keeps coming back); one later puff of steam stays below it",
    )
    coincidence_independent_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="two detectors whose alarms begin within this of each other are one burst "
        "(dust), not two witnesses, unless both hold coincidence_hold_s",
    )
    coincidence_hold_s: float = Field(default=10.0, gt=0, le=300)
    ceiling_alarm_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="the hard ceiling forwards a recurring alarm once its detector has been in "
        "alarm at least this share of the time since its first alarm (short trips of dust or "
        "insects stay below it; a lost detector always counts)",
    )
    shape_climb_s: float = Field(
        default=60.0,
        gt=0,
        le=600,
        description="a detector whose own analogue smoke level (obscuration) has climbed "
        "steadily for this long when it alarms is a smoulder, not steam or dust (which rise "
        "and fall within seconds): its alarm confirms (rule signal_shape)",
    )
    schedules: tuple[ZoneSchedule, ...] = Field(
        default=(), description="hours during which the zone needs more to confirm"
    )

    @model_validator(mode="after")
    def _ceiling_after_windows(self) -> ZonePolicy:
        if self.persistence_s > self.ceiling_s:
            raise ValueError(
                f"persistence_s ({self.persistence_s:g}) must not exceed ceiling_s "
                f"({self.ceiling_s:g}): the ceiling is the latest an alarm may be held"
            )
        for i, sch in enumerate(self.schedules):
            if sch.persistence_s is not None and sch.persistence_s > self.ceiling_s:
                raise ValueError(
                    f"schedules[{i}] ({sch.name or sch.start + '-' + sch.end}): persistence_s "
                    f"({sch.persistence_s:g}) must not exceed ceiling_s ({self.ceiling_s:g}): "
                    "a schedule never holds an alarm past the ceiling"
                )
        return self

    def at(self, wall: float) -> ZonePolicy:
        """The policy in force at wall-clock time ``wall``: this one with the
        overrides of every schedule that covers it (the strictest wins)."""
        if not self.schedules:
            return self
        upd: dict[str, object] = {}
        persistence_s = self.persistence_s
        for sch in self.schedules:
            if not sch.covers(wall):
                continue
            if sch.persistence_s is not None and sch.persistence_s > persistence_s:
                persistence_s = upd["persistence_s"] = sch.persistence_s
            if sch.verification is False:
                upd["verification_confirms"] = False
            if sch.video_smoke_confirms is False:
                upd["video_smoke_confirms"] = False
        if not upd:
            return self
        return self.model_copy(update=upd)
