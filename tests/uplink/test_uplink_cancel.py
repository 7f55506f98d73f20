"""A reconnect loop stops when cancelled even if aiomqtt turns the cancellation
into an MqttError (it does during connect/subscribe: "Could not subscribe to topic")."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from agent.mqtt import reraise_if_cancelled


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
