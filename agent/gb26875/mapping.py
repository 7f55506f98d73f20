"""firegate decisions as GB/T 26875.3 information objects.

=====================  =====================================================
decision               what the centre receives
=====================  =====================================================
fire_alarm             type 2, each device/camera of the decision: fire bit
fault                  type 2 of the device: fault bit; of the gateway
                       itself (zone ``_gateway``): type 21, fault bit
electrical_prealarm    type 2 of the monitor: supervisory bit (GB 50116
                       counts electrical-fire alarms as supervisory), then
                       type 3 with the value (temperature 0.1 C, residual
                       current as current 0.1 A)
restore                type 2 (or 21) with the restored bit cleared
stats                  nothing: no place in the protocol (stays on MQTT)
=====================  =====================================================

A component's state carries every bit that is active for it, so that a
fault restore does not clear a fire alarm: ``CentreState`` keeps them, and
answers the centre's queries (types 61, 62, 63, 81) from the same table.
What has no field (the confirmation rule, the evidence, the snapshot, the
free-text reason beyond 31 bytes) stays on MQTT.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.events import GATEWAY_ZONE, DeviceKind
from agent.gb26875.codec import TimeLabel
from agent.gb26875.objects import (
    ANALOG_CURRENT,
    ANALOG_TEMPERATURE,
    ANALOG_VOLTAGE,
    DEVICE_CHANNEL_FAULT,
    DEVICE_FAULT,
    DEVICE_NORMAL,
    STATE_FAULT,
    STATE_FIRE,
    STATE_NORMAL,
    STATE_SUPERVISORY,
    ComponentAnalog,
    ComponentState,
    DeviceState,
    SystemState,
    TypeFlag,
    Unit,
)
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import Gb26875Config, PanelBus, SiteConfig

log = logging.getLogger(__name__)

# GB/T 26875.3 component types (table 8) for firegate's device kinds
COMPONENT_TYPE: dict[DeviceKind, int] = {
    DeviceKind.SMOKE: 42,  # point optical smoke detector
    DeviceKind.HEAT: 31,  # point heat detector
    DeviceKind.MULTI: 51,  # multi-sensor smoke/heat detector
    DeviceKind.MANUAL_CALL_POINT: 23,  # manual fire alarm call point
    DeviceKind.PANEL: 1,  # fire alarm control panel
    DeviceKind.RESIDUAL_CURRENT: 17,  # residual-current electrical fire detector
    DeviceKind.ELECTRICAL_FIRE: 16,  # electrical fire monitoring unit
    DeviceKind.CAMERA: 78,  # image-type fire detector
}
CAMERA_ZONE_NUMBER = 200  # cameras: 200/<camera number>, clear of bus numbers
MAX_COMPONENTS_PER_UNIT = 22  # the standard's limit for type 2

BIT_OF = {"fire_alarm": STATE_FIRE, "fault": STATE_FAULT, "electrical_prealarm": STATE_SUPERVISORY}


def address_of(zone_number: int, position: int) -> int:
    """Component address: zone number in the low two bytes, position in the high two."""
    return (zone_number & 0xFFFF) | ((position & 0xFFFF) << 16)


def address_text(address: int) -> str:
    return f"{address & 0xFFFF}/{address >> 16}"


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    component_type: int
    address: int
    zone: str
    label: str  # the description sent (31 bytes GB 18030): zone name, else zone id


class Directory:
    """How the centre knows each device and camera; built once from the site config."""

    def __init__(self, config: SiteConfig, kinds: dict[str, DeviceKind] | None = None) -> None:
        gb = config.gb26875
        overrides = gb.components if gb is not None else {}
        zone_names = {z.id: (z.name or z.id) for z in config.zones}
        kinds = kinds or {}
        found: list[tuple[str, DeviceKind, int, str]] = []
        for bi, bus in enumerate(config.buses):
            if isinstance(bus, PanelBus):
                found.append((bus.name, DeviceKind.PANEL, address_of(0, bi + 1), bus.zone))
                continue
            for dev in bus.devices:
                kind = dev.kind or kinds.get(dev.name, DeviceKind.SMOKE)
                found.append((dev.name, kind, address_of(bi + 1, dev.device_id), dev.zone))
        for ci, cam in enumerate(config.cameras):
            found.append(
                (cam.name, DeviceKind.CAMERA, address_of(CAMERA_ZONE_NUMBER, ci + 1), cam.zone)
            )
        self.components: dict[str, Component] = {}
        for name, kind, addr, zone in found:
            o = overrides.get(name)
            if o is not None and o.address is not None:
                z, p = o.address.split("/")
                addr = address_of(int(z), int(p))
            ctype = COMPONENT_TYPE[kind]
            if o is not None and o.component_type is not None:
                ctype = o.component_type
            self.components[name] = Component(name, ctype, addr, zone, zone_names.get(zone, zone))
        self._by_address = {c.address: c for c in self.components.values()}

    def get(self, name: str) -> Component | None:
        return self.components.get(name)

    def by_address(self, address: int) -> Component | None:
        return self._by_address.get(address)

    def in_zone(self, zone: str) -> list[Component]:
        return [c for c in self.components.values() if c.zone == zone]


def directory_for(site: LoadedSite) -> Directory:
    """The directory of a loaded site, with each device's kind from its profile."""
    kinds: dict[str, DeviceKind] = {}
    for _bus, dev in site.config.devices():
        prof = site.profiles.get(dev.profile)
        kind = getattr(prof, "device_kind", None)
        if isinstance(kind, DeviceKind):
            kinds[dev.name] = kind
    return Directory(site.config, kinds)


def summary_lines(site: LoadedSite) -> list[str]:
    """check-config's lines: the centre, and the address the centre must know for
    each device and camera (its records must match them)."""
    gb = site.config.gb26875
    if gb is None:
        return []
    sign = "+" if gb.utc_offset_min >= 0 else "-"
    hours, minutes = divmod(abs(gb.utc_offset_min), 60)
    out = [
        f"gb26875: {gb.host}:{gb.port}, this device {gb.source_address} -> centre "
        f"{gb.destination_address}, protocol 1.{gb.user_version}, time labels "
        f"UTC{sign}{hours}:{minutes:02d}; components as the centre must know them:"
    ]
    for c in directory_for(site).components.values():
        out.append(f"    {c.name:<22} {address_text(c.address):<11} type {c.component_type}")
    return out


def check_components(config: SiteConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems of the ``gb26875`` section (path, message) that need the whole site:
    a component named that is no device or camera, two with one address."""
    gb = config.gb26875
    if gb is None:
        return []
    out: list[tuple[tuple[str | int, ...], str]] = []
    directory = Directory(config)
    for name in gb.components:
        if directory.get(name) is None:
            known = ", ".join(sorted(directory.components)) or "none"
            out.append(
                (
                    ("gb26875", "components", name),
                    f"{name!r} is no device or camera of this site (known: {known})",
                )
            )
    for first, second, addr in duplicate_addresses(directory):
        named = next((n for n in (second, first) if n in gb.components), None)
        where = ("gb26875", "components", named) if named else ("gb26875",)
        out.append(
            (
                where,
                f"{first} and {second} both have component address {address_text(addr)}: "
                "the centre could not tell them apart; give one another address",
            )
        )
    return out


def duplicate_addresses(directory: Directory) -> list[tuple[str, str, int]]:
    """Pairs of components the centre could not tell apart (same address)."""
    seen: dict[int, str] = {}
    out = []
    for c in directory.components.values():
        if c.address in seen:
            out.append((seen[c.address], c.name, c.address))
        else:
            seen[c.address] = c.name
    return out


def wall_of(payload: dict[str, Any]) -> float:
    """When the decision was taken, from its stored JSON (``confirmed_at``)."""
    try:
        return datetime.fromisoformat(str(payload["confirmed_at"])).timestamp()
    except (KeyError, ValueError):
        return 0.0


@dataclass
class CentreState:
    """What the centre has been told, per component and for the gateway itself;
    the answers to its queries come from here."""

    config: Gb26875Config
    directory: Directory
    bits: dict[int, int] = field(default_factory=dict)  # component address -> active state bits
    since: dict[int, TimeLabel] = field(default_factory=dict)  # ... and when it last changed
    analog: dict[tuple[int, int], ComponentAnalog] = field(default_factory=dict)
    gateway_faults: set[str] = field(default_factory=set)  # gateway parts in fault
    channel_fault: bool = False
    device_since: TimeLabel | None = None

    def time(self, wall: float) -> TimeLabel:
        return TimeLabel.from_wall(wall, self.config.utc_offset_min)

    # ------------------------------------------------------------ decisions

    def units_for(self, payload: dict[str, Any], now_wall: float) -> list[Unit]:
        """The application data units that carry this decision, in send order
        (empty: nothing to send, e.g. a stats decision). ``now_wall`` stands in
        for a decision without a readable time."""
        kind = str(payload.get("type", ""))
        wall = wall_of(payload)
        t = self.time(wall or now_wall)
        details = payload.get("details") or {}
        if payload.get("zone") == GATEWAY_ZONE:
            return self._gateway(kind, details, t)
        if kind in ("stats", "zone_state"):  # no place in the standard (docs/gb26875.md)
            return []
        names = [*payload.get("devices", ()), *payload.get("cameras", ())]
        comps = [c for c in (self.directory.get(n) for n in names) if c is not None]
        if kind == "restore":
            of = str(details.get("of", ""))
            bit = BIT_OF.get(of, 0)
            if not comps:  # e.g. a zone's fire alarm cleared: every component that had it
                comps = [
                    c
                    for c in self.directory.in_zone(str(payload.get("zone")))
                    if self.bits.get(c.address, 0) & bit
                ]
            return self._states(comps, clear=bit, t=t)
        if kind not in BIT_OF:
            log.warning("gb26875: decision type %r has no GB/T 26875.3 form; not sent", kind)
            return []
        bit = BIT_OF[kind]
        if not comps:
            return self._system(bit, t)
        units = self._states(comps, set_=bit, t=t)
        if kind == "electrical_prealarm":
            analog = self._analog(comps[0], details, t)
            if analog is not None:
                units.append(Unit(TypeFlag.COMPONENT_ANALOG, (analog,)))
        return units

    def _states(
        self, comps: Iterable[Component], *, set_: int = 0, clear: int = 0, t: TimeLabel
    ) -> list[Unit]:
        objs = []
        for c in comps:
            bits = (self.bits.get(c.address, 0) | set_) & ~clear
            self.bits[c.address] = bits
            self.since[c.address] = t
            objs.append(self._component_state(c, bits, t))
        return [
            Unit(TypeFlag.COMPONENT_STATE, tuple(objs[i : i + MAX_COMPONENTS_PER_UNIT]))
            for i in range(0, len(objs), MAX_COMPONENTS_PER_UNIT)
        ]

    def _component_state(self, c: Component, bits: int, t: TimeLabel) -> ComponentState:
        return ComponentState(
            self.config.system_type,
            self.config.system_address,
            c.component_type,
            c.address,
            STATE_NORMAL | bits,
            c.label,
            t,
        )

    def _system(self, bit: int, t: TimeLabel) -> list[Unit]:
        return [
            Unit(
                TypeFlag.SYSTEM_STATE,
                (
                    SystemState(
                        self.config.system_type, self.config.system_address, STATE_NORMAL | bit, t
                    ),
                ),
            )
        ]

    def _analog(
        self, c: Component, details: dict[str, Any], t: TimeLabel
    ) -> ComponentAnalog | None:
        quantity, value = details.get("quantity"), details.get("value")
        if not isinstance(value, int | float):
            return None
        if quantity == "temperature_c":
            atype, count = ANALOG_TEMPERATURE, round(value * 10)
        elif quantity == "residual_current_ma":
            atype, count = ANALOG_CURRENT, round(value / 100)  # mA -> 0.1 A
        elif quantity == "current_a":
            atype, count = ANALOG_CURRENT, round(value * 10)
        elif quantity == "voltage_v":
            atype, count = ANALOG_VOLTAGE, round(value * 10)
        else:
            return None
        count = max(-32768, min(32767, count))
        obj = ComponentAnalog(
            self.config.system_type,
            self.config.system_address,
            c.component_type,
            c.address,
            atype,
            count,
            t,
        )
        self.analog[(c.address, atype)] = obj
        return obj

    def _gateway(self, kind: str, details: dict[str, Any], t: TimeLabel) -> list[Unit]:
        part = str(details.get("part", "gateway"))
        if kind == "fault":
            self.gateway_faults.add(part)
        elif kind == "restore":
            self.gateway_faults.discard(part)
        else:
            return []
        self.device_since = t
        return [Unit(TypeFlag.DEVICE_STATE, (DeviceState(self.device_state(), t),))]

    # --------------------------------------------------------------- queries

    def device_state(self) -> int:
        s = DEVICE_NORMAL
        if self.gateway_faults:
            s |= DEVICE_FAULT
        if self.channel_fault:
            s |= DEVICE_CHANNEL_FAULT
        if any(b & STATE_FIRE for b in self.bits.values()):
            s |= 1 << 1
        return s

    def component_states(self, addresses: Iterable[int], now: TimeLabel) -> list[ComponentState]:
        out = []
        for addr in addresses:
            c = self.directory.by_address(addr)
            if c is not None:
                out.append(
                    self._component_state(c, self.bits.get(addr, 0), self.since.get(addr, now))
                )
        return out

    def analog_values(self, addresses: Iterable[int]) -> list[ComponentAnalog]:
        wanted = set(addresses)
        return [a for (addr, _), a in self.analog.items() if addr in wanted]

    def system_state(self, now: TimeLabel) -> SystemState:
        bits = 0
        for b in self.bits.values():
            bits |= b
        return SystemState(
            self.config.system_type, self.config.system_address, STATE_NORMAL | bits, now
        )
