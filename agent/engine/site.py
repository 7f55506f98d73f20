"""What the engine needs to know about a site, indexed once from a LoadedSite.

Which zone each device, panel point and camera covers, what kind of device it
is (``device.kind`` overrides the profile's ``device_kind``), whether it can be
reset (its Modbus profile has a command named ``reset``), and each zone's
policy. Built once at start-up; read-only afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.events import DeviceKind
from agent.siteconfig import LoadedSite, ZonePolicy
from drivers.profile import ModbusProfile

RESET_COMMAND = "reset"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    name: str
    zone: str
    kind: DeviceKind
    resettable: bool
    poll_interval_s: float


@dataclass(frozen=True, slots=True)
class PanelInfo:
    name: str
    zone: str  # for points not listed
    points: dict[str, str]  # "loop/address" -> zone


@dataclass(frozen=True, slots=True)
class SiteIndex:
    policies: dict[str, ZonePolicy]
    devices: dict[str, DeviceInfo]
    panels: dict[str, PanelInfo]
    cameras: dict[str, str]  # camera name -> zone
    stats_interval_s: float
    nuisance_prone_count: int

    @classmethod
    def from_site(cls, site: LoadedSite) -> SiteIndex:
        cfg = site.config
        devices: dict[str, DeviceInfo] = {}
        for _bus, dev in cfg.devices():
            prof = site.profiles.get(dev.profile)
            kind = dev.kind
            resettable = False
            if isinstance(prof, ModbusProfile):
                kind = kind or prof.device_kind
                resettable = RESET_COMMAND in prof.commands
            devices[dev.name] = DeviceInfo(
                name=dev.name,
                zone=dev.zone,
                kind=kind or DeviceKind.SMOKE,
                resettable=resettable,
                poll_interval_s=dev.poll_interval_s,
            )
        panels = {
            p.name: PanelInfo(name=p.name, zone=p.zone, points=dict(p.points)) for p in cfg.panels()
        }
        return cls(
            policies={z.id: z.policy for z in cfg.zones},
            devices=devices,
            panels=panels,
            cameras={c.name: c.zone for c in cfg.cameras},
            stats_interval_s=cfg.engine.stats_interval_s,
            nuisance_prone_count=cfg.engine.nuisance_prone_count,
        )

    def zone_of(self, source: str, point: str, reported: str) -> str | None:
        """The zone an observation belongs to: the site config wins over what the
        observation says (a driver bug must not move a detector); None if unknown."""
        dev = self.devices.get(source)
        if dev is not None:
            return dev.zone
        cam = self.cameras.get(source)
        if cam is not None:
            return cam
        panel = self.panels.get(source)
        if panel is not None:
            return panel.points.get(_panel_key(point), panel.zone)
        return reported if reported in self.policies else None


def _panel_key(point: str) -> str:
    """The site config's "loop/address" key of a panel point: drivers.panel names
    points "L1/A24" (the replay and the config say "1/24"); both map alike."""
    if point.startswith("L") and "/A" in point:
        loop, _, addr = point[1:].partition("/A")
        if loop.isdigit() and addr.isdigit():
            return f"{int(loop)}/{int(addr)}"
    return point
