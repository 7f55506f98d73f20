"""Panel line parser and PanelReader over a pty with the simulated panel."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import Clock, ScaledClock, SystemClock
from agent.events import Condition, DeviceKind, Observation, StateChange
from agent.siteconfig import LoadedSite, find_profile, load_profile
from agent.siteconfig.models import PanelBus
from drivers.panel import PanelReader, parse_line
from drivers.profile import PanelProfile
from firmware_mocks import SimPanel

_p = load_profile(find_profile("generic-panel", ()))  # type: ignore[arg-type]
assert isinstance(_p, PanelProfile)
PANEL: PanelProfile = _p


def panel_yaml(path: str, silence: str = "") -> str:
    return f"""
- name: panel-1
  type: panel
  port: {path}
  profile: generic-panel
  zone: hall
  points: {{"1/23": kitchen, "2/7": electrical-room}}
  {silence}
"""


@contextlib.asynccontextmanager
async def running(
    site: LoadedSite, clock: Clock | None = None
) -> AsyncIterator[tuple[PanelReader, asyncio.Queue[Observation]]]:
    bus = site.config.buses[0]
    assert isinstance(bus, PanelBus)
    q: asyncio.Queue[Observation] = asyncio.Queue()
    r = PanelReader(bus, site, q, clock or SystemClock())
    task = asyncio.create_task(r.run())
    try:
        yield r, q
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_parse_generic_lines() -> None:
    ev = parse_line(PANEL, "2026-11-28 10:41:07 FIRE     L1 A023 CLASSROOM 12")
    assert [(e.pattern.condition, e.pattern.active, e.point, e.text) for e in ev] == [
        (Condition.ALARM, True, "1/23", "CLASSROOM 12")
    ]
    ev = parse_line(PANEL, "2026-11-28 10:41:07 MCP L3 A001")
    assert ev[0].pattern.device_kind is DeviceKind.MANUAL_CALL_POINT and ev[0].point == "3/1"
    assert [
        (e.pattern.condition, e.pattern.active)
        for e in parse_line(PANEL, "2026-11-28 10:52:30 RESET")
    ] == [
        (Condition.ALARM, False),
        (Condition.PREALARM, False),
    ]
    assert parse_line(PANEL, "2026-11-28 10:43:55 FAULT    L2 A007 OPEN CIRCUIT")[0].point == "2/7"
    assert parse_line(PANEL, "2026-11-28 10:50:01 RESTORE  L2 A007")[0].pattern.active is False
    assert parse_line(PANEL, "PRINTER PAPER LOW") == []
    assert parse_line(PANEL, "FIREWALL L1 A2") == []  # word boundary: not a FIRE line


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_parser_never_crashes(line: str) -> None:
    for e in parse_line(PANEL, line):
        assert e.point == "" or "/" in e.point


async def test_reader_events_zones_edges_reset(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with SimPanel() as panel:
        site = make_site(panel_yaml(panel.path))
        async with running(site) as (reader, q):
            await asyncio.sleep(0.1)
            panel.fire(1, 23, "CLASSROOM 12")
            panel.fire(1, 23, "CLASSROOM 12")  # re-printed: no second edge
            panel.prealarm(4, 2)
            panel.fault(2, 7, "OPEN CIRCUIT")
            seen = await collect(q, lambda s: len(s) >= 3, 3)
            by = {(o.point, o.condition): o for o in seen if isinstance(o, StateChange)}
            fire = by[("1/23", Condition.ALARM)]
            assert fire.active and fire.zone == "kitchen" and fire.source == "panel-1"
            assert "FIRE" in fire.detail and fire.kind is DeviceKind.PANEL
            assert by[("4/2", Condition.PREALARM)].zone == "hall"
            assert by[("2/7", Condition.FAULT)].zone == "electrical-room"
            panel.restore(2, 7)
            panel.write_raw(b"\x00\xff garbage without a line end")
            panel.write_raw(b"\r\n")
            panel.reset()
            seen = await collect(q, lambda s: len(s) >= 3, 3)
            got = {(o.point, o.condition, o.active) for o in seen if isinstance(o, StateChange)}
            assert got == {
                ("2/7", Condition.FAULT, False),
                ("1/23", Condition.ALARM, False),
                ("4/2", Condition.PREALARM, False),
            }
            await asyncio.sleep(0.2)
            assert q.empty()
            assert reader.status()["unmatched"] == 1


async def test_reader_port_vanishes_and_returns(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with SimPanel() as panel:
        site = make_site(panel_yaml(panel.path))
        async with running(site) as (_reader, q):
            await asyncio.sleep(0.2)
            panel.vanish()
            t0 = time.process_time()
            seen = await collect(q, lambda s: len(s) >= 1, 3)
            assert isinstance(seen[0], StateChange) and seen[0].point == "link" and seen[0].active
            assert seen[0].condition is Condition.FAULT
            await asyncio.sleep(1.0)
            assert time.process_time() - t0 < 0.3  # backoff, no busy loop
            panel.reappear()
            seen = await collect(q, lambda s: len(s) >= 1, 4)
            assert (
                isinstance(seen[0], StateChange) and not seen[0].active and seen[0].point == "link"
            )
            for address in (23, 24, 25):  # each line is seen at once, not at the next idle wake-up
                t0 = time.monotonic()
                panel.fire(1, address)
                seen = await collect(q, lambda s: len(s) >= 1, 3)
                assert time.monotonic() - t0 < 0.5
                assert isinstance(seen[0], StateChange) and seen[0].point == f"1/{address}"


async def test_reader_silence_fault(make_site: Callable[[str], LoadedSite], collect: Any) -> None:
    # 60 s of silence at 100x speed: 0.6 s real
    with SimPanel() as panel:
        site = make_site(panel_yaml(panel.path, "silence_fault_s: 60"))
        clock = ScaledClock(100.0)
        async with running(site, clock) as (reader, q):
            t0 = time.monotonic()
            seen = await collect(q, lambda s: len(s) >= 1, 4)
            assert isinstance(seen[0], StateChange) and seen[0].active and seen[0].point == "link"
            assert "nothing for 60 s" in seen[0].detail
            assert time.monotonic() - t0 >= 0.55
            panel.write_line("SYSTEM NORMAL")
            seen = await collect(q, lambda s: len(s) >= 1, 3)
            assert isinstance(seen[0], StateChange) and not seen[0].active
            assert reader.status()["silent"] is False


def test_panel_point_names_are_the_site_config_keys(tmp_path: Path) -> None:
    """The driver's point name is what the engine looks up in the panel's `points`."""
    from agent.engine import SiteIndex
    from agent.siteconfig import load_site
    from drivers.panel import point_name
    from tests.helpers.site_base import BASE

    cfg = tmp_path / "site.yaml"
    cfg.write_text(BASE.replace('"1/23": kitchen', '"01/023": kitchen'))
    index = SiteIndex.from_site(load_site(cfg))
    assert point_name(1, 23) == "1/23"
    assert index.zone_of("panel", point_name(1, 23), "") == "kitchen"
    assert index.zone_of("panel", point_name(1, 24), "") == "hall"  # not listed: panel's zone
