"""Build the driver Parts a site config asks for (a convenience for agent/app.py).

``build_driver_parts`` returns one ``BusWorker`` per Modbus bus and one
``PanelReader`` per panel, plus the command queue of every Modbus device by
device name, so the engine's ``Command(target=device)`` reaches the worker
of the bus the device is on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agent.clock import Clock
from agent.events import Command, Observation
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import PanelBus, RtuBus, TcpBus
from drivers.bus import BusWorker
from drivers.panel import PanelReader


@dataclass
class DriverParts:
    workers: list[BusWorker] = field(default_factory=list)
    panels: list[PanelReader] = field(default_factory=list)
    commands_by_device: dict[str, asyncio.Queue[Command]] = field(default_factory=dict)
    commands_by_bus: dict[str, asyncio.Queue[Command]] = field(default_factory=dict)

    @property
    def parts(self) -> list[BusWorker | PanelReader]:
        return [*self.workers, *self.panels]


def build_driver_parts(
    site: LoadedSite, out: asyncio.Queue[Observation], clock: Clock
) -> DriverParts:
    dp = DriverParts()
    for bus in site.config.buses:
        if isinstance(bus, RtuBus | TcpBus):
            w = BusWorker(bus, site, out, clock)
            dp.workers.append(w)
            dp.commands_by_bus[bus.name] = w.commands
            for d in bus.devices:
                dp.commands_by_device[d.name] = w.commands
        elif isinstance(bus, PanelBus):
            dp.panels.append(PanelReader(bus, site, out, clock))
    return dp
