"""Late replies are never taken as answers to later requests, and a device whose
replies come late is a fault (OFFLINE) within 100 s; on a shared Modbus TCP
connection a late device does not take a healthy one down. Real BusWorker, real
links, the firmware mocks on a pty pair and on a local TCP port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from agent.events import Condition, Observation, StateChange
from agent.siteconfig import LoadedSite
from firmware_mocks import Fault, SimDevice, SimRtuBus, SimTcpServer, load_modbus_profile
from tests.drivers.test_drivers_bus import readings, running

ACREL = load_modbus_profile("acrel-aim-r100")
CALECTRO = load_modbus_profile("calectro-ug3-o-mb-r")


def offline_changes(obs: list[Observation], source: str) -> list[StateChange]:
    return [
        o
        for o in obs
        if isinstance(o, StateChange) and o.source == source and o.condition is Condition.OFFLINE
    ]


def bus_yaml(kind: str, where: str, interval: float = 1.0, slow_extra: str = "") -> str:
    line = (
        f"type: rtu\n  port: {where}"
        if kind == "rtu"
        else f"type: tcp\n  host: 127.0.0.1\n  port: {where}"
    )
    return f"""
- name: bus-1
  {line}
  timeout_s: 0.3
  retries: 1
  offline_after: 3
  offline_poll_s: 30
  devices:
    - {{name: slow-1, profile: acrel-aim-r100, device_id: 1, zone: electrical-room, poll_interval_s: {interval}{slow_extra}}}
    - {{name: smoke-3, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen, poll_interval_s: {interval}}}
"""


async def _watch(q: asyncio.Queue[Observation], seconds: float) -> list[Observation]:
    seen: list[Observation] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                seen.append(await q.get())
        except TimeoutError:
            break
    return seen


@pytest.mark.parametrize("delay_s", [0.8, 1.5])
async def test_rtu_device_answering_late_is_never_read_and_goes_offline(
    delay_s: float, make_site: Callable[[str], LoadedSite]
) -> None:
    slow, healthy = SimDevice(1, ACREL), SimDevice(3, CALECTRO)
    slow.reply_delay_s = delay_s  # every reply comes after the 0.3 s timeout
    with SimRtuBus([slow, healthy]) as sim:
        # polled every 0.5 s: before the fix, 14 of 18 polls took the previous reply
        site = make_site(bus_yaml("rtu", sim.path, interval=0.5))
        async with running(site) as (w, q):
            seen = await _watch(q, 16.0)
            st = w.status()["devices"]
    # not one of its replies was taken as the answer to a later request
    assert st["slow-1"]["polls_ok"] == 0, st["slow-1"]
    assert not readings(seen, "slow-1")
    assert st["slow-1"].get("late_replies", 0) >= 2, st["slow-1"]
    (off,) = [o for o in offline_changes(seen, "slow-1") if o.active]
    assert "after the 0.3 s timeout" in off.detail and "set this device's timeout_s" in off.detail
    # the healthy device on the same line kept being read, never offline
    assert not offline_changes(seen, "smoke-3")
    assert st["smoke-3"]["polls_ok"] >= 12, st["smoke-3"]
    assert st["smoke-3"]["polls_failed"] == 0, st["smoke-3"]


async def test_rtu_device_sometimes_late_is_offline_while_polls_in_time_pass(
    make_site: Callable[[str], LoadedSite],
) -> None:
    """Late now and then: the polls never fail 3 in a row, yet the device is a
    fault well within 100 s, and its replies in time are still read."""
    slow, healthy = SimDevice(1, ACREL), SimDevice(3, CALECTRO)
    slow.late_s = 0.6
    with SimRtuBus([slow, healthy]) as sim:
        site = make_site(bus_yaml("rtu", sim.path))
        async with running(site) as (w, q):
            t0 = time.monotonic()
            seen: list[Observation] = []
            while time.monotonic() - t0 < 30 and not any(
                o.active for o in offline_changes(seen, "slow-1")
            ):
                slow.inject(Fault.LATE, count=1)  # the next request is answered late
                # then wait for a poll in time (values) before the next late one
                new: list[Observation] = []
                while not readings(new, "slow-1") and time.monotonic() - t0 < 30:
                    new += await _watch(q, 0.2)
                seen += new
            took = time.monotonic() - t0
            seen += await _watch(q, 3.0)
            st = w.status()["devices"]
    assert any(o.active for o in offline_changes(seen, "slow-1")), st["slow-1"]
    assert took < 25, took  # a fault within 100 s, OFFLINE then held 30 s at most
    assert readings(seen, "slow-1")  # replies in time still give values
    assert st["slow-1"]["offline"]
    assert not offline_changes(seen, "smoke-3")


async def test_tcp_late_device_does_not_take_a_healthy_one_offline(
    make_site: Callable[[str], LoadedSite],
) -> None:
    """A TCP-to-RTU gateway answers in order: while it waits for the slow device, the
    healthy device's request waits behind it. That wait is not the healthy one's fault."""
    slow, healthy = SimDevice(1, ACREL), SimDevice(3, CALECTRO)
    slow.reply_delay_s = 0.8
    with SimTcpServer([slow, healthy]) as srv:
        site = make_site(bus_yaml("tcp", str(srv.port)))
        async with running(site) as (w, q):
            seen = await _watch(q, 16.0)
            st = w.status()["devices"]
    assert not offline_changes(seen, "smoke-3"), st["smoke-3"]
    assert st["smoke-3"]["polls_ok"] >= 10, st["smoke-3"]
    (off,) = [o for o in offline_changes(seen, "slow-1") if o.active]
    assert st["slow-1"]["polls_ok"] == 0 and st["slow-1"].get("late_replies", 0) >= 2, st["slow-1"]
    assert "after the 0.3 s timeout" in off.detail


@pytest.mark.parametrize("kind", ["rtu", "tcp"])
async def test_a_slow_device_with_its_own_timeout_is_read_and_the_others_keep_theirs(
    kind: str, make_site: Callable[[str], LoadedSite]
) -> None:
    slow, healthy = SimDevice(1, ACREL), SimDevice(3, CALECTRO)
    slow.reply_delay_s = 0.8
    with SimRtuBus([slow, healthy]) as sim, SimTcpServer([slow, healthy]) as srv:
        where = sim.path if kind == "rtu" else str(srv.port)
        site = make_site(bus_yaml(kind, where, slow_extra=", timeout_s: 1.2"))
        async with running(site) as (w, q):
            seen = await _watch(q, 8.0)
            st = w.status()["devices"]
    assert not offline_changes(seen, "slow-1") and not offline_changes(seen, "smoke-3"), st
    # (the slow device's poll is several 0.8 s reads: the bus is busy with it, not stuck)
    assert st["slow-1"]["polls_ok"] >= 2 and st["slow-1"]["late_replies"] == 0, st["slow-1"]
    assert st["slow-1"]["polls_failed"] == 0, st["slow-1"]
    assert st["smoke-3"]["polls_ok"] >= 2 and st["smoke-3"]["polls_failed"] == 0, st["smoke-3"]
