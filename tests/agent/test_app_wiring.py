"""The agent assembled by build_agent: real bus worker on a pty, engine, outbox, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.app import build_agent
from agent.clock import SystemClock
from agent.events import Command, DecisionType
from agent.health import METRICS
from agent.siteconfig import load_site
from drivers.bus import BusWorker
from firmware_mocks.device import SimDevice, load_modbus_profile
from firmware_mocks.rtu import SimRtuBus


def _site(tmp_path: Path, port: str) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: kitchen}]\n"
        "buses:\n"
        f"  - name: b1\n    type: rtu\n    port: {port}\n    devices:\n"
        "      - {name: smoke-1, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen, poll_interval_s: 0.1}\n"
        "      - {name: smoke-2, profile: calectro-ug3-o-mb-r, device_id: 4, zone: kitchen, poll_interval_s: 0.1}\n"
        f"storage: {{state_dir: {tmp_path / 'state'}}}\n"
    )
    return p


def _metric(text: str, name: str) -> float:
    """A sample's value in the text exposition (0 when it is not there yet)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_two_detectors_in_alarm_reach_the_outbox_and_metrics(tmp_path: Path) -> None:
    dev3 = SimDevice(3, load_modbus_profile("calectro-ug3-o-mb-r"))
    dev4 = SimDevice(4, load_modbus_profile("calectro-ug3-o-mb-r"))
    for d in (dev3, dev4):
        d.set_point("mounted", 1)
    with SimRtuBus([dev3, dev4]) as bus:
        site = load_site(_site(tmp_path, bus.path))
        agent = build_agent(site, SystemClock())
        names = [p.name for p in agent.parts]
        assert names[0] == "b1" and "engine" in names and "uplink" not in names
        stop = asyncio.Event()
        # the registry is the process's: other tests in this process count too
        fires_before = _metric(METRICS.render(), 'firegate_decisions_total{type="fire_alarm"}')
        runner = asyncio.create_task(agent.supervisor().run(stop))
        try:
            await asyncio.sleep(0.5)
            dev3.set_point("smoke_alarm", 1)
            await asyncio.sleep(2.5)  # two witnesses, not one burst of dust (issue 15)
            dev4.set_point("smoke_alarm", 1)  # coincidence of two detectors of the zone
            assert agent.outbox is not None
            for _ in range(100):
                await asyncio.sleep(0.05)
                if agent.outbox.status()["by_type"].get("fire_alarm"):
                    break
            batch = await agent.outbox.next_batch(10)
            fires = [p for p in batch if p.payload["type"] == DecisionType.FIRE_ALARM.value]
            assert len(fires) == 1 and fires[0].payload["zone"] == "kitchen"
            # the engine's reset command travels to the bus worker of that device
            agent.route_command(Command(target="smoke-1", action="reset", wall=0, mono=0))
            worker = agent.parts[0]
            assert isinstance(worker, BusWorker)
            for _ in range(50):
                await asyncio.sleep(0.05)
                if "reset" in dev3.commands_received:
                    break
            assert "reset" in dev3.commands_received and "reset" not in dev4.commands_received
            # the fire alarm and the zone's "verifying" and "confirmed" states
            for _ in range(50):
                text = METRICS.render()
                if "firegate_outbox_depth 3" in text:
                    break
                await asyncio.sleep(0.05)
            assert 'firegate_polls_total{bus="b1",device="smoke-1"}' in text
            fires_now = _metric(text, 'firegate_decisions_total{type="fire_alarm"}')
            assert fires_now == fires_before + 1, (fires_before, fires_now)
            assert "firegate_outbox_depth 3" in text
        finally:
            stop.set()
            await runner
            await agent.close()
