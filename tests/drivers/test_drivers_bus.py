"""BusWorker over real pty pairs with the firmware mocks: values, edges, faults, commands."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agent.clock import SystemClock
from agent.events import Command, CommandResult, Condition, Observation, Reading, StateChange
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import RtuBus, TcpBus
from drivers.bus import BusWorker
from drivers.link import late_watch_s
from firmware_mocks import Fault, SimDevice, SimRtuBus, SimTcpServer, load_modbus_profile

ACREL = load_modbus_profile("acrel-aim-r100")
CALECTRO = load_modbus_profile("calectro-ug3-o-mb-r")
EFIRE = load_modbus_profile("generic-electrical-fire")
DETECTOR = load_modbus_profile("generic-modbus-detector")


def rtu_yaml(
    path: str,
    *,
    timeout_s: float = 0.1,
    retries: int = 0,
    offline_after: int = 2,
    interval_s: float = 0.2,
    offline_poll_s: float = 1.0,
) -> str:
    return f"""
- name: rs485-1
  type: rtu
  port: {path}
  baudrate: 9600
  timeout_s: {timeout_s}
  retries: {retries}
  offline_after: {offline_after}
  offline_poll_s: {offline_poll_s}
  devices:
    - {{name: leak-1, profile: acrel-aim-r100, device_id: 1, zone: electrical-room, poll_interval_s: {interval_s}}}
    - {{name: smoke-3, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen, poll_interval_s: {interval_s}}}
    - {{name: efire-7, profile: generic-electrical-fire, device_id: 7, zone: electrical-room, poll_interval_s: {interval_s}}}
    - {{name: det-9, profile: generic-modbus-detector, device_id: 9, zone: hall, poll_interval_s: {interval_s}}}
"""


@contextlib.asynccontextmanager
async def running(site: LoadedSite) -> AsyncIterator[tuple[BusWorker, asyncio.Queue[Observation]]]:
    bus = site.config.buses[0]
    assert isinstance(bus, RtuBus | TcpBus)
    q: asyncio.Queue[Observation] = asyncio.Queue()
    w = BusWorker(bus, site, q, SystemClock())
    task = asyncio.create_task(w.run())
    try:
        yield w, q
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def sim_bus(**kw: Any) -> SimRtuBus:
    return SimRtuBus(
        [SimDevice(1, ACREL), SimDevice(3, CALECTRO), SimDevice(7, EFIRE), SimDevice(9, DETECTOR)],
        **kw,
    )


def states(obs: list[Observation], source: str | None = None) -> list[StateChange]:
    return [o for o in obs if isinstance(o, StateChange) and (source is None or o.source == source)]


def readings(obs: list[Observation], source: str | None = None) -> list[Reading]:
    return [o for o in obs if isinstance(o, Reading) and (source is None or o.source == source)]


def active(obs: list[Observation], source: str, condition: Condition, point: str = "") -> bool:
    def match(o: Observation) -> bool:
        return (
            isinstance(o, StateChange)
            and o.source == source
            and o.condition is condition
            and o.point == point
            and o.active
        )

    return any(match(o) for o in obs)


async def test_first_poll_gives_values_and_whole_state(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with sim_bus() as sim:
        sim.device(1).set_point("leakage_l1", 123)
        sim.device(1).set_point("setpoint_l1", 300)
        sim.device(7).set_point("temperature_3", 41.25)
        sim.device(9).set_point("smoke_level", 1.5)
        sim.device(9).set_point("temperature", -4.5)
        site = make_site(rtu_yaml(sim.path))
        async with running(site) as (w, q):
            t0 = time.time()
            seen = await collect(
                q,
                lambda s: (
                    {o.source for o in states(s)} >= {"leak-1", "smoke-3", "efire-7", "det-9"}
                ),
                5,
            )
            r = {(o.source, o.point): o for o in readings(seen)}
            assert r[("leak-1", "loop1")].value == 123
            assert r[("leak-1", "loop1")].setpoint == 300
            assert r[("leak-1", "loop1")].unit == "mA"
            assert r[("efire-7", "t3")].value == pytest.approx(41.25)
            assert r[("efire-7", "t3")].quantity.value == "temperature_c"
            assert r[("det-9", "smoke")].value == pytest.approx(1.5)
            assert r[("det-9", "heat")].value == pytest.approx(-4.5)
            assert all(t0 - 0.5 < o.wall < time.time() + 0.01 for o in readings(seen))
            # the whole current state once, when the device first answers
            sc = {(o.point, o.condition): o.active for o in states(seen, "smoke-3")}
            assert sc == {
                ("", Condition.FAULT): False,
                ("", Condition.DIRTY): False,
                ("", Condition.ALARM): False,
            }
            assert all(o.kind.value == "smoke" for o in states(seen, "smoke-3"))
            assert w.status()["devices"]["leak-1"]["online"]


async def test_alarm_edges_only_and_reset_command(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with sim_bus() as sim:
        site = make_site(rtu_yaml(sim.path, interval_s=0.1))
        async with running(site) as (w, q):
            await collect(q, lambda s: len(states(s, "smoke-3")) >= 3, 5)
            sim.device(3).set_condition("smoke_alarm", True)
            seen = await collect(q, lambda s: active(s, "smoke-3", Condition.ALARM), 3)
            await asyncio.sleep(0.5)  # several more polls in alarm: no repeated edge
            later = [o for o in (q.get_nowait() for _ in range(q.qsize()))]
            assert not states(later, "smoke-3")
            w.commands.put_nowait(
                Command(target="smoke-3", action="reset", wall=time.time(), mono=time.monotonic())
            )
            seen = await collect(
                q,
                lambda s: (
                    any(isinstance(o, CommandResult) for o in s)
                    and any(
                        isinstance(o, StateChange) and o.source == "smoke-3" and not o.active
                        for o in s
                    )
                ),
                3,
            )
            res = next(o for o in seen if isinstance(o, CommandResult))
            assert res.ok and res.action == "reset" and res.source == "smoke-3"
            assert sim.device(3).commands_received == ["reset"]
            assert [(o.condition, o.active) for o in states(seen, "smoke-3")] == [
                (Condition.ALARM, False)
            ]
            # a command the profile lacks, and a device not on this bus
            w.commands.put_nowait(Command(target="leak-1", action="reset", wall=0, mono=0))
            w.commands.put_nowait(Command(target="nobody", action="reset", wall=0, mono=0))
            seen = await collect(q, lambda s: sum(isinstance(o, CommandResult) for o in s) == 2, 3)
            bad = [o for o in seen if isinstance(o, CommandResult)]
            assert not bad[0].ok and "no command 'reset'" in bad[0].detail
            assert not bad[1].ok and "not on bus" in bad[1].detail


async def test_sentinel_is_a_fault_never_a_reading_and_flags_or(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with sim_bus() as sim:
        site = make_site(rtu_yaml(sim.path, interval_s=0.1))
        async with running(site) as (_, q):
            await collect(q, lambda s: len(readings(s, "leak-1")) >= 12, 5)
            sim.device(1).set_raw("leakage_l2", 0xE5E5)
            seen = await collect(q, lambda s: active(s, "leak-1", Condition.FAULT, "loop2"), 3)
            f = next(o for o in states(seen, "leak-1") if o.point == "loop2" and o.active)
            assert f.detail == "short circuit"
            await asyncio.sleep(0.3)
            seen += [q.get_nowait() for _ in range(q.qsize())]
            after = seen.index(f)
            assert not any(o.point == "loop2" for o in readings(seen[after:], "leak-1"))
            # both flag bits of a loop map to the same point: one edge, OR-ed
            sim.device(1).set_flag("fault_flags_1_6", 2 * 2, True)  # loop3 short
            seen = await collect(q, lambda s: active(s, "leak-1", Condition.FAULT, "loop3"), 3)
            sim.device(1).set_flag("fault_flags_1_6", 2 * 2 + 1, True)  # loop3 open as well
            await asyncio.sleep(0.3)
            sim.device(1).set_flag("fault_flags_1_6", 2 * 2, False)
            await asyncio.sleep(0.3)
            more = [q.get_nowait() for _ in range(q.qsize())]
            assert not [o for o in states(more, "leak-1") if o.point == "loop3"]
            sim.device(1).set_flag("fault_flags_1_6", 2 * 2 + 1, False)
            seen = await collect(
                q,
                lambda s: any(o.point == "loop3" and not o.active for o in states(s, "leak-1")),
                3,
            )


async def test_offline_within_configured_time_and_back(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with sim_bus() as sim:
        site = make_site(
            rtu_yaml(
                sim.path,
                timeout_s=0.1,
                retries=1,
                offline_after=2,
                interval_s=0.2,
                offline_poll_s=1.0,
            )
        )
        async with running(site) as (w, q):
            await collect(q, lambda s: len(states(s, "smoke-3")) >= 3, 5)
            sim.device(3).inject(Fault.NO_REPLY)
            t0 = time.monotonic()
            seen = await collect(q, lambda s: active(s, "smoke-3", Condition.OFFLINE), 8)
            took = time.monotonic() - t0
            # 2 polls (3 tries in all), each try after the watch for the late reply of
            # the one before (late_watch_s), plus timeouts and wire time
            assert took < 2 * late_watch_s(0.1) + 3 * (0.1 + 0.02) + 1.5, took  # + load
            assert "no reply" in next(o for o in states(seen, "smoke-3")).detail
            # the others keep being read meanwhile
            n0 = sim.device(1).requests
            await asyncio.sleep(0.6)
            assert sim.device(1).requests - n0 >= 4
            # offline: polled only every offline_poll_s, without retries
            r0 = sim.device(3).requests
            await asyncio.sleep(1.05)
            assert sim.device(3).requests - r0 <= 2
            sim.device(3).clear_faults()
            seen = await collect(
                q,
                lambda s: any(
                    o.source == "smoke-3" and o.condition is Condition.OFFLINE and not o.active
                    for o in states(s)
                ),
                # its next poll: offline_poll_s, or the end of the watch for its late reply
                1.0 + late_watch_s(0.1) + 1.0,
            )
            assert not w.status()["devices"]["smoke-3"]["offline"]


@pytest.mark.parametrize(
    "fault", [Fault.CRC, Fault.WRONG_ID, Fault.TRUNCATED, Fault.GARBAGE, Fault.GARBAGE_PREFIX]
)
async def test_bad_frames_never_give_a_wrong_value(
    fault: Fault, make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with sim_bus() as sim:
        site = make_site(rtu_yaml(sim.path, retries=1, offline_after=3, interval_s=0.1))
        dev = sim.device(1)
        dev.set_point("leakage_l1", 55)
        async with running(site) as (w, q):
            await collect(q, lambda s: any(r.source == "leak-1" for r in readings(s)), 5)
            # every reply broken (for 8 requests); the register changes meanwhile
            dev.set_point("leakage_l1", 777)
            dev.inject(fault, count=8)
            await asyncio.sleep(1.2)
            dev.clear_faults()
            seen = await collect(
                q,
                lambda s: any(
                    r.source == "leak-1" and r.point == "loop1" and r.value == 777
                    for r in readings(s)
                ),
                5,
            )
            values = {r.value for r in readings(seen, "leak-1") if r.point == "loop1"}
            assert values <= {55.0, 777.0}, values
            if fault is Fault.GARBAGE_PREFIX:
                # a good frame after noise is found: no request even failed
                assert w.request_errors == 0
            else:
                assert w.request_errors >= 1


async def test_late_reply_not_taken_for_a_later_request(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with sim_bus() as sim:
        site = make_site(
            rtu_yaml(sim.path, timeout_s=0.1, retries=0, offline_after=5, interval_s=0.1)
        )
        dev = sim.device(1)
        dev.late_s = 0.15
        async with running(site) as (w, q):
            await collect(q, lambda s: any(r.source == "leak-1" for r in readings(s)), 5)
            dev.inject(Fault.LATE, count=3)
            await asyncio.sleep(1.0)
            seen = [q.get_nowait() for _ in range(q.qsize())]
            assert not active(seen, "leak-1", Condition.OFFLINE)
            assert w.request_errors >= 1
            # wrong-id/late frames did not shift readings between devices
            for r in readings(seen, "efire-7"):
                assert r.value == 0.0


async def test_port_vanishes_and_comes_back(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with sim_bus() as sim:
        # offline devices are re-polled as soon as the port is back, not after offline_poll_s
        site = make_site(rtu_yaml(sim.path, offline_after=2, interval_s=0.2, offline_poll_s=60))
        async with running(site) as (w, q):
            await collect(q, lambda s: len(states(s, "smoke-3")) >= 3, 5)
            sim.vanish()
            t0 = time.process_time()
            seen = await collect(
                q,
                lambda s: all(
                    active(s, n, Condition.OFFLINE)
                    for n in ("leak-1", "smoke-3", "efire-7", "det-9")
                ),
                3,
            )
            assert any("ttySIM0" in o.detail for o in states(seen))
            await asyncio.sleep(1.0)
            assert not w.status()["open"]
            # no busy loop while the port is gone
            assert time.process_time() - t0 < 0.5
            # a command meanwhile fails cleanly, with the reason
            w.commands.put_nowait(Command(target="smoke-3", action="reset", wall=0, mono=0))
            res = await collect(q, lambda s: any(isinstance(o, CommandResult) for o in s), 3)
            failed = next(o for o in res if isinstance(o, CommandResult))
            assert not failed.ok and "ttySIM0" in failed.detail
            sim.reappear()
            seen = await collect(
                q,
                lambda s: all(
                    any(
                        o.source == n and o.condition is Condition.OFFLINE and not o.active
                        for o in states(s)
                    )
                    for n in ("leak-1", "smoke-3")
                ),
                6,
            )
            assert w.status()["open"]


async def test_tcp_bus(make_site: Callable[[str], LoadedSite], collect: Any) -> None:
    with SimTcpServer([SimDevice(1, ACREL), SimDevice(2, EFIRE)]) as srv:
        srv.device(2).set_point("leakage", 250.5)
        site = make_site(f"""
- name: tcp-1
  type: tcp
  host: 127.0.0.1
  port: {srv.port}
  timeout_s: 0.1
  retries: 0
  offline_after: 2
  offline_poll_s: 1
  devices:
    - {{name: leak-1, profile: acrel-aim-r100, device_id: 1, zone: electrical-room, poll_interval_s: 0.1}}
    - {{name: efire-2, profile: generic-electrical-fire, device_id: 2, zone: electrical-room, poll_interval_s: 0.1}}
""")
        async with running(site) as (_w, q):
            seen = await collect(
                q,
                lambda s: any(r.source == "efire-2" and r.point == "leakage" for r in readings(s)),
                5,
            )
            assert next(
                r for r in readings(seen, "efire-2") if r.point == "leakage"
            ).value == pytest.approx(250.5)
            srv.device(2).inject(Fault.WRONG_ID, count=4)
            srv.device(2).set_point("leakage", 9.0)
            await asyncio.sleep(0.6)
            seen = [q.get_nowait() for _ in range(q.qsize())]
            assert {r.value for r in readings(seen, "efire-2") if r.point == "leakage"} <= {
                250.5,
                9.0,
            }
            srv.device(1).inject(Fault.NO_REPLY)
            await collect(q, lambda s: active(s, "leak-1", Condition.OFFLINE), 3)
            srv.device(2).inject(Fault.GARBAGE, count=2)
            srv.device(2).set_point("leakage", 12.0)
            await collect(
                q, lambda s: any(r.source == "efire-2" and r.value == 12.0 for r in readings(s)), 5
            )
            srv.drop_connections()
            srv.device(2).set_point("leakage", 13.0)
            await collect(
                q, lambda s: any(r.source == "efire-2" and r.value == 13.0 for r in readings(s)), 5
            )


async def test_port_missing_at_start_then_plugged_in(
    make_site: Callable[[str], LoadedSite], collect: Any
) -> None:
    with sim_bus() as sim:
        sim.vanish()
        site = make_site(rtu_yaml(sim.path, offline_after=2, interval_s=0.2, offline_poll_s=60))
        async with running(site) as (w, q):
            seen = await collect(q, lambda s: len(states(s)) >= 4, 3)
            assert {o.source for o in states(seen)} == {"leak-1", "smoke-3", "efire-7", "det-9"}
            assert all(o.condition is Condition.OFFLINE and o.active for o in states(seen))
            assert "cannot open" in states(seen)[0].detail
            assert w.progress_mono > 0
            sim.reappear()
            await collect(q, lambda s: len(readings(s, "leak-1")) >= 12, 15)


async def test_wire_time_emulation_matches_the_model() -> None:
    # 10 reads of 10 registers at 9600 baud: each at least 45.8 ms on the "wire"
    from drivers import frames
    from drivers.link import RtuLink

    with SimRtuBus([SimDevice(1, ACREL)], baudrate=9600, emulate_wire_time=True) as sim:
        link = RtuLink(sim.path, 9600, turnaround_s=0.0)
        await link.open()
        pdu = frames.read_request(frames.READ_HOLDING, 0x4A, 10)
        try:
            await link.transact(1, pdu, 0.3)
            t0 = time.monotonic()
            for _ in range(10):
                await link.transact(1, pdu, 0.3)
            per_read = (time.monotonic() - t0) / 10
        finally:
            link.close()
    model = frames.transaction_wire_s(9600, 8, 25)
    # never faster than the wire; the upper bound only catches gross errors (shared CI cores)
    assert model * 0.99 <= per_read <= model * 3, (per_read, model)


async def test_scaled_clock_polls_in_simulated_time(make_site: Callable[[str], LoadedSite]) -> None:
    # the demo runs the agent at --speed N: poll intervals are simulated seconds,
    # bus timeouts stay real
    from agent.clock import ScaledClock

    with SimRtuBus([SimDevice(3, CALECTRO)]) as sim:
        site = make_site(f"""
- name: rs485-1
  type: rtu
  port: {sim.path}
  timeout_s: 0.1
  devices:
    - {{name: smoke-3, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen, poll_interval_s: 1}}
""")
        bus = site.config.buses[0]
        assert isinstance(bus, RtuBus)
        q: asyncio.Queue[Observation] = asyncio.Queue()
        clock = ScaledClock(20.0)
        w = BusWorker(bus, site, q, clock)
        task = asyncio.create_task(w.run())
        try:
            await asyncio.sleep(1.0)  # 20 simulated seconds
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        polls = w.status()["devices"]["smoke-3"]["polls_ok"]
        assert 15 <= polls <= 22, polls
        assert clock.monotonic() - w.progress_mono < 3.0
