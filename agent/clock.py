"""The clock every part of the agent uses: injected, never read from `time` directly.

Production runs ``SystemClock``. The demo and some tests run ``ScaledClock``
(the same agent, with time passing faster). Pure code (the confirmation
engine) never reads a clock at all: it is given the time with each call.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What parts may ask of time."""

    @property
    def speed(self) -> float:
        """Simulated seconds per real second (1.0 in production)."""
        ...

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    speed = 1.0

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Time that runs ``speed`` times faster than real time, from the moment of creation.

    Only for the demo and tests: a bus timeout or a network timeout is still
    real time, so keep ``speed`` modest enough (10-60) that real I/O fits.
    """

    def __init__(self, speed: float, *, start_wall: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._real0 = time.monotonic()
        self._mono0 = self._real0
        self._wall0 = time.time() if start_wall is None else start_wall

    def monotonic(self) -> float:
        return self._mono0 + (time.monotonic() - self._real0) * self.speed

    def wall(self) -> float:
        return self._wall0 + (time.monotonic() - self._real0) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)
