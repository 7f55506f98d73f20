"""The optional downlink: only snapshot/state requests reach the hook, only when enabled."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt

from agent.clock import SystemClock
from agent.outbox import Outbox
from agent.uplink import Uplink
from tests.uplink.uplink_support import Broker, site, uplink_config

ROOT = "firegate/school-1/gw1"


def request(req_id: str, sent: float, **extra: Any) -> bytes:
    """A request as the centre sends it: an id and the time it was sent."""
    return json.dumps({"id": req_id, "time": sent, **extra}).encode()


async def exercise(
    tmp_path: Path, broker: Broker, downlink: bool, publish: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def on_request(name: str, body: dict[str, Any]) -> None:
        calls.append((name, body))

    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    up = Uplink(
        uplink_config(broker.port, downlink=downlink),
        site(),
        outbox,
        SystemClock(),
        "t",
        on_request=on_request,
    )
    task = asyncio.create_task(up.run())
    try:
        for _ in range(250):
            if up.state == "connected":
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the SUBSCRIBE is on its way
        if not publish:
            await asyncio.sleep(0.5)
            return calls
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="centre") as c:
            req = f"{ROOT}/request"
            now = time.time()
            await c.publish(f"{req}/snapshot", request("r1", now, camera="cam-1"), qos=1)
            await c.publish(f"{req}/state", request("r2", now), qos=1)
            await c.publish(f"{req}/reset_zone", request("r3", now, zone="z1"), qos=1)  # refused
            await c.publish(f"{req}/disable", request("r4", now), qos=1)  # refused
            await c.publish(f"{req}/snapshot", b"not json", qos=1)  # refused
            await c.publish(f"{req}/snapshot", request("r5", now, cam=1), qos=1)  # refused
            await c.publish(f"{req}/state", b"x" * 10_000, qos=1)  # refused: too large
            await c.publish(f"{req}/state", b"{}", qos=1)  # refused: no id, no time
            await c.publish(f"{req}/state", request("r6", now - 3600), qos=1)  # refused: stale
            # retained: ignored, live (MQTT 5 Retain As Published keeps the flag)
            # and at every reconnect
            await c.publish(f"{req}/state", request("r7", now), qos=1, retain=True)
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
    return calls


async def test_downlink_accepts_only_snapshot_and_state(tmp_path: Path, broker: Broker) -> None:
    calls = await exercise(tmp_path, broker, downlink=True)
    assert calls == [
        ("snapshot", {"id": "r1", "from": "centre", "camera": "cam-1"}),
        ("state", {"id": "r2", "from": "centre"}),
    ]
    # reconnect: the retained request comes with the retain flag and is ignored
    assert await exercise(tmp_path, broker, downlink=True, publish=False) == []


async def test_downlink_off_by_default_ignores_everything(tmp_path: Path, broker: Broker) -> None:
    assert uplink_config(1883).downlink is False
    calls = await exercise(tmp_path, broker, downlink=False)
    assert calls == []
