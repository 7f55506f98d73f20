"""The centre's requests travel on a connection of their own (``<client_id>-downlink``):
a flood of them never queues in front of a fire alarm's PUBACK (issue 14's
downlink flood under MQTT 5 delayed it by seconds). Real mosquitto; the flood
comes from mosquitto_pub at full speed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import aiomqtt

from agent.clock import SystemClock
from agent.events import DecisionType
from agent.outbox import Outbox
from agent.uplink import Uplink
from tests.uplink.uplink_support import Broker, decision, site, uplink_config

REQ = "firegate/school-1/gw1/request/state"


async def _connected(up: Uplink, downlink_connects: int = 1) -> None:
    deadline = time.monotonic() + 15
    while up.state != "connected" or up.downlink_connects < downlink_connects:
        assert time.monotonic() < deadline, up.status()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # subscribed


async def _puback_s(up: Uplink, outbox: Outbox, n: int) -> float:
    t0 = time.monotonic()
    await outbox.submit(decision(DecisionType.FIRE_ALARM, n))
    while outbox.status()["rows"]:
        assert time.monotonic() - t0 < 60, up.status()
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


async def test_a_request_flood_does_not_delay_a_fire_alarms_puback(
    tmp_path: Path, broker: Broker
) -> None:
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    cfg = uplink_config(broker.port, downlink=True, mqtt_version="5", publish_timeout_s=30.0)

    async def hook(name: str, body: object) -> None:
        return None

    up = Uplink(cfg, site(), outbox, SystemClock(), "t", on_request=hook)
    task = asyncio.create_task(up.run())
    flood = await asyncio.create_subprocess_shell(
        f"yes '{{}}' | head -n 3000000 | mosquitto_pub -p {broker.port} -V mqttv5 -q 0 "
        f"-i flood -t {REQ} -l",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the whole pipeline is stopped
    )
    try:
        await _connected(up)
        quiet = await _puback_s(up, outbox, 1)
        await asyncio.sleep(3.0)  # the flood has been running for a while
        assert flood.returncode is None, "the flood ended before the alarm"
        mid_flood = await _puback_s(up, outbox, 2)
        assert sum(up.downlink.ignored.values()) > 1000, up.downlink.ignored  # it did arrive
        assert up.connects == 1, up.status()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(flood.pid, signal.SIGKILL)
        await flood.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
    assert mid_flood < 1.0, f"fire alarm PUBACK {mid_flood:.2f} s mid-flood ({quiet:.3f} s quiet)"


async def test_losing_the_requests_connection_leaves_the_alarms_connection_up(
    tmp_path: Path, broker: Broker
) -> None:
    """The broker drops ``<client_id>-downlink`` (another client takes its id): the
    alarms' connection stays, a fire alarm goes at once, and the requests'
    connection comes back on its own."""
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    cfg = uplink_config(broker.port, downlink=True)
    up = Uplink(cfg, site(), outbox, SystemClock(), "t")
    task = asyncio.create_task(up.run())
    try:
        await _connected(up)
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"{up.client_id}-downlink"):
            await asyncio.sleep(0.3)
        assert await _puback_s(up, outbox, 1) < 2.0
        await _connected(up, downlink_connects=2)
        assert up.connects == 1, up.status()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
