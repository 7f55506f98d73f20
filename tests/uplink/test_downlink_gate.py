"""The downlink's gate on its own (no broker): coalescing, rate limits, replays,
and a request left waiting by a dropped connection is answered on the next."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent.downlink import PENDING_MAX, PER_REQUESTER_BURST, Downlink
from agent.events import Decision, DecisionType, gateway_decision


class Clock:
    speed = 1.0

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_790_000_000.0 + self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def req(clock: Clock, req_id: str, **extra: Any) -> bytes:
    return json.dumps({"id": req_id, "time": clock.wall(), **extra}).encode()


async def test_coalesced_bounded_rate_limited_and_replayed() -> None:
    clock = Clock()
    calls: list[str] = []
    sent: list[list[str]] = []
    release = asyncio.Event()

    async def hook(name: str, body: dict[str, Any]) -> Decision | None:
        calls.append(name)
        await release.wait()
        return gateway_decision(DecisionType.STATS, name, part="t", wall=1.0, mono=1.0)

    async def publish(d: Decision, ids: list[str]) -> list[tuple[str, bytes]]:
        sent.append(ids)
        return [("t", json.dumps(ids).encode())]

    replayed: list[list[tuple[str, bytes]]] = []

    async def republish(msgs: list[tuple[str, bytes]]) -> None:
        replayed.append(msgs)

    gate = Downlink(clock, hook)  # type: ignore[arg-type]
    server = asyncio.create_task(gate.serve(publish, republish))
    gate.offer("state", req(clock, "a", **{"from": "c1"}), retain=False)
    await asyncio.sleep(0)  # the worker takes "a" and waits in the hook
    for n in range(2):  # two more state requests while it is busy: coalesced
        gate.offer("state", req(clock, f"s{n}", **{"from": f"c{n + 2}"}), retain=False)
    for n in range(PENDING_MAX + 3):  # snapshots of many cameras: at most PENDING_MAX wait
        clock.t += 1.0  # (enough time for the rate limits)
        gate.offer("snapshot", req(clock, f"p{n}", camera=f"cam-{n}"), retain=False)
    assert gate.status()["waiting"] <= PENDING_MAX
    assert any("too many requests waiting" in why for why in gate.ignored)
    release.set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert sent[0] == ["a"] and sent[1] == ["s0", "s1"]  # one answer for both
    assert calls.count("state") == 2
    # a replay of an answered id is answered from the cache, the hook not called again
    before = len(calls)
    clock.t += 10
    gate.offer("state", req(clock, "s0"), retain=False)
    await asyncio.sleep(0)
    assert len(calls) == before and replayed == [[("t", b'["s0", "s1"]')]]
    # one requester: a burst, then the rate limit
    for n in range(int(PER_REQUESTER_BURST) + 2):
        gate.offer("state", req(clock, f"r{n}", **{"from": "noisy"}), retain=False)
    assert gate.ignored.get("rate limit", 0) >= 1
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)


async def test_a_request_left_by_a_dropped_connection_is_answered_on_the_next() -> None:
    clock = Clock()
    got: list[list[str]] = []
    hang = asyncio.Event()

    async def hook(name: str, body: dict[str, Any]) -> Decision | None:
        if body["camera" if name == "snapshot" else "id"] == "cam-1":
            await hang.wait()  # the connection drops while this one is answered
        return gateway_decision(DecisionType.STATS, name, part="t", wall=1.0, mono=1.0)

    async def publish(d: Decision, ids: list[str]) -> list[tuple[str, bytes]]:
        got.append(ids)
        return []

    async def republish(msgs: list[tuple[str, bytes]]) -> None:
        pass

    gate = Downlink(clock, hook)  # type: ignore[arg-type]
    gate.offer("snapshot", req(clock, "first", camera="cam-1"), retain=False)
    gate.offer("state", req(clock, "second"), retain=False)
    first = asyncio.create_task(gate.serve(publish, republish))
    for _ in range(10):
        await asyncio.sleep(0)
    first.cancel()  # the link dropped: "second" still waits
    await asyncio.gather(first, return_exceptions=True)
    again = asyncio.create_task(gate.serve(publish, republish))  # the next connection
    for _ in range(20):
        await asyncio.sleep(0)
    again.cancel()
    await asyncio.gather(again, return_exceptions=True)
    assert got == [["second"]]
