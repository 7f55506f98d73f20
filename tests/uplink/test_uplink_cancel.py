"""A reconnect loop stops when cancelled even if aiomqtt turns the cancellation
into an MqttError (it does during connect/subscribe: "Could not subscribe to topic")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from agent.clock import SystemClock
from agent.events import DecisionType
from agent.mqtt import reraise_if_cancelled
from agent.outbox import Outbox
from agent.uplink import Uplink
from firmware_mocks.broker import free_port
from tests.uplink.uplink_support import Broker, decision, site, until, uplink_config


async def _reconnect_loop(guard: bool, attempts: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        attempts.append(1)
        try:
            try:
                await asyncio.sleep(0.05)  # connecting
            except asyncio.CancelledError:
                # what aiomqtt does with a cancel that lands in subscribe()
                raise aiomqtt.MqttCodeError(4, "Could not subscribe to topic") from None
        except aiomqtt.MqttError:
            if guard:
                reraise_if_cancelled()
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("guard", [True, False])
async def test_cancel_disguised_as_mqtt_error_still_stops_the_loop(guard: bool) -> None:
    attempts: list[int] = []
    stop = asyncio.Event()
    task = asyncio.create_task(_reconnect_loop(guard, attempts, stop))
    await asyncio.sleep(0.02)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.5)
    if guard:
        assert task in done and task.cancelled()
        assert len(attempts) == 1
    else:  # the failure this guards against: the cancel is swallowed, the loop goes on
        assert not done and len(attempts) > 1
        stop.set()
        await asyncio.wait_for(task, 1)


def test_outside_a_task_nothing_happens() -> None:
    reraise_if_cancelled()


async def test_uplink_task_is_not_left_cancelling_after_a_dropped_connection(
    tmp_path: Path,
) -> None:
    """A dropped connection ends the per-connection TaskGroup with an error; on
    Python 3.11 that leaves the group's host task cancelling() for good. The
    uplink's own task must not be that host: it reconnects, delivers, and a
    later stop still stops it, with the clean-stop path taken."""
    port = free_port()
    b = Broker(tmp_path, port)
    b.start()
    outbox = Outbox(tmp_path / "ob.db", 10_000, 10**8)
    up = Uplink(uplink_config(port), site(), outbox, SystemClock(), "t")
    task = asyncio.create_task(up.run())
    try:
        await until(lambda: up.state == "connected", "connected", 10)
        assert b.proc is not None
        b.proc.kill()  # the connection drops: _listen fails inside the group
        b.proc.wait()
        await until(lambda: up.state in ("backoff", "connecting"), "the drop seen", 10)
        assert task.cancelling() == 0
        b.start()
        await until(lambda: up.state == "connected", "reconnected", 20)
        assert task.cancelling() == 0
        d = decision(DecisionType.FIRE_ALARM, 1)
        await outbox.submit(d)
        await until(lambda: outbox.status()["rows"] == 0, "delivery", 10)  # delivered after it all
    finally:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        await outbox.close()
        b.stop()
    assert task in done and task.cancelled()
    assert up.state == "stopped"
