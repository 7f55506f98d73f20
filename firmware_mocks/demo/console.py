"""The demo's live timeline and summary, and what a run's result holds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from agent.events import DecisionType
from firmware_mocks.demo.script import Happening

NUISANCE_TYPES = (DecisionType.FIRE_ALARM.value, DecisionType.ELECTRICAL_PREALARM.value)


@dataclass
class DemoResult:
    speed: float
    upstream: str
    cameras: bool
    day_s: float = 0.0
    real_s: float = 0.0
    raw_alarms: list[Happening] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    resets: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fire_zone: str = ""
    interrupted: bool = False
    until_s: float | None = None  # --until cut the day here (scenario seconds)
    decision_t: dict[str, float] = field(default_factory=dict)  # id -> scenario s confirmed
    # --uplink gb26875: frames the mock centre confirmed, and whether a fire state was one
    centre_frames: int | None = None
    centre_fire: bool = False

    @property
    def fire_started_t(self) -> float | None:
        """Scenario time of the first detector alarm (smoke, camera, panel) in the fire zone."""
        ts = [h.t for h in self.raw_alarms if h.zone == self.fire_zone and h.detector_alarm]
        return min(ts) if ts else None

    @property
    def fire_alert_t(self) -> float | None:
        return self.decision_t.get(self.fire_alerts[0]["id"]) if self.fire_alerts else None

    def of(self, type_: str, zone: str | None = None) -> list[dict[str, Any]]:
        return [
            d for d in self.decisions if d["type"] == type_ and (zone is None or d["zone"] == zone)
        ]

    @property
    def fire_alerts(self) -> list[dict[str, Any]]:
        return self.of(DecisionType.FIRE_ALARM.value, self.fire_zone)

    @property
    def forwarded_nuisances(self) -> list[dict[str, Any]]:
        return [
            d for d in self.decisions if d["type"] in NUISANCE_TYPES and d["zone"] != self.fire_zone
        ]

    @property
    def time_to_alert_s(self) -> float | None:
        """First raw alarm of the fire incident to the forwarded fire alarm (agent's clock)."""
        if not self.fire_alerts:
            return None
        d = self.fire_alerts[0]
        return epoch_of(d["confirmed_at"]) - epoch_of(d["first_seen"])

    @property
    def problems(self) -> list[str]:
        out = []
        if self.interrupted:
            out.append("interrupted before the end of the day")
        if self.fire_not_reached:
            out.append(f"the day was cut (--until) before the fire in the {self.fire_zone}")
        elif not self.fire_alerts:
            out.append(f"the fire in the {self.fire_zone} was not forwarded")
        for d in self.forwarded_nuisances:
            out.append(f"a nuisance was forwarded: {d['type']} in {d['zone']}: {d['reason']}")
        if self.centre_frames is not None and not self.centre_fire and not self.interrupted:
            out.append("the GB/T 26875.3 centre received no fire alarm state")
        if self.errors:
            out.append(f"the agent logged {len(self.errors)} error(s), first: {self.errors[0]}")
        return out

    @property
    def fire_not_reached(self) -> bool:
        """--until ended the day before the fire's first sign: nothing to judge about it."""
        start = self.fire_started_t
        return (
            not self.fire_alerts
            and self.until_s is not None
            and (start is None or self.until_s < start)
        )

    @property
    def ok(self) -> bool:
        return not self.problems


def epoch_of(iso_text: str) -> float:
    return datetime.fromisoformat(iso_text).timestamp()


# ------------------------------------------------------------------ the console


class Console:
    """The live timeline: one line per thing, simulated time of day first."""

    def __init__(self, out: TextIO, day_start_wall: float) -> None:
        self.out = out
        self.day_start_wall = day_start_wall

    def clock(self, t: float) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.day_start_wall + t))

    def line(self, t: float, tag: str, zone: str, text: str) -> None:
        self.out.write(f"{self.clock(t)}  {tag:<7} {zone:<16} {text}\n")
        self.out.flush()

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


def decision_zone(r: DemoResult, decision_id: str) -> str:
    return next((d["zone"] for d in r.decisions if d["id"] == decision_id), "")


def decision_line(d: dict[str, Any]) -> str:
    type_ = d["type"]
    label = type_.replace("_", " ").upper() if type_ in NUISANCE_TYPES else type_
    rule = (d.get("details") or {}).get("rule")
    bits = []
    if type_ == DecisionType.FIRE_ALARM.value:
        bits.append("verified" if d.get("verified") else "NOT verified (time ceiling)")
        if rule:
            bits.append(f"rule {rule}")
        cams = d.get("cameras") or []
        if cams:
            bits.append(f"camera {', '.join(cams)}")
    extra = f" ({', '.join(bits)})" if bits else ""
    return f"{label}{extra}: {d['reason']}"


def print_summary(con: Console, r: DemoResult, kept: Path | None) -> None:
    con.say()
    con.say(f"Summary: {r.day_s / 60:.1f} minutes of the school day in {r.real_s:.0f} s")
    by_type: dict[str, int] = {}
    for d in r.decisions:
        by_type[d["type"]] = by_type.get(d["type"], 0) + 1
    nuisance_raw = [h for h in r.raw_alarms if h.zone != r.fire_zone]
    fire_raw = [h for h in r.raw_alarms if h.zone == r.fire_zone]
    con.say(
        f"  raw alarms from the devices  {len(r.raw_alarms):3d}   "
        f"({len(nuisance_raw)} nuisances, {len(fire_raw)} from the fire)"
    )
    con.say(
        f"  forwarded alerts             {len(r.decisions):3d}   "
        + (", ".join(f"{k} {v}" for k, v in sorted(by_type.items())) or "none")
    )
    held = len(nuisance_raw) - len(r.forwarded_nuisances)
    spikes = sum(1 for h in nuisance_raw if not h.detector_alarm)
    con.say(
        f"  nuisances held back          {max(0, held):3d}   "
        f"({len(r.suppressed)} after alarm verification, kept in the local nuisance log; "
        f"{spikes} electrical spike(s) shorter than the sustain time)"
    )
    tta = r.time_to_alert_s
    if tta is not None:
        d = r.fire_alerts[0]
        rule = (d.get("details") or {}).get("rule", "?")
        start, alert = r.fire_started_t, r.fire_alert_t
        since = (
            f"{alert - start:.1f} s after the first detector sign in the room ({con.clock(start)}); "
            if start is not None and alert is not None
            else ""
        )
        con.say(
            f"  time to alert for the fire   forwarded at {con.clock(alert or 0)}, {since}"
            f"rule {rule}, {'verified' if d.get('verified') else 'NOT verified'}; "
            f"the gateway decided {tta:.1f} s after reading the first alarm"
        )
    elif r.fire_not_reached:
        con.say(f"  fire in the {r.fire_zone}: not reached (the day was cut by --until)")
    elif not r.interrupted:
        con.say(f"  fire in the {r.fire_zone}: NOT forwarded")
    if r.centre_frames is not None:
        con.say(
            f"  GB/T 26875.3 centre          {r.centre_frames:3d}   frames confirmed; fire alarm "
            f"state {'received' if r.centre_fire else 'NOT received'}"
        )
    con.say(f"  errors logged by the agent   {len(r.errors):3d}")
    if kept is not None:
        con.say(f"  state folder kept: {kept} (site.yaml, outbox.db, nuisance.jsonl, agent.log)")
    if r.interrupted:
        con.say(f"Result: stopped at {con.clock(r.day_s)} (Ctrl-C), before the end of the day.")
    elif r.ok:
        con.say("Result: OK - the fire was forwarded, every nuisance was held back.")
    elif r.fire_not_reached and len(r.problems) == 1:
        start = r.fire_started_t
        fire_at = f" (it starts at {con.clock(start)})" if start is not None else ""
        con.say(
            f"Result: INCOMPLETE - the day was cut at {con.clock(r.until_s or 0)} (--until), "
            f"before the fire{fire_at}: nothing went wrong so far, but the run proves "
            "nothing about the fire. Run without --until for the whole morning."
        )
    else:
        con.say("Result: FAILED")
        for p in r.problems:
            con.say(f"  - {p}")
