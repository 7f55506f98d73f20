"""`firegate status` reading the status file the health part writes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.health import Health, Metrics
from agent.notify import Notifier

ROOT = Path(__file__).resolve().parents[2]


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

    def __init__(self, progress: float, offline: bool = False) -> None:
        self.progress_mono = progress
        self.offline = offline

    def status(self) -> dict[str, Any]:
        return {
            "port": "/dev/firegate-rs485-1",
            "devices": {
                "kitchen-smoke-1": {"state": "online", "polls": 120},
                "classroom12-smoke": {"state": "offline", "since": "2026-11-28T22:00:00Z"}
                if self.offline
                else {"state": "online", "polls": 118},
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


def write(
    state: Path, *, wall_offset_s: float = 0.0, stalled: bool = False, offline: bool = False
) -> None:
    clock = Clock(wall_offset_s)
    now = clock.monotonic()
    bus = Bus(now - 500 if stalled else now, offline)
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
    assert "devices (2):" in out and "classroom12-smoke" in out
    assert "zones (2):" in out and "verifying" in out
    assert "outbox: depth=4 oldest_age_s=31.5" in out
    assert "port=/dev/firegate-rs485-1" in out


def test_an_offline_device_is_not_healthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, offline=True)
    assert main(["status", "--state-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "health: DEGRADED: 1 of 2 devices offline: classroom12-smoke" in out
    assert "summary: DEGRADED: 1 of 2 devices offline" in out  # what systemctl status shows


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


def _status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "status", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_real_agent_with_offline_devices_and_camera(tmp_path: Path, notify_socket: Any) -> None:
    """The real agent: an unplugged adapter and a camera that refuses connections are
    a problem for status (exit 1, a cameras section) and for systemd's STATUS line;
    after a clean stop, status says stopped (exit 3), not STOPPING."""
    with socket.socket() as s:  # a free port where nothing listens: the camera is offline
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    config = tmp_path / "site.yaml"
    config.write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: hall}]\n"
        "buses:\n"
        f"  - {{name: b1, type: rtu, port: {tmp_path}/ttyUSB9, devices:\n"
        "      [{name: d1, profile: calectro-ug3-o-mb-r, device_id: 1, zone: hall},\n"
        "       {name: d2, profile: calectro-ug3-o-mb-r, device_id: 2, zone: hall}]}\n"
        f"cameras: [{{name: cam1, source: 'http://127.0.0.1:{dead_port}/v.mjpg', zone: hall}}]\n"
        f"storage: {{state_dir: {tmp_path}/state}}\n"
        "health: {status_interval_s: 1}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(notify_socket.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 40
        r = _status(config)
        while "2 of 2 devices offline" not in r.stdout and time.monotonic() < deadline:
            time.sleep(0.5)
            r = _status(config)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "health: DEGRADED: 2 of 2 devices offline: d1, d2" in r.stdout
        assert "1 of 1 cameras faulted: cam1 (offline)" in r.stdout
        assert "cameras (1):" in r.stdout
        notify_socket.drain()
        lines = [m["STATUS"] for m in notify_socket.messages if "STATUS" in m]
        assert any(x.startswith("DEGRADED: 2 of 2 devices offline") for x in lines), lines
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        r = _status(config)
        assert r.returncode == 3, r.stdout + r.stderr
        assert "health: STOPPED (cleanly)" in r.stdout and "STOPPING" not in r.stdout
        assert "restarting" not in r.stdout.lower()
        notify_socket.drain()
        assert notify_socket.messages[-1].get("STATUS") == "stopped cleanly"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
