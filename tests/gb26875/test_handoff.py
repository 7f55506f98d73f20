"""Both uplinks: a kill -9 between the two outboxes' commits of a decision
loses it for neither; after the restart MQTT and the centre both get it."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from pathlib import Path

import pytest

from agent.events import DecisionType, Evidence
from agent.gb26875.codec import TimeLabel
from agent.gb26875.objects import STATE_FIRE, SystemState, TypeFlag
from agent.gb26875.sink import BothOutboxes, HandoffJournal, decision_json, decision_of
from agent.outbox import Outbox
from firmware_mocks.broker import free_port
from firmware_mocks.centre import MockCentre
from tests.gb26875.both_child import FIRE_N
from tests.gb26875.support import T0, decision
from tests.uplink.uplink_support import Broker, Collector, spawn_python


def child(
    folder: Path, centre: int, broker: int, mode: str, first: str = ""
) -> subprocess.Popen[bytes]:
    return spawn_python(
        "import asyncio\n"
        "from pathlib import Path\n"
        "from tests.gb26875.both_child import main\n"
        f"asyncio.run(main(Path({str(folder)!r}), {centre}, {broker}, {mode!r}, {first!r}))\n"
    )


@pytest.mark.parametrize("first", ["mqtt", "gb"])
async def test_kill_between_the_two_outbox_commits_loses_it_for_neither_uplink(
    tmp_path: Path, first: str
) -> None:
    centre = MockCentre()
    await centre.start()
    broker = Broker(tmp_path, free_port())
    broker.start()
    collector = Collector(broker.port)
    sub = asyncio.create_task(collector.run())
    try:
        await asyncio.wait_for(collector.ready.wait(), 5)
        crash = child(tmp_path, centre.port, broker.port, "crash", first)
        assert await asyncio.to_thread(crash.wait, 30) == 9  # died in the hook
        # exactly one outbox holds it now
        for name, holds in (("outbox.db", first == "mqtt"), ("outbox-gb26875.db", first == "gb")):
            box = Outbox(tmp_path / "state" / name, 100, 10**6)
            assert [p.type for p in await box.next_batch(10)] == (["fire_alarm"] if holds else [])
            await box.close()

        again = child(tmp_path, centre.port, broker.port, "run")
        try:
            label = TimeLabel.from_wall(T0 + FIRE_N, 480)

            def centre_has_it() -> bool:
                return any(
                    isinstance(o, SystemState) and o.time == label and o.state & STATE_FIRE
                    for o in centre.objects(TypeFlag.SYSTEM_STATE)
                )

            await centre.wait_for(centre_has_it, 20)
            await collector.wait_for(
                lambda: any(d["type"] == "fire_alarm" for d in collector.decisions()), 20
            )
        finally:
            again.kill()
            again.wait()
        fires = [d for d in collector.decisions() if d["type"] == "fire_alarm"]
        assert len({d["id"] for d in fires}) == 1
        assert len([o for o in centre.objects(TypeFlag.SYSTEM_STATE) if o.time == label]) == 1  # type: ignore[union-attr]
    finally:
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
        broker.stop()
        await centre.stop()


async def test_the_journal_keeps_every_field_of_a_decision(tmp_path: Path) -> None:
    d = dataclasses.replace(
        decision(DecisionType.FIRE_ALARM, 3, rule="coincidence", count=2),
        cameras=("cam-1",),
        verified=False,
        evidence=(
            Evidence(observation_id="o1", source="smoke-1", what="alarm", wall=T0, mono=1.5),
        ),
    )
    again = decision_of(decision_json(d), b"\xff\xd8jpeg")
    assert again.to_dict() == {**d.to_dict(), "has_snapshot": True}
    assert again == d and again.id == d.id and again.snapshot_jpeg == b"\xff\xd8jpeg"


async def test_a_normal_submit_leaves_the_journal_empty(tmp_path: Path) -> None:
    mqtt = Outbox(tmp_path / "a.db", 100, 10**6)
    gb = Outbox(tmp_path / "b.db", 100, 10**6)
    both = BothOutboxes(mqtt, gb, HandoffJournal(tmp_path / "j.db"))
    await both.submit(decision(DecisionType.FAULT, 1))
    assert await both.journal.pending() == []
    assert len(await mqtt.next_batch(10)) == len(await gb.next_batch(10)) == 1
    assert await both.recover() == 0
    both.journal.close()
    await mqtt.close()
    await gb.close()


async def test_an_unusable_journal_never_holds_up_a_decision(tmp_path: Path) -> None:
    (tmp_path / "j.db").mkdir()  # a directory where the file should be
    mqtt = Outbox(tmp_path / "a.db", 100, 10**6)
    gb = Outbox(tmp_path / "b.db", 100, 10**6)
    both = BothOutboxes(mqtt, gb, HandoffJournal(tmp_path / "j.db"))
    await both.submit(decision(DecisionType.FIRE_ALARM, 1))
    assert len(await mqtt.next_batch(10)) == len(await gb.next_batch(10)) == 1
    assert both.journal_error
    both.journal.close()
    await mqtt.close()
    await gb.close()
