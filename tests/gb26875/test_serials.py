"""A decision keeps its serial number across retransmissions, reconnects and
restarts, so that the centre can discard what it already confirmed; no other
frame reuses a number the centre still remembers."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from agent.commands.doctor import Context, Outcome
from agent.events import DecisionType
from agent.gb26875.codec import Command, TimeLabel
from agent.gb26875.objects import ComponentState, TypeFlag, Unit
from agent.gb26875.probe import check_centre
from agent.gb26875.serials import HORIZON, LEASE, SERIAL_FILE, SerialBook
from firmware_mocks.centre import MockCentre
from tests.gb26875.support import T0, decision, make_site, rig


def sent_serials(centre: MockCentre, n: int) -> list[int]:
    """Serial numbers of every send-data frame that carried decision n (T0 + n)."""
    label = TimeLabel.from_wall(T0 + n, 480)
    return [
        r.frame.serial
        for r in centre.received
        if r.frame.command == Command.SEND_DATA
        and isinstance(r.unit, Unit)
        and any(isinstance(o, ComponentState) and o.time == label for o in r.unit.objects)
    ]


def recorded(centre: MockCentre) -> list[TimeLabel]:
    return [o.time for o in centre.objects(TypeFlag.COMPONENT_STATE)]  # type: ignore[union-attr]


async def test_a_lost_confirm_then_a_reconnect_resends_under_the_same_serial(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.drained()
        r.centre.lose_confirm_next = 1  # the centre takes decision 2; its confirm is lost
        await r.outbox.submit(decision(DecisionType.FAULT, 2))
        await r.centre.wait_for(lambda: r.centre.connections >= 2)
        await r.drained()
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 3))
        await r.drained()
        first, again = sent_serials(r.centre, 2)
        assert first == again  # the same frame, so the centre knows it
        assert r.centre.discarded >= 1
        assert r.uplink.serials.reused >= 1
        # each decision recorded exactly once, and nothing new mistaken for a duplicate
        labels = [TimeLabel.from_wall(T0 + n, 480) for n in (1, 2, 3)]
        assert sorted(recorded(r.centre), key=labels.index) == labels
        # no other frame of the run ever reused a number
        serials = [x.frame.serial for x in r.centre.received if not x.duplicate]
        assert len(serials) == len(set(serials))


async def test_numbers_continue_after_a_restart_and_a_decision_keeps_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "serials.db"
    book = SerialBook(path)
    own = [await book.own() for _ in range(5)]
    assert own == [0, 1, 2, 3, 4]
    kept = await book.for_decision("d-1", 2)
    book.close()  # as after a kill -9: the file holds what was committed

    book = SerialBook(path)
    assert await book.for_decision("d-1", 2) == kept  # same numbers after the restart
    assert await book.for_decision("d-1", 3) == [*kept, LEASE]  # a new frame: a new number
    assert await book.own() == LEASE + 1  # past everything the last process could use
    book.close()


async def test_the_16_bit_wrap_and_the_horizon(tmp_path: Path) -> None:
    path = tmp_path / "serials.db"
    book = SerialBook(path)
    await book.own()
    book.close()
    with sqlite3.connect(path) as db:  # as if the counter had run for months
        db.execute("UPDATE counter SET lease_end = ?", (65536 - 2,))
    book = SerialBook(path)
    assert [await book.own() for _ in range(3)] == [65534, 65535, 0]  # wraps to 0
    (old,) = await book.for_decision("d-old", 1)
    assert old == 1
    for _ in range(HORIZON - 2):
        book._take()  # numbers go by (heartbeats, other decisions)
    assert await book.for_decision("d-old", 1) == [1]  # still in the horizon: kept
    book._take()
    (fresh,) = await book.for_decision("d-old", 1)  # past it: a centre forgot it long ago
    assert fresh != old
    book.close()


async def test_an_unusable_serial_file_never_holds_up_a_decision(tmp_path: Path) -> None:
    (tmp_path / "serials.db").mkdir()  # a directory where the file should be
    book = SerialBook(tmp_path / "serials.db")
    assert await book.for_decision("d", 2) == [0, 1]
    assert await book.own() == 2
    book.close()


async def test_a_retransmission_within_one_connection_is_discarded_once(tmp_path: Path) -> None:
    async with rig(tmp_path, confirm_timeout_s=0.3) as r:
        r.centre.late_s = 0.5  # the confirm arrives after the gateway's timeout
        await r.outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
        await r.drained()
        await asyncio.sleep(0.3)
        assert len(set(sent_serials(r.centre, 1))) == 1
        assert recorded(r.centre) == [TimeLabel.from_wall(T0 + 1, 480)]


async def test_doctors_heartbeat_never_takes_a_number_the_agent_is_about_to_use(
    tmp_path: Path,
) -> None:
    (tmp_path / "state").mkdir()
    book = SerialBook(tmp_path / "state" / SERIAL_FILE)
    await book.own()
    book.close()
    with sqlite3.connect(tmp_path / "state" / SERIAL_FILE) as db:  # near the 16-bit wrap
        db.execute("UPDATE counter SET lease_end = ?", (65536 - 3,))
    async with rig(tmp_path) as r:
        await r.centre.wait_for(lambda: bool(r.centre.data_units()))  # own state: 65533
        assert r.centre.received[0].frame.serial == 65533
        site = make_site(tmp_path, r.centre.port)
        (res,) = await check_centre(Context(tmp_path / "site.yaml", timeout_s=2.0, site=site))
        assert res.outcome == Outcome.PASS, res
        for n in range(1, 5):  # 65534, 65535, 0, 1: across the wrap
            await r.outbox.submit(decision(DecisionType.FAULT, n))
            await r.drained()
        labels = [TimeLabel.from_wall(T0 + n, 480) for n in range(1, 5)]
        assert recorded(r.centre) == labels  # none taken for the doctor's heartbeat
        assert r.centre.discarded == 0
