"""The GB/T 26875.3 uplink against the mock centre on a real socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.events import DecisionType
from agent.gb26875.codec import Command, TimeLabel
from agent.gb26875.objects import (
    DEVICE_FAULT,
    DEVICE_NORMAL,
    STATE_FAULT,
    STATE_FIRE,
    STATE_NORMAL,
    STATE_SUPERVISORY,
    ComponentAnalog,
    ComponentRef,
    ComponentState,
    DeviceState,
    DeviceTime,
    DeviceVersion,
    Reserved,
    SystemRef,
    SystemState,
    TypeFlag,
    Unit,
    decode_unit,
)
from tests.gb26875.support import KITCHEN_SMOKE, LEAKAGE, STORE_SMOKE, T0, decision, gateway, rig


def states(objs: list) -> list[tuple[int, int]]:
    return [(o.component_address, o.state) for o in objs if isinstance(o, ComponentState)]


async def test_fire_alarm_reaches_the_centre_as_the_components_fire_state(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.drained()
        (obj,) = r.centre.objects(TypeFlag.COMPONENT_STATE)
        assert isinstance(obj, ComponentState)
        assert obj.component_address == KITCHEN_SMOKE
        assert obj.component_type == 42  # point optical smoke detector
        assert obj.state == STATE_NORMAL | STATE_FIRE
        assert obj.description == "厨房"  # the zone's name, GB 18030
        assert obj.time == TimeLabel.from_wall(T0 + 1, 480)
        # the connection began with the device's own state
        first = r.centre.data_units()[0]
        assert first.type == TypeFlag.DEVICE_STATE


async def test_fault_then_restore_and_a_restore_keeps_other_bits(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.drained()
        await r.outbox.submit(decision(DecisionType.FAULT, 2, condition="dirty"))
        await r.drained()
        await r.outbox.submit(decision(DecisionType.RESTORE, 3, of="fault"))
        await r.drained()
        await r.outbox.submit(decision(DecisionType.RESTORE, 4, devices=(), of="fire_alarm"))
        await r.drained()
        assert states(r.centre.objects(TypeFlag.COMPONENT_STATE)) == [
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FIRE),
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FIRE | STATE_FAULT),
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FIRE),  # the fault cleared, the fire not
            (KITCHEN_SMOKE, STATE_NORMAL),  # the zone's fire cleared (found by zone)
        ]


async def test_electrical_prealarm_as_supervisory_state_and_analog_value(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.outbox.submit(
            decision(
                DecisionType.ELECTRICAL_PREALARM,
                1,
                zone="store",
                devices=("leakage",),
                quantity="temperature_c",
                value=71.5,
                setpoint=70.0,
            )
        )
        await r.outbox.submit(
            decision(
                DecisionType.ELECTRICAL_PREALARM,
                2,
                zone="store",
                devices=("leakage",),
                quantity="residual_current_ma",
                value=520.0,
                setpoint=300.0,
            )
        )
        await r.drained()
        assert (
            states(r.centre.objects(TypeFlag.COMPONENT_STATE))
            == [(LEAKAGE, STATE_NORMAL | STATE_SUPERVISORY)] * 2
        )
        analog = r.centre.objects(TypeFlag.COMPONENT_ANALOG)
        assert [(a.component_address, a.analog_type, a.value) for a in analog] == [  # type: ignore[union-attr]
            (LEAKAGE, 3, 715),  # temperature, 0.1 C
            (LEAKAGE, 9, 5),  # 520 mA as current in 0.1 A
        ]
        assert all(isinstance(a, ComponentAnalog) and a.component_type == 17 for a in analog)


async def test_gateway_fault_and_restore_as_the_devices_own_state(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))
        await r.outbox.submit(gateway(DecisionType.FAULT))
        await r.drained()
        await r.outbox.submit(gateway(DecisionType.RESTORE))
        await r.drained()
        own = [o.state for o in r.centre.objects(TypeFlag.DEVICE_STATE)]  # type: ignore[union-attr]
        assert own == [DEVICE_NORMAL, DEVICE_NORMAL | DEVICE_FAULT, DEVICE_NORMAL]


async def test_stats_have_no_place_and_leave_the_queue(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))
        await r.outbox.submit(decision(DecisionType.STATS, 1, devices=()))
        await r.drained()
        assert [u.type for u in r.centre.data_units()] == [TypeFlag.DEVICE_STATE]


async def test_fire_alarms_go_first(tmp_path: Path) -> None:
    async with rig(tmp_path, start_uplink=False) as r:
        await r.outbox.submit(decision(DecisionType.STATS, 1, devices=()))
        await r.outbox.submit(decision(DecisionType.FAULT, 2, devices=("store-smoke",)))
        await r.outbox.submit(
            decision(DecisionType.RESTORE, 3, devices=("store-smoke",), of="fault")
        )
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 4))
        r.start()
        await r.drained()
        assert states(r.centre.objects(TypeFlag.COMPONENT_STATE)) == [
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FIRE),
            (STORE_SMOKE, STATE_NORMAL | STATE_FAULT),
            (STORE_SMOKE, STATE_NORMAL),
        ]


async def test_a_decision_stays_until_the_confirm_and_a_late_confirm_means_a_retransmission(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, confirm_timeout_s=0.3) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))
        r.centre.late_s = 0.5  # past the 0.3 s timeout: the gateway sends again
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.centre.wait_for(lambda: len(r.centre.received) >= 2)
        assert await r.rows() == 1  # sent, not yet confirmed: still stored
        await r.drained()
        fire = [x for x in r.centre.received if x.unit and x.unit.type == TypeFlag.COMPONENT_STATE]
        assert len(fire) >= 2
        assert len({x.frame.serial for x in fire}) == 1  # the same serial: the centre can discard
        assert {x.frame.encode()[27:] for x in fire} == {fire[0].frame.encode()[27:]}


async def test_deny_then_confirm_is_a_retransmission_not_a_fault(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))
        r.centre.deny_next = 1
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.drained()
        assert states(r.centre.objects(TypeFlag.COMPONENT_STATE)) == [
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FIRE)
        ]
        assert r.reported == []


async def test_a_denied_decision_becomes_a_fault_with_its_reason_then_a_restore(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))
        r.centre.deny_next = 3  # retries = 2: three tries, all denied
        d = decision(DecisionType.FIRE_ALARM, 1)
        await r.outbox.submit(d)
        await r.drained()
        assert r.uplink.denied == 1
        (fault,) = r.reported
        assert fault.type == DecisionType.FAULT
        assert (
            d.id in fault.reason
            and "denied" in fault.reason
            and "test fire_alarm 1" in fault.reason
        )
        assert fault.details["part"] == "gb26875"
        await r.outbox.submit(decision(DecisionType.FAULT, 2))
        await r.drained()
        assert [x.type for x in r.reported] == [DecisionType.FAULT, DecisionType.RESTORE]


async def test_a_silent_centre_costs_the_connection_not_the_decision(tmp_path: Path) -> None:
    async with rig(tmp_path, confirm_timeout_s=0.2) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))
        r.centre.silent_next = 3  # three tries unanswered: the gateway reconnects
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.centre.wait_for(lambda: r.centre.connections >= 2)
        await r.drained()
        assert states(r.centre.objects(TypeFlag.COMPONENT_STATE)) == [
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FIRE)
        ]


async def test_connection_dropped_mid_frame_loses_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))
        r.centre.drop_next = 1
        r.centre.drop_mid_frame = True  # half a confirm, then the connection is gone
        for i in range(5):
            await r.outbox.submit(decision(DecisionType.FAULT, i, devices=("store-smoke",)))
        await r.drained()
        assert r.centre.connections >= 2
        times = {o.time for o in r.centre.objects(TypeFlag.COMPONENT_STATE)}
        assert times == {TimeLabel.from_wall(T0 + i, 480) for i in range(5)}


async def test_queries_are_answered_from_the_agents_state(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.outbox.submit(
            decision(
                DecisionType.ELECTRICAL_PREALARM,
                2,
                zone="store",
                devices=("leakage",),
                quantity="temperature_c",
                value=65.0,
            )
        )
        await r.drained()
        c = r.centre

        ans = await c.request(Command.REQUEST, Unit(TypeFlag.READ_DEVICE_STATE, (Reserved(),)))
        assert ans.command == Command.RESPONSE
        (own,) = decode_unit(ans.data).objects  # type: ignore[union-attr]
        assert isinstance(own, DeviceState) and own.state & DEVICE_NORMAL and own.state & 0x02

        ans = await c.request(
            Command.REQUEST,
            Unit(
                TypeFlag.READ_COMPONENT_STATE,
                (ComponentRef(1, 1, KITCHEN_SMOKE), ComponentRef(1, 1, STORE_SMOKE)),
            ),
        )
        assert states(list(decode_unit(ans.data).objects)) == [  # type: ignore[union-attr]
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FIRE),
            (STORE_SMOKE, STATE_NORMAL),
        ]

        ans = await c.request(
            Command.REQUEST, Unit(TypeFlag.READ_COMPONENT_ANALOG, (ComponentRef(1, 1, LEAKAGE),))
        )
        (val,) = decode_unit(ans.data).objects  # type: ignore[union-attr]
        assert isinstance(val, ComponentAnalog) and (val.analog_type, val.value) == (3, 650)

        ans = await c.request(Command.REQUEST, Unit(TypeFlag.READ_SYSTEM_STATE, (SystemRef(1, 1),)))
        (sysst,) = decode_unit(ans.data).objects  # type: ignore[union-attr]
        assert (
            isinstance(sysst, SystemState)
            and sysst.state & STATE_FIRE
            and sysst.state & STATE_SUPERVISORY
        )

        ans = await c.request(Command.REQUEST, Unit(TypeFlag.READ_DEVICE_VERSION, (Reserved(),)))
        assert decode_unit(ans.data) == Unit(TypeFlag.DEVICE_VERSION, (DeviceVersion(0, 3),))

        ans = await c.request(Command.REQUEST, Unit(TypeFlag.READ_DEVICE_TIME, (Reserved(),)))
        (t,) = decode_unit(ans.data).objects  # type: ignore[union-attr]
        assert isinstance(t, DeviceTime)

        # clock sync: confirmed, and the gateway's time labels follow the centre's clock
        ahead = TimeLabel.from_wall(T0, 480)
        ans = await c.request(Command.CONTROL, Unit(TypeFlag.SYNC_CLOCK, (DeviceTime(ahead),)))
        assert ans.command == Command.CONFIRM
        ans = await c.request(Command.REQUEST, Unit(TypeFlag.READ_DEVICE_TIME, (Reserved(),)))
        (t,) = decode_unit(ans.data).objects  # type: ignore[union-attr]
        assert isinstance(t, DeviceTime) and abs(t.time.to_wall(480) - T0) < 5

        # what the gateway does not know is denied, never ignored
        ans = await c.request(
            Command.REQUEST, Unit(TypeFlag.READ_COMPONENT_STATE, (ComponentRef(1, 1, 999),))
        )
        assert ans.command == Command.DENY
        ans = await c.request(Command.REQUEST, bytes([65, 1, 1, 1]))  # read facility version
        assert ans.command == Command.DENY
        ans = await c.request(
            Command.CONTROL, Unit(TypeFlag.SYNC_CLOCK, (DeviceTime(TimeLabel(0, 0, 0, 0, 13, 0)),))
        )
        assert ans.command == Command.DENY  # month 13
        ans = await c.request(Command.CONTROL, Unit(TypeFlag.ON_DUTY_CHECK, (Reserved(10),)))
        assert ans.command == Command.CONFIRM
        assert c.connections == 1


async def test_hostile_frames_cost_one_connection_never_the_agent(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        c = r.centre
        await c.wait_for(lambda: bool(c.data_units()))
        # a bad checksum: denied, the connection stays
        bad = bytearray(c._frame(7, Command.REQUEST, 889, bytes([81, 1, 0])).encode())
        bad[-3] ^= 0x55
        n = len(c.received)
        await c.send_raw(bytes(bad))
        await asyncio.sleep(0.2)
        assert c.connections == 1 and r.uplink.connected
        # a wrong length (over 1024): that connection is closed, a new one opened
        long = bytearray(c._frame(8, Command.REQUEST, 889, bytes([81, 1, 0])).encode())
        long[24:26] = (1025).to_bytes(2, "little")
        await c.send_raw(bytes(long))
        await c.wait_for(lambda: c.connections >= 2 and c.connected)
        # 10 MB of garbage: the same
        await c.send_raw(b"\xff" * 10_000_000)
        await c.wait_for(lambda: c.connections >= 3 and c.connected)
        assert r.task is not None and not r.task.done()
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.drained()
        assert states(c.objects(TypeFlag.COMPONENT_STATE)) == [
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FIRE)
        ]
        assert len(c.received) > n


async def test_heartbeat_when_idle(tmp_path: Path) -> None:
    async with rig(tmp_path, heartbeat=1.0) as r:
        await r.centre.wait_for(
            lambda: sum(1 for x in r.centre.received if not x.frame.data) >= 2, 5
        )
        assert all(x.answer == Command.CONFIRM for x in r.centre.received)


async def test_a_decision_without_a_gb_form_is_a_fault_not_a_stuck_queue(tmp_path: Path) -> None:
    import dataclasses

    async with rig(tmp_path) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))
        odd = dataclasses.replace(decision(DecisionType.FIRE_ALARM, 1), wall=4_200_000_000.0)
        await r.outbox.submit(odd)  # year 2103: no two-digit time label holds it
        await r.outbox.submit(decision(DecisionType.FAULT, 2))
        await r.drained()
        assert [d.type for d in r.reported] == [DecisionType.FAULT]
        assert odd.id in r.reported[0].reason and "no GB/T 26875.3 form" in r.reported[0].reason
        assert states(r.centre.objects(TypeFlag.COMPONENT_STATE)) == [
            (KITCHEN_SMOKE, STATE_NORMAL | STATE_FAULT)
        ]


async def test_an_unreachable_centre_is_a_fault_then_a_restore(tmp_path: Path) -> None:
    from agent.clock import ScaledClock
    from agent.events import Decision
    from agent.gb26875.client import Gb26875Uplink
    from agent.gb26875.mapping import directory_for
    from agent.outbox import Outbox
    from firmware_mocks.broker import free_port
    from firmware_mocks.centre import MockCentre
    from tests.gb26875.support import make_site

    port = free_port()
    site = make_site(tmp_path, port, 60.0, 600.0)  # 60 s at x600: 0.1 s to confirm
    assert site.config.gb26875 is not None
    outbox = Outbox(tmp_path / "state" / "outbox.db", max_rows=1000, max_bytes=10**7)
    reported: list[Decision] = []

    async def report(d: Decision) -> None:
        reported.append(d)

    clock = ScaledClock(600.0)  # 300 s of no centre in about half a second
    up = Gb26875Uplink(
        site.config.gb26875,
        site.config,
        outbox,
        clock,
        "0.3",
        report=report,
        directory=directory_for(site),
    )
    task = asyncio.create_task(up.run())
    centre = MockCentre(port=port)
    try:
        async with asyncio.timeout(10):
            while not reported:  # noqa: ASYNC110 (polls a test list)
                await asyncio.sleep(0.02)
        assert reported[0].type == DecisionType.FAULT and "unreachable" in reported[0].reason
        await centre.start()
        async with asyncio.timeout(10):
            while len(reported) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert reported[1].type == DecisionType.RESTORE and "reachable again" in reported[1].reason
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await centre.stop()
        await outbox.close()
