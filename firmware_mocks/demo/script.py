"""The demo's day as console lines: what each scripted event does, in the devices' words."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.events import Condition, DeviceKind
from agent.siteconfig import LoadedSite
from drivers.profile import DataType, ModbusProfile, Point
from firmware_mocks.timeline import Event, Scenario, Timeline


@dataclass
class Happening:
    """Something the simulated world does at scenario time ``t``."""

    t: float
    zone: str
    text: str
    raw_alarm: bool = False
    event: Event | None = None
    detector_alarm: bool = False  # a fire/smoke detector, camera or panel (not an electrical value)


# ------------------------------------------------------------------ the script

ELECTRICAL_KINDS = (DeviceKind.RESIDUAL_CURRENT, DeviceKind.ELECTRICAL_FIRE)
_PANEL_POINT = re.compile(r"\bL(\d+)\s+A(\d+)")


def panel_zone(site: LoadedSite, panel: str, line: str) -> str:
    """The zone a panel line is about: its point's zone in the config, else the panel's."""
    for pb in site.config.panels():
        if pb.name == panel:
            m = _PANEL_POINT.search(line)
            key = f"{int(m[1])}/{int(m[2])}" if m else ""
            return pb.points.get(key, pb.zone)
    return ""


def _setpoint_of(prof: ModbusProfile, p: Point, tl: Timeline, dev: str, t: float) -> float | None:
    if p.setpoint_point is None:
        return None
    sp = float(tl.value(dev, p.setpoint_point, t))
    return sp if sp > 0 else None


def _alarm_words(prof: ModbusProfile, point: str, before: float, after: float) -> list[str]:
    """What a point change turns on, in the profile's words (alarms only)."""
    p = prof.point_by_name[point]
    if (
        p.type is DataType.BOOL
        and p.condition is Condition.ALARM
        and bool(after) == p.active_when
        and bool(before) != p.active_when
    ):
        return [p.detail or "alarm"]
    out = []
    for f in p.flags:
        on = bool((int(after) >> f.bit) & 1) == f.active_when
        was = bool((int(before) >> f.bit) & 1) == f.active_when
        if f.condition is Condition.ALARM and on and not was:
            out.append(f.detail or "alarm")
    return out


def happenings(
    sc: Scenario,
    tl: Timeline,
    site: LoadedSite,
    with_cameras: bool,
    camera_zones: dict[str, str] | None = None,
) -> list[Happening]:
    """The day's script as console lines: each event, plus where a measured value
    crosses its device's setpoint (a raw alarm the device itself reports by value)."""
    zone_of = {d.name: d.zone for _b, d in site.config.devices()}
    kind_of = {
        d.name: d.kind or site.modbus_profile(d.profile).device_kind
        for _b, d in site.config.devices()
    }
    zone_of.update(camera_zones or {c.name: c.zone for c in site.config.cameras})
    for pb in site.config.panels():
        zone_of[pb.name] = pb.zone
    out: list[Happening] = []
    for ev in sorted(sc.events, key=lambda e: e.at):
        if ev.device is not None:
            prof = tl.profiles[ev.device]
            raw: list[str] = []
            for point, v in (ev.set or {}).items():
                before = tl.value(ev.device, point, ev.at - 1e-6)
                raw += _alarm_words(prof, point, float(before), float(v))
                p = prof.point_by_name[point]
                sp = _setpoint_of(prof, p, tl, ev.device, ev.at)
                if p.quantity is not None and sp is not None and float(v) > sp >= float(before):
                    raw.append(f"{p.sub_point or point} {float(v):g} {p.unit} over setpoint {sp:g}")
            what = f"{ev.device}: {', '.join(raw)}" if raw else ev.device
            kind = kind_of[ev.device]
            detector = bool(raw) and kind not in ELECTRICAL_KINDS
            out.append(
                Happening(ev.at, zone_of[ev.device], f"{what} - {ev.note}", bool(raw), ev, detector)
            )
        elif ev.camera is not None:
            zone = zone_of.get(ev.camera, "")
            note = ev.note if with_cameras else f"{ev.note} (no cameras in this run)"
            fire = ev.video is not None and ev.video != "end" and with_cameras
            out.append(Happening(ev.at, zone, f"{ev.camera}: {note}", fire, ev, fire))
        elif ev.panel is not None:
            line = (ev.line or "").strip()
            alarm = line.startswith(("FIRE", "MCP"))
            out.append(
                Happening(
                    ev.at,
                    panel_zone(site, ev.panel, line),
                    f'{ev.panel} prints "{line}" - {ev.note}',
                    alarm,
                    ev,
                    alarm,
                )
            )
    # ramps crossing a setpoint: found on a fine grid (the exact moment matters little)
    for (dev, point), series in tl.series.items():
        if not any(r is not None for r in series.ramps):
            continue
        prof = tl.profiles[dev]
        p = prof.point_by_name[point]
        if p.quantity is None:
            continue
        step = 0.5
        t = 0.0
        over = False
        while t <= sc.duration_s:
            sp = _setpoint_of(prof, p, tl, dev, t)
            v = float(tl.value(dev, point, t))
            now_over = sp is not None and v > sp
            if now_over and not over:
                out.append(
                    Happening(
                        t,
                        zone_of[dev],
                        f"{dev}: {p.sub_point or point} {v:.0f} {p.unit} passes its setpoint {sp:g}",
                        True,
                    )
                )
            over = now_over
            t += step
    out.sort(key=lambda h: h.t)
    return out
