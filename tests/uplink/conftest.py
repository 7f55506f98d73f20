"""Fixtures for the uplink tests: a real mosquitto per test, a collecting subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from firmware_mocks.broker import free_port
from tests.uplink.uplink_support import Broker, Collector


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path, free_port())
    b.start()
    yield b
    b.stop()


@pytest.fixture
async def collector(broker: Broker) -> AsyncIterator[Collector]:
    c = Collector(broker.port)
    task = asyncio.create_task(c.run())
    await asyncio.wait_for(c.ready.wait(), 5)
    yield c
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
