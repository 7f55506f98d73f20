"""`firegate status` reading the status file the health part writes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.health import Health, Metrics
from agent.notify import Notifier


class Clock:
    speed = 1.0

    def __init__(self, wall_offset_s: float = 0.0) -> None:
        self.offset = wall_offset_s

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - not used
        raise AssertionError


class Bus:
    name = "bus-rs485-1"

    def __init__(self, progress: float) -> None:
        self.progress_mono = progress

    def status(self) -> dict[str, Any]:
        return {
            "port": "/dev/firegate-rs485-1",
            "devices": {
                "kitchen-smoke-1": {"state": "online", "polls": 120},
                "classroom12-smoke": {"state": "offline", "since": "2026-11-28T22:00:00Z"},
            },
        }


class Engine:
    name = "engine"

    def __init__(self, progress: float) -> None:
        self.progress_mono = progress

    def status(self) -> dict[str, Any]:
        return {"zones": {"kitchen": {"state": "verifying"}, "storeroom": {"state": "normal"}}}


class Outbox:
    name = "outbox"

    def __init__(self, progress: float) -> None:
        self.progress_mono = progress

    def status(self) -> dict[str, Any]:
        return {"outbox": {"depth": 4, "oldest_age_s": 31.5}}


def write(state: Path, *, wall_offset_s: float = 0.0, stalled: bool = False) -> None:
    clock = Clock(wall_offset_s)
    now = clock.monotonic()
    bus = Bus(now - 500 if stalled else now)
    h = Health(
        [bus, Engine(now), Outbox(now)],
        clock=clock,
        notifier=Notifier(env={}),
        metrics=Metrics(),
        stall_after_s=60,
        status_file=state / "status.json",
        identity={"site_id": "school-0421", "gateway_id": "gw-1"},
    )
    h._start_mono = now - 1000  # running for a while, so a stale progress counts
    assert h.write_status()
    if wall_offset_s:  # the file's time stamp is real time, whatever the agent's clock
        f = state / "status.json"
        doc = json.loads(f.read_text())
        doc["written_wall"] += wall_offset_s
        f.write_text(json.dumps(doc))


def test_running_and_healthy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path)
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "site school-0421, gateway gw-1" in out
    assert "health: OK" in out
    assert "devices (2):" in out and "classroom12-smoke" in out and "offline" in out
    assert "zones (2):" in out and "verifying" in out
    assert "outbox: depth=4 oldest_age_s=31.5" in out
    assert "port=/dev/firegate-rs485-1" in out


def test_stalled_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, stalled=True)
    assert main(["status", "--state-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "health: STALLED: bus-rs485-1" in out
    assert "bus-rs485-1          STALLED" in out


def test_old_file_means_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, wall_offset_s=-600)
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "STALE: the status file is 10 min old" in out
    assert "journalctl -u firegate" in out


def test_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "firegate is not running" in err and "systemctl status firegate" in err


def test_garbage_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "status.json").write_text("{not json")
    assert main(["status", "--state-dir", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_state_dir_from_config_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    write(state)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        f"version: 1\nsite: {{site_id: s, gateway_id: g}}\nzones: [{{id: a}}]\nstorage: {{state_dir: {state}}}\n"
    )
    assert main(["status", "--config", str(cfg), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["stale"] is False and doc["outbox"]["depth"] == 4
    assert set(doc["parts"]) == {"bus-rs485-1", "engine", "outbox"}
