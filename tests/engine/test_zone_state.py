"""Issue 15: every alarm is visible upstream as "verifying" within seconds, as a
retained zone state that never pages; it ends "confirmed" or "held" (with why)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from agent.clock import SystemClock
from agent.events import Decision, DecisionType
from agent.outbox import Outbox
from agent.uplink import Uplink
from firmware_mocks.broker import free_port
from tests.engine.engine_sim import Sim, site
from tests.uplink.uplink_support import Broker, Collector, uplink_config, validator
from tests.uplink.uplink_support import site as uplink_site


def _states(sim: Sim) -> list[tuple[float, Decision]]:
    return sim.of(DecisionType.ZONE_STATE)


def test_first_alarm_is_verifying_at_once_then_held_with_why() -> None:
    sim = Sim()
    (cmd,) = sim.alarm(10, "s1").commands
    ((t, v),) = _states(sim)
    assert t == 10 and v.details["state"] == "verifying" and v.zone == "z"
    assert "alarm verification of s1" in v.details["rule"]
    assert v.details["deadline_s"] == 90 and v.details["deadline"].endswith("Z")
    assert not sim.fires()
    sim.result(10.1, cmd.id, ok=True)
    sim.alarm(11, "s1", active=False)
    sim.until(300)
    assert not sim.fires()
    (_t, v), (_t2, held) = _states(sim)
    assert held.details["state"] == "held" and "no new alarm" in held.reason


def test_verifying_ends_confirmed_with_the_fire_alarm() -> None:
    sim = Sim()
    sim.alarm(10, "s2")
    sim.video(16)
    ((tf, fire),) = sim.fires()
    states = [(t, d.details["state"]) for t, d in _states(sim)]
    assert states == [(10, "verifying"), (16, "confirmed")]
    assert tf == 16 and fire.details["rule"] == "video"


def test_an_immediate_fire_needs_no_verifying_state() -> None:
    from agent.events import Condition, DeviceKind

    sim = Sim(site())
    sim.state(5, "panel", Condition.ALARM, point="1/24", kind=DeviceKind.MANUAL_CALL_POINT)
    assert sim.fires() and not _states(sim)


@contextlib.asynccontextmanager
async def _running(up: Uplink) -> AsyncIterator[None]:
    task = asyncio.create_task(up.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_zone_state_is_retained_per_zone_and_never_a_decision_topic(
    tmp_path: Path,
) -> None:
    sim = Sim()
    sim.alarm(10, "s1")  # zone z: verifying
    sim.alarm(12, "n1")  # zone z2: verifying
    states = [d for _t, d in _states(sim)]
    assert len(states) == 2
    broker = Broker(tmp_path, free_port())
    broker.start()
    try:
        outbox = Outbox(tmp_path / "outbox.db", max_rows=1000, max_bytes=10**8)
        up = Uplink(uplink_config(broker.port), uplink_site(), outbox, SystemClock(), "t")
        async with _running(up):
            for d in states:
                await outbox.submit(d)
            # a centre that connects afterwards still gets each zone's state
            late = Collector(broker.port, topic="firegate/+/+/zone/#")
            await late.wait_for(lambda: outbox.status()["rows"] == 0)  # all PUBACKed
            task = asyncio.create_task(late.run())
            try:
                await late.wait_for(lambda: len(late.messages) == 2)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
    finally:
        broker.stop()
    got = {m.topic: m for m in late.messages}
    assert set(got) == {
        "firegate/school-1/gw1/zone/z/state",
        "firegate/school-1/gw1/zone/z2/state",
    }
    check = validator()
    for m in got.values():
        assert m.retain
        body = m.json()
        check.validate(body)
        assert body["type"] == "zone_state" and body["details"]["state"] == "verifying"
