"""Issue 13: a restart (kill -9 or a clean SIGTERM) keeps every open episode.

A fire incident, an electrical pre-alarm and a fault are open when the agent
stops. After the restart, one still active is not forwarded again (a new id
the centre's de-duplication cannot catch); one that ended while the agent was
down gets its RESTORE, naming the decision it ends.

"kill -9" is the state folder as the running agent left it (copied while the
first runner still runs, before any stop handler); "SIGTERM" is the folder
after the runner was cancelled (a clean stop).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.clock import ScaledClock
from agent.engine import Engine, EngineRunner
from agent.engine.runner import EPISODES_FILE
from agent.events import Condition, Decision, DecisionType, DeviceKind, StateChange
from agent.siteconfig import load_site
from firmware_mocks import SimDevice, SimRtuBus
from tests.e2e.e2e_harness import MOSQUITTO, AgentProcess, Broker, Subscriber, kill_leftovers
from tests.engine.engine_sim import Sim, site

SPEED = 400.0  # simulated seconds per real second


class Sink:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    async def submit(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def of(self, type_: DecisionType) -> list[Decision]:
        return [d for d in self.decisions if d.type is type_]


def _state(
    clock: ScaledClock,
    source: str,
    condition: Condition,
    active: bool,
    *,
    kind: DeviceKind,
    point: str = "",
) -> StateChange:
    return StateChange(
        source=source,
        zone="z2",
        wall=clock.wall(),
        mono=clock.monotonic(),
        point=point,
        kind=kind,
        condition=condition,
        active=active,
    )


def prealarm(clock: ScaledClock, active: bool) -> StateChange:
    return _state(clock, "rc", Condition.PREALARM, active, kind=DeviceKind.RESIDUAL_CURRENT)


def offline(clock: ScaledClock, active: bool) -> StateChange:
    return _state(clock, "n1", Condition.OFFLINE, active, kind=DeviceKind.SMOKE)


def call_point(clock: ScaledClock, active: bool) -> StateChange:
    return _state(
        clock, "panel", Condition.ALARM, active, kind=DeviceKind.MANUAL_CALL_POINT, point="1/24"
    )


class Agent:
    """One life of the engine part on a state folder."""

    def __init__(
        self, state_dir: Path, clock: ScaledClock, runtime_dir: Path | None = None
    ) -> None:
        self.clock = clock
        self.sink = Sink()
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.runner = EngineRunner(
            Engine(site()),
            self.inbox,
            self.sink,
            lambda c: None,
            clock,
            0.5,
            state_dir,
            runtime_dir=runtime_dir,
        )
        self.task = asyncio.create_task(self.runner.run())

    def put(self, make: Callable[[ScaledClock, bool], StateChange], active: bool) -> None:
        self.inbox.put_nowait(make(self.clock, active))

    async def until(self, pred: Callable[[Sink], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not pred(self.sink):  # noqa: ASYNC110 - polls what the runner produced
                await asyncio.sleep(0.01)

    async def idle(self) -> None:
        """Every decision handed on and the state file written."""
        assert self.runner.writer is not None
        await self.until(lambda s: not self.runner._pending)
        await asyncio.sleep(0.05)
        assert await asyncio.to_thread(self.runner.writer.wait_idle, 5.0)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _first_life(
    state_dir: Path, clock: ScaledClock, runtime_dir: Path | None = None
) -> tuple[Agent, dict[str, str]]:
    """Open a fire (call point), a pre-alarm and an offline fault."""
    a = Agent(state_dir, clock, runtime_dir)
    a.put(call_point, True)
    a.put(prealarm, True)
    a.put(offline, True)
    await a.until(
        lambda s: bool(
            s.of(DecisionType.FIRE_ALARM)
            and s.of(DecisionType.ELECTRICAL_PREALARM)
            and s.of(DecisionType.FAULT)
        )
    )
    await a.idle()
    ids = {
        "fire": a.sink.of(DecisionType.FIRE_ALARM)[0].id,
        "prealarm": a.sink.of(DecisionType.ELECTRICAL_PREALARM)[0].id,
        "fault": a.sink.of(DecisionType.FAULT)[0].id,
    }
    return a, ids


async def _restart(tmp_path: Path, how: str, a: Agent) -> Path:
    """The state folder the second life starts on."""
    if how == "kill9":
        again = tmp_path / "after-kill"
        shutil.copytree(a.runner._state_dir or tmp_path, again)  # as the disk was at the kill
        await a.stop()
        return again
    await a.stop()
    return a.runner._state_dir or tmp_path


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
async def test_still_active_after_restart_is_not_sent_again(tmp_path: Path, how: str) -> None:
    clock = ScaledClock(SPEED)
    a, _ = await _first_life(tmp_path / "state", clock)
    state_dir = await _restart(tmp_path, how, a)

    b = Agent(state_dir, clock)
    # each source's first report after the restart: still in alarm, still offline
    b.put(call_point, True)
    b.put(prealarm, True)
    b.put(offline, True)
    await b.until(lambda s: b.runner.engine.counters["observations"] >= 3)
    await asyncio.sleep(300 / SPEED)  # 300 s: past every debounce and restore time
    await b.stop()
    assert [d.type for d in b.sink.decisions] == []


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
async def test_ended_while_down_gets_its_restore(tmp_path: Path, how: str) -> None:
    clock = ScaledClock(SPEED)
    a, ids = await _first_life(tmp_path / "state", clock)
    # the call point is released just before the restart
    a.put(call_point, False)
    await a.until(lambda s: a.runner.engine.counters["observations"] >= 4)
    await a.idle()
    state_dir = await _restart(tmp_path, how, a)

    b = Agent(state_dir, clock)
    b.put(prealarm, False)  # the monitor's first poll: its own pre-alarm bit is off
    # n1 answers again (no "offline" any more), the call point stays released
    await b.until(lambda s: len(s.of(DecisionType.RESTORE)) >= 3, timeout_s=10)
    await b.stop()
    restores = {d.details["of"]: d for d in b.sink.of(DecisionType.RESTORE)}
    assert {k: d.details.get("of_id") for k, d in restores.items()} == {
        "fire_alarm": ids["fire"],
        "electrical_prealarm": ids["prealarm"],
        "fault": ids["fault"],
    }
    assert restores["fault"].details["point"] == ""  # a fault's restore names its point
    assert len(b.sink.decisions) == 3  # nothing opened again


async def test_incident_that_ended_during_a_long_stop_is_restored_at_once(tmp_path: Path) -> None:
    """Down for longer than incident_clear_s (300 s): the RESTORE comes at start."""
    clock = ScaledClock(SPEED)
    a, ids = await _first_life(tmp_path / "state", clock)
    a.put(call_point, False)
    await a.until(lambda s: a.runner.engine.counters["observations"] >= 4)
    await a.idle()
    await a.stop()

    later = ScaledClock(SPEED, start_wall=clock.wall() + 3600)  # back an hour later
    b = Agent(tmp_path / "state", later)
    await b.until(lambda s: bool(s.of(DecisionType.RESTORE)), timeout_s=1)
    await b.stop()
    fire_restores = [d for d in b.sink.of(DecisionType.RESTORE) if d.zone == "z2"]
    assert [d.details.get("of_id") for d in fire_restores][:1] == [ids["fire"]]
    assert not b.sink.of(DecisionType.FIRE_ALARM)


async def test_restore_is_not_sent_twice_over_two_restarts(tmp_path: Path) -> None:
    clock = ScaledClock(SPEED)
    a, _ = await _first_life(tmp_path / "state", clock)
    await a.stop()
    b = Agent(tmp_path / "state", clock)
    b.put(prealarm, False)
    await b.until(lambda s: bool(s.of(DecisionType.RESTORE)))
    await b.idle()
    await b.stop()
    c = Agent(tmp_path / "state", clock)
    c.put(prealarm, False)
    c.put(call_point, True)
    c.put(offline, True)
    await c.until(lambda s: c.runner.engine.counters["observations"] >= 3)
    await asyncio.sleep(0.2)
    await c.stop()
    assert [d.type for d in c.sink.decisions] == []
    assert (tmp_path / "state" / EPISODES_FILE).exists()


def test_fault_restore_names_its_point_and_the_fault_it_ends() -> None:
    """A fault's RESTORE carries details.point, as a pre-alarm's restore does."""
    sim = Sim()
    sim.state(10, "panel", Condition.FAULT, point="1/24", kind=DeviceKind.MANUAL_CALL_POINT)
    sim.until(50)
    sim.state(60, "panel", Condition.FAULT, False, point="1/24", kind=DeviceKind.MANUAL_CALL_POINT)
    sim.until(200)
    fault, restore = (d for _, d in sim.decisions)
    assert (fault.type, restore.type) == (DecisionType.FAULT, DecisionType.RESTORE)
    assert restore.details["point"] == fault.details["point"] == "1/24"
    assert restore.details["of_id"] == fault.id


async def test_state_disk_refusing_keeps_episodes_in_ram_over_a_restart(tmp_path: Path) -> None:
    """A read-only state folder: episodes.json goes to the runtime folder
    (systemd's RuntimeDirectory, RAM kept over a restart) and comes back."""
    state, run = tmp_path / "state", tmp_path / "run"
    (state / EPISODES_FILE).mkdir(parents=True)  # every write of it fails
    run.mkdir()
    clock = ScaledClock(SPEED)
    a, _ = await _first_life(state, clock, run)
    await a.stop()
    assert (run / EPISODES_FILE).is_file()

    b = Agent(state, clock, run)
    b.put(call_point, True)
    b.put(prealarm, True)
    b.put(offline, True)
    await b.until(lambda s: b.runner.engine.counters["observations"] >= 3)
    await asyncio.sleep(300 / SPEED)
    await b.stop()
    assert [d.type for d in b.sink.decisions] == []


# ------------------------------------- the real agent: a restart mid-confirmation

# The field's case is a detector in alarm for the whole 90 s ceiling with the
# agent killed 40 s in: FIRE_ALARM by ~90 s after the first alarm, not ~130 s.
# Scaled down by default (the same 40/90 of the ceiling) to keep the test short;
# FIREGATE_RESTART_CEILING_S=90 runs the field's figures.
CEILING_S = float(os.environ.get("FIREGATE_RESTART_CEILING_S", "20"))
KILL_AT_S = CEILING_S * 40 / 90
SLACK_S = 4.0  # one 0.5 s poll, the engine's tick, the outbox and mosquitto, a loaded CI


def _confirming_site(tmp: Path, tty: Path, broker_port: int) -> Path:
    # nothing to corroborate a lone plain detector: only the ceiling forwards it
    policy = {"verification": False, "persistence_s": CEILING_S, "ceiling_s": CEILING_S}
    doc = {
        "version": 1,
        "site": {"site_id": "restart-confirming", "gateway_id": "gw1"},
        "zones": [{"id": "hall", "policy": policy}],
        "buses": [
            {
                "name": "rs485",
                "type": "rtu",
                "port": str(tty),
                "baudrate": 19200,
                "parity": "N",
                "stopbits": 1,
                "timeout_s": 0.2,
                "retries": 0,
                "devices": [
                    {
                        "name": "hall-smoke",
                        "profile": "calectro-ug3-o-mb-r",
                        "device_id": 3,
                        "zone": "hall",
                        "poll_interval_s": 0.5,
                    }
                ],
            }
        ],
        "storage": {"state_dir": str(tmp / "state")},
        "logging": {"level": "info"},
        "uplink": {
            "host": "127.0.0.1",
            "port": broker_port,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "heartbeat_s": 30.0,
        },
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto not installed")
@pytest.mark.timeout(3 * CEILING_S + 60)
@pytest.mark.parametrize("how", ["kill9", "sigterm"])
async def test_restart_during_confirmation_keeps_the_ceiling(tmp_path: Path, how: str) -> None:
    tty = tmp_path / "tty-rs485"
    broker = Broker(tmp_path / "broker")
    broker.start()
    config = _confirming_site(tmp_path, tty, broker.port)
    det = SimDevice(3, load_site(config).modbus_profile("calectro-ug3-o-mb-r"))
    det.set_point("mounted", 1)
    bus = SimRtuBus([det], baudrate=19200, link_path=tty).start()
    sub = Subscriber(broker.port)
    sub_task = asyncio.create_task(sub.run())
    agent = AgentProcess(config, tmp_path / "agent.log")

    def of(type_: str, state: str = "") -> dict[str, dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for m in sub.decisions():
            p = m.payload
            if p["type"] == type_ and (not state or p["details"].get("state") == state):
                seen.setdefault(p["id"], {**p, "_arrived": m.wall})
        return seen

    async def wait_for(pred: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    try:
        async with asyncio.timeout(10):
            await sub.ready.wait()
        agent.start()
        await wait_for(lambda: "uplink connected" in agent.log_tail(), 15)
        await asyncio.sleep(2.0)  # the detector polled, quiet
        first_alarm = time.time()
        det.set_point("smoke_alarm", 1)  # and it stays in alarm
        await wait_for(lambda: bool(of("zone_state", "verifying")), 10)
        (verifying,) = of("zone_state", "verifying").values()
        await asyncio.sleep(max(0.0, first_alarm + KILL_AT_S - time.time()))
        assert not of("fire_alarm"), "confirmed before the restart: the test proves nothing"
        if how == "kill9":
            agent.kill9()
        else:
            assert agent.stop(timeout_s=15) == 0
        restarted = time.time()
        agent.start()
        await wait_for(lambda: bool(of("fire_alarm")), 2 * CEILING_S + 30)
        await asyncio.sleep(1.0)  # nothing more may come
    finally:
        if agent.alive():
            agent.stop(timeout_s=5)
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)
        bus.stop()
        broker.stop()
        kill_leftovers()

    log = agent.log_tail(20_000)
    fires = list(of("fire_alarm").values())
    assert len(fires) == 1, (fires, log[-3000:])
    fire = fires[0]
    took = fire["_arrived"] - first_alarm
    print(
        f"{how}: restarted {restarted - first_alarm:.1f} s after the first alarm; FIRE_ALARM "
        f"arrived {took:.1f} s after it (ceiling {CEILING_S:g} s, rule {fire['details']['rule']})"
    )
    # the ceiling counts from the first alarm, not from the restart
    assert took <= CEILING_S + SLACK_S, (took, log[-3000:])
    first_seen = datetime.fromisoformat(fire["first_seen"].replace("Z", "+00:00")).timestamp()
    assert abs(first_seen - first_alarm) <= 1.5, (fire["first_seen"], first_alarm)
    # one "verifying" for the whole alarm, ended by "confirmed" naming it
    assert list(of("zone_state", "verifying")) == [verifying["id"]]
    confirmed = list(of("zone_state", "confirmed").values())
    assert [c["details"].get("of_id") for c in confirmed] == [verifying["id"]]
    assert "Traceback" not in log, log[-3000:]


async def test_kill_after_the_outbox_commit_before_the_state_file_opens_nothing_again(
    tmp_path: Path,
) -> None:
    """A kill -9 (or a power cut) after a FIRE_ALARM is committed to the outbox
    but before episodes.json is written: the restarted agent must know the
    incident from the outbox's own transaction, not open it again under a new
    id (seen once in the kill -9 restart loop before the state went into the
    outbox)."""
    from agent.outbox import Outbox

    state = tmp_path / "state"
    (state / EPISODES_FILE).mkdir(parents=True)  # the file is never written: the kill came first
    clock = ScaledClock(SPEED)
    first = Outbox(state / "outbox.db", 1000, 10_000_000, clock=clock, spill_dir=None)
    a = Agent(state, clock)
    a.runner.sink = a.sink = first  # type: ignore[assignment]
    a.put(call_point, True)
    await a.until(lambda s: a.runner.engine.counters["observations"] >= 1)
    async with asyncio.timeout(5):
        while a.runner._pending or not a.runner.engine.status()["open_incidents"]:  # noqa: ASYNC110 - polls the runner
            await asyncio.sleep(0.01)
    # the disk as the kill left it: the outbox's files, no episodes.json
    again = tmp_path / "after-kill"
    again.mkdir()
    for f in state.iterdir():
        if f.is_file():
            shutil.copy2(f, again / f.name)
    await a.stop()
    await first.close()

    second = Outbox(again / "outbox.db", 1000, 10_000_000, clock=clock, spill_dir=None)
    b = Agent(again, clock)
    b.runner.sink = second  # type: ignore[assignment]
    b.put(call_point, True)  # the call point's first report after the restart: still in alarm
    await b.until(lambda s: b.runner.engine.counters["observations"] >= 1)
    await asyncio.sleep(300 / SPEED)
    await b.stop()
    rows = [p.type for p in await second.next_batch(100)]
    await second.close()
    assert rows.count(DecisionType.FIRE_ALARM.value) == 1, rows


async def test_state_the_sink_did_not_store_goes_to_the_file(tmp_path: Path) -> None:
    """A batch sink that could not store the state (no outbox behind it, a disk
    refusing it) returns False: episodes.json is written as before."""

    class NoStateSink(Sink):
        async def submit_batch(self, decisions: list[Decision], state: Any) -> bool:
            self.decisions.extend(decisions)
            return False

    clock = ScaledClock(SPEED)
    a = Agent(tmp_path / "state", clock)
    a.runner.sink = a.sink = NoStateSink()
    a.put(call_point, True)
    await a.until(lambda s: bool(s.of(DecisionType.FIRE_ALARM)))
    await a.idle()
    saved = (tmp_path / "state" / EPISODES_FILE).read_text()
    await a.stop()
    assert a.sink.of(DecisionType.FIRE_ALARM)[0].id in saved


def test_a_state_without_saved_seq_is_judged_by_its_time() -> None:
    """After a downgrade and an upgrade, episodes.json written by the older agent
    (no saved_seq) is newer than the outbox's state when it was written later."""
    from agent.engine.runner import _newer

    outbox_state = {"version": 2, "saved_seq": 7, "wall": 1000.0}
    older_agents_file = {"version": 2, "wall": 2000.0}
    assert _newer(older_agents_file, outbox_state)
    assert not _newer(outbox_state, older_agents_file)
    assert _newer({"saved_seq": 8, "wall": 1.0}, outbox_state)  # both counted: the counter decides
