"""The GB/T 26875.3 uplink in the real agent: detectors on a pty, the engine, both
outboxes, MQTT to a real mosquitto and the mock centre on a real socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.app import build_agent
from agent.clock import SystemClock
from agent.gb26875.client import Gb26875Uplink
from agent.gb26875.objects import STATE_FIRE, STATE_NORMAL, ComponentState, TypeFlag
from agent.siteconfig import load_site
from firmware_mocks.broker import free_port
from firmware_mocks.centre import MockCentre
from firmware_mocks.device import SimDevice, load_modbus_profile
from firmware_mocks.rtu import SimRtuBus
from tests.uplink.uplink_support import Broker, Collector


def _site(tmp_path: Path, port: str, centre_port: int, broker_port: int | None) -> Path:
    p = tmp_path / "site.yaml"
    mqtt = f"uplink: {{host: 127.0.0.1, port: {broker_port}, reconnect_min_s: 0.1}}\n"
    p.write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: kitchen, name: kitchen}]\n"
        "buses:\n"
        f"  - name: b1\n    type: rtu\n    port: {port}\n    devices:\n"
        "      - {name: smoke-1, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen, poll_interval_s: 0.1}\n"
        "      - {name: smoke-2, profile: calectro-ug3-o-mb-r, device_id: 4, zone: kitchen, poll_interval_s: 0.1}\n"
        f"gb26875: {{host: 127.0.0.1, port: {centre_port}, source_address: 889, "
        "destination_address: 88888, reconnect_min_s: 0.05}\n"
        + (mqtt if broker_port else "")
        + f"storage: {{state_dir: {tmp_path / 'state'}}}\n"
    )
    return p


async def _fire(
    tmp_path: Path, broker_port: int | None, collector: Collector | None = None
) -> tuple[MockCentre, object]:
    centre = MockCentre()
    await centre.start()
    dev3 = SimDevice(3, load_modbus_profile("calectro-ug3-o-mb-r"))
    dev4 = SimDevice(4, load_modbus_profile("calectro-ug3-o-mb-r"))
    for d in (dev3, dev4):
        d.set_point("mounted", 1)
    with SimRtuBus([dev3, dev4]) as bus:
        site = load_site(_site(tmp_path, bus.path, centre.port, broker_port))
        agent = build_agent(site, SystemClock())
        assert any(isinstance(p, Gb26875Uplink) for p in agent.parts)
        stop = asyncio.Event()
        runner = asyncio.create_task(agent.supervisor().run(stop))
        try:
            await centre.wait_for(lambda: bool(centre.data_units()), 10)
            dev3.set_point("smoke_alarm", 1)
            # a second detector of the zone 3 s later: two independent witnesses (two
            # that trip within 2 s of each other are one burst to the engine)
            await asyncio.sleep(3.0)
            dev4.set_point("smoke_alarm", 1)

            def fire_states() -> list[tuple[int, int]]:
                return [
                    (o.component_address, o.state)
                    for o in centre.objects(TypeFlag.COMPONENT_STATE)
                    if isinstance(o, ComponentState) and o.state & STATE_FIRE
                ]

            await centre.wait_for(lambda: len(fire_states()) >= 2, 15)
            assert sorted(fire_states()) == [
                (1 | (3 << 16), STATE_NORMAL | STATE_FIRE),  # bus 1, Modbus id 3
                (1 | (4 << 16), STATE_NORMAL | STATE_FIRE),
            ]
            gb_outbox = agent.gb_outbox if broker_port else agent.outbox
            assert gb_outbox is not None
            for _ in range(100):  # deleted after the confirm
                await gb_outbox.flush()
                if not gb_outbox.status()["by_type"].get("fire_alarm"):
                    break
                await asyncio.sleep(0.05)
            assert not gb_outbox.status()["by_type"].get("fire_alarm")
            if collector is not None:
                # while the agent still runs: the MQTT link may come up later than
                # the centre's (a loaded machine); stopping first lost the race
                await collector.wait_for(
                    lambda: any(d["type"] == "fire_alarm" for d in collector.decisions()), 15
                )
            return centre, agent
        finally:
            stop.set()
            await runner
            await agent.close()
            await centre.stop()


async def test_fire_reaches_the_centre_and_mqtt_each_from_its_own_outbox(tmp_path: Path) -> None:
    broker = Broker(tmp_path, free_port())
    broker.start()
    collector = Collector(broker.port)
    sub = asyncio.create_task(collector.run())
    try:
        await asyncio.wait_for(collector.ready.wait(), 5)
        await _fire(tmp_path, broker.port, collector)
        assert (tmp_path / "state" / "outbox-gb26875.db").exists()
    finally:
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
        broker.stop()


async def test_gb26875_alone_drains_the_one_outbox(tmp_path: Path) -> None:
    await _fire(tmp_path, None)
    assert not (tmp_path / "state" / "outbox-gb26875.db").exists()
