"""Issue 13: many SIGTERM / start cycles of the real agent, nothing lost or doubled.

The agent runs as systemd runs it (``python -m agent run --config``), its
devices are simulated on a pseudo-terminal (two smoke detectors and a
residual-current monitor on one RS-485 line), its broker is a real
mosquitto with a subscriber that keeps a persistent session. Each cycle
changes the field while the agent runs (a leakage that comes and goes) and
while it is stopped (a detector that goes offline or answers again), then
stops it with SIGTERM, as an upgrade does. One smoke detector stays in alarm
from the first cycle to the last: one fire incident across every restart.

It checks: every exit status is 0; for every episode (the fire incident, the
monitor's pre-alarm, the detector's offline fault) the centre sees, after
de-duplication by id, an opening decision and then its RESTORE naming it
(``details.of_id``), never a second opening in a row (a duplicate under a
new id) and never a RESTORE of nothing; at the end every episode is closed
and the outbox is empty.

Cameras are left out: the camera-stop SIGABRT at exit is fixed on another
branch. ``FIREGATE_RESTART_CYCLES`` sets the count (CI: 4; the issue's 50:
``FIREGATE_RESTART_CYCLES=50``, see bench/restart_loop.py). The same loop
runs with kill -9 instead (two thirds as many cycles): no exit status to
check, the rest holds the same.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.siteconfig import load_site
from firmware_mocks import Fault, SimDevice, SimRtuBus
from tests.e2e.e2e_harness import (
    MOSQUITTO,
    AgentProcess,
    Broker,
    Subscriber,
    kill_leftovers,
    outbox_rows,
)
from tests.helpers.mjpeg_server import MjpegServer, jpeg_of

CYCLES = int(os.environ.get("FIREGATE_RESTART_CYCLES", "4"))
POLICY = {
    "verification": False,
    "persistence_s": 2,
    "ceiling_s": 4,
    "incident_clear_s": 10,
    "fault_debounce_s": 1,
    "fault_restore_s": 2,
    "electrical_sustain_s": 1,
}


def write_site(tmp: Path, tty: Path, broker_port: int, camera_url: str) -> Path:
    site = {
        "version": 1,
        "site": {"site_id": "restart-loop", "gateway_id": "gw1"},
        "zones": [{"id": z, "policy": POLICY} for z in ("hall", "store", "board")],
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
                "offline_after": 2,
                "offline_poll_s": 1,
                "devices": [
                    {
                        "name": "hall-smoke",
                        "profile": "calectro-ug3-o-mb-r",
                        "device_id": 3,
                        "zone": "hall",
                        "poll_interval_s": 0.5,
                    },
                    {
                        "name": "store-smoke",
                        "profile": "calectro-ug3-o-mb-r",
                        "device_id": 4,
                        "zone": "store",
                        "poll_interval_s": 0.5,
                    },
                    {
                        "name": "board-leakage",
                        "profile": "acrel-aim-r100",
                        "device_id": 1,
                        "zone": "board",
                        "poll_interval_s": 0.5,
                    },
                ],
            }
        ],
        # a camera streaming all along: its capture thread must leave OpenCV at
        # every stop (exit status 0), and a quiet picture raises nothing. Short
        # fault times: a fault carried over a restart is taken as cleared once
        # nothing re-reports it within the slowest detection time (here the
        # camera's) x 1.5 + 5 s (agent/engine/runner.py, restart_fault_grace_s)
        "cameras": [
            {
                "name": "hall-cam",
                "source": camera_url,
                "zone": "hall",
                "stale_after_s": 5,
                "frozen_after_s": 10,
            }
        ],
        "storage": {"state_dir": str(tmp / "state")},
        "logging": {"level": "info"},
        "uplink": {
            "host": "127.0.0.1",
            "port": broker_port,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "publish_timeout_s": 2.0,
            "heartbeat_s": 30.0,
        },
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def episode_key(d: dict[str, Any]) -> tuple[str, ...] | None:
    """Which episode a decision opens or ends (the engine's own keying)."""
    if d["zone"] == "_gateway":
        return None
    kind = d["details"].get("of", d["type"]) if d["type"] == "restore" else d["type"]
    if kind == "fire_alarm":
        return ("fire", d["zone"])
    point = str(d["details"].get("point", ""))
    src = (d["devices"] or d["cameras"] or [""])[0]
    if kind == "electrical_prealarm":
        return ("electrical", src, point)
    if kind == "fault":
        return ("fault", src, point, str(d["details"].get("condition", "")))
    return None


def check_episodes(decisions: list[dict[str, Any]]) -> dict[tuple[str, ...], int]:
    """Every episode alternates open, RESTORE(of_id=open); returns episodes per key."""
    open_: dict[tuple[str, ...], str] = {}
    opened: dict[tuple[str, ...], int] = {}
    problems = []
    for d in decisions:
        key = episode_key(d)
        if key is None or d["type"] == "stats":
            continue
        if d["type"] == "restore":
            was = open_.pop(key, None)
            if was is None:
                problems.append(f"RESTORE of nothing open: {d['reason']}")
            elif d["details"].get("of_id") != was:
                problems.append(f"RESTORE names {d['details'].get('of_id')}, open was {was}")
        else:
            if key in open_:
                problems.append(f"opened again under a new id: {d['type']} {d['reason']}")
            open_[key] = d["id"]
            opened[key] = opened.get(key, 0) + 1
    assert not problems, problems
    assert not open_, f"never restored: {open_}"
    return opened


@pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto not installed")
@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
async def test_restart_loop_loses_and_doubles_nothing(tmp_path: Path, stop: str) -> None:
    # at least 3: the store detector is silent through two lives (i = 1, 2) so
    # that its OFFLINE is reported, and back before the last
    cycles = CYCLES if stop == "sigterm" else max(3, CYCLES * 2 // 3)
    tty = tmp_path / "tty-rs485"
    broker = Broker(tmp_path / "broker")
    broker.start()
    frames = [jpeg_of(320, 240, seed) for seed in range(8)]
    camera = MjpegServer(lambda i: frames[i % len(frames)], fps=10)
    config = write_site(tmp_path, tty, broker.port, camera.url)
    site = load_site(config)
    hall = SimDevice(3, site.modbus_profile("calectro-ug3-o-mb-r"))
    store = SimDevice(4, site.modbus_profile("calectro-ug3-o-mb-r"))
    board = SimDevice(1, site.modbus_profile("acrel-aim-r100"))
    for det in (hall, store):
        det.set_point("mounted", 1)
    board.set_point("setpoint_l1", 300)
    board.set_point("leakage_l1", 100)
    bus = SimRtuBus([hall, store, board], baudrate=19200, link_path=tty).start()
    sub = Subscriber(broker.port)
    sub_task = asyncio.create_task(sub.run())
    agent = AgentProcess(config, tmp_path / "agent.log")
    exits: list[int | None] = []
    started = time.monotonic()
    try:
        async with asyncio.timeout(10):
            await sub.ready.wait()
        hall.set_point("smoke_alarm", 1)  # one fire, in alarm through every restart
        for i in range(cycles):
            agent.start()
            # while it runs: the leakage comes (even cycles) or goes (odd ones)
            board.set_point("leakage_l1", 450 if i % 2 == 0 else 100)
            # long enough for a silent detector to go OFFLINE: each unanswered
            # poll is watched 2 s for a late reply first (drivers/link.py)
            await asyncio.sleep(5.0)
            if stop == "sigterm":
                exits.append(agent.stop(timeout_s=15))
            else:  # a power cut or the watchdog: no stop handler runs
                agent.kill9()
            # while it is stopped: the store detector drops off the line or is back
            if i % 3 == 0:
                store.inject(Fault.NO_REPLY)
            elif i % 3 == 2:
                store.clear_faults()
        # the last life: everything back to normal, every episode must end
        hall.set_point("smoke_alarm", 0)
        board.set_point("leakage_l1", 100)
        store.clear_faults()
        agent.start()

        def decisions() -> list[dict[str, Any]]:
            seen: dict[str, dict[str, Any]] = {}
            for m in sub.decisions():
                seen.setdefault(m.payload["id"], m.payload)  # QoS 1: de-duplicate by id
            return list(seen.values())

        def all_closed() -> bool:
            try:
                check_episodes(decisions())
            except AssertionError:
                return False
            return True

        deadline = time.monotonic() + 60  # then the check below says what is wrong
        while not all_closed() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # nothing more may come: no late duplicate
        exits.append(agent.stop(timeout_s=15))
    finally:
        if agent.alive():
            agent.stop(timeout_s=5)
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)
        bus.stop()
        broker.stop()
        camera.close()
        kill_leftovers()

    log = agent.log_tail(200_000)
    assert exits == [0] * (len(exits)) and len(exits) == (cycles + 1 if stop == "sigterm" else 1), (
        exits,
        log[-3000:],
    )
    opened = check_episodes(decisions())
    assert opened.get(("fire", "hall")) == 1, opened  # one incident over every restart
    assert any(k[0] == "electrical" for k in opened), opened
    assert any(k[0] == "fault" and k[1] == "store-smoke" for k in opened), opened
    assert not outbox_rows(tmp_path / "state"), "left undelivered in the outbox"
    assert "Traceback" not in log, log[-3000:]
    print(
        f"restart loop (devices and a camera): {cycles} {stop} cycles in {time.monotonic() - started:.0f} s, "
        f"episodes {sum(opened.values())} ({', '.join(f'{k[0]} {n}' for k, n in opened.items())})"
    )
