"""Shared set-up for the GB/T 26875.3 tests: a site, decisions, a running uplink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.clock import SystemClock
from agent.events import Decision, DecisionType, gateway_decision
from agent.gb26875.client import Gb26875Uplink
from agent.gb26875.mapping import directory_for
from agent.outbox import Outbox
from agent.siteconfig import LoadedSite
from agent.siteconfig.loader import load_site
from firmware_mocks.centre import MockCentre

SITE = """\
version: 1
site: {{site_id: school-1, gateway_id: gw-1}}
zones:
  - {{id: kitchen, name: 厨房}}
  - {{id: store, name: storeroom}}
buses:
  - name: rs485-1
    type: rtu
    port: /dev/ttyUSB0
    devices:
      - {{name: kitchen-smoke, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen}}
      - {{name: store-smoke, profile: calectro-ug3-o-mb-r, device_id: 4, zone: store}}
      - {{name: leakage, profile: acrel-aim-r100, device_id: 1, zone: store}}
gb26875:
  host: 127.0.0.1
  port: {port}
  source_address: 889
  destination_address: 88888
  confirm_timeout_s: {timeout}
  retries: 2
  heartbeat_s: {heartbeat}
  reconnect_min_s: 0.05
  reconnect_max_s: 0.2
  components:
    kitchen-smoke: {{address: "10/2"}}
storage: {{state_dir: state}}
"""
KITCHEN_SMOKE = 10 | (2 << 16)
STORE_SMOKE = 1 | (4 << 16)  # default: bus 1, Modbus id 4
LEAKAGE = 1 | (1 << 16)
T0 = 1_790_000_000.0  # 2026-09-21 ... UTC: fixed, so time labels are checkable


def make_site(
    tmp_path: Path, port: int, timeout: float = 0.3, heartbeat: float = 1.0
) -> LoadedSite:
    p = tmp_path / "site.yaml"
    p.write_text(SITE.format(port=port, timeout=timeout, heartbeat=heartbeat))
    return load_site(p)


def decision(
    type_: DecisionType,
    n: int = 0,
    *,
    zone: str = "kitchen",
    devices: tuple[str, ...] = ("kitchen-smoke",),
    **details: Any,
) -> Decision:
    """The n-th decision of a test; its time is T0 + n seconds (unique time label)."""
    return Decision(
        type=type_,
        zone=zone,
        reason=f"test {type_.value} {n}",
        first_seen_wall=T0 + n - 1,
        first_seen_mono=float(n),
        wall=T0 + n,
        mono=float(n),
        devices=devices,
        details=details,
    )


def gateway(type_: DecisionType, part: str = "rs485-1") -> Decision:
    return gateway_decision(type_, f"gateway part {part}", part=part, wall=T0, mono=0.0)


@dataclass
class Rig:
    centre: MockCentre
    outbox: Outbox
    uplink: Gb26875Uplink
    reported: list[Decision] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.uplink.run())

    async def rows(self) -> int:
        await self.outbox.flush()
        return int(self.outbox.status()["rows"])

    async def drained(self, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while await self.rows():  # noqa: ASYNC110 (polls the outbox file)
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    start_uplink: bool = True,
    confirm_timeout_s: float = 0.3,
    heartbeat: float = 1.0,
) -> AsyncIterator[Rig]:
    centre = MockCentre()
    await centre.start()
    site = make_site(tmp_path, centre.port, confirm_timeout_s, heartbeat)
    assert site.config.gb26875 is not None
    outbox = Outbox(tmp_path / "state" / "outbox.db", max_rows=10_000, max_bytes=10**8)
    reported: list[Decision] = []

    async def report(d: Decision) -> None:
        reported.append(d)

    up = Gb26875Uplink(
        site.config.gb26875,
        site.config,
        outbox,
        SystemClock(),
        "0.3",
        report=report,
        directory=directory_for(site),
    )
    r = Rig(centre, outbox, up, reported)
    if start_uplink:
        r.start()
    try:
        yield r
    finally:
        if r.task is not None:
            r.task.cancel()
            await asyncio.gather(r.task, return_exceptions=True)
        await centre.stop()
        await outbox.close()
