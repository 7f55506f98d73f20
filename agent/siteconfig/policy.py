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

from pydantic import Field, model_validator

from agent.model import Strict


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
        description="a camera alone confirms at once when its region grows to this multiple "
        "of the first confirmed region's area",
    )
    heat_rise_c: float = Field(
        default=8.0, gt=0, le=100, description="a temperature rise in the zone that corroborates"
    )
    heat_rise_window_s: float = Field(
        default=120.0, gt=0, le=3600, description="the rise counts within this window"
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

    @model_validator(mode="after")
    def _ceiling_after_windows(self) -> ZonePolicy:
        if self.persistence_s > self.ceiling_s:
            raise ValueError(
                f"persistence_s ({self.persistence_s:g}) must not exceed ceiling_s "
                f"({self.ceiling_s:g}): the ceiling is the latest an alarm may be held"
            )
        return self
