"""One agent per state folder, with two real `firegate run` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.commands.run import EXIT_ALREADY_RUNNING
from tests.helpers.agent_process import start_agent, wait_for_line

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "firegate.service"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _site(tmp_path: Path) -> Path:
    config = tmp_path / "site.yaml"
    # the adapter is unplugged: the agent runs (and reports it) without hardware
    config.write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: hall}]\n"
        "buses:\n"
        f"  - {{name: b1, type: rtu, port: {tmp_path}/ttyUSB9, devices:\n"
        "      [{name: d1, profile: calectro-ug3-o-mb-r, device_id: 1, zone: hall}]}\n"
        f"storage: {{state_dir: {tmp_path}/state}}\n"
        "health: {status_interval_s: 1}\n"
    )
    return config


def _firegate(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _start(config: Path) -> subprocess.Popen[str]:
    return start_agent(config)


def _wait_for(proc: subprocess.Popen[str], text: str, timeout_s: float = 30) -> str:
    return wait_for_line(proc, text, timeout_s)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=15)[1]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_second_agent_is_refused_and_the_tools_work_beside_the_first(tmp_path: Path) -> None:
    config = _site(tmp_path)
    first = _start(config)
    try:
        _wait_for(first, "part(s)")
        second = _firegate("run", "--config", str(config), timeout_s=30)
        assert second.returncode == EXIT_ALREADY_RUNNING, second.stderr
        assert f"pid {first.pid}" in second.stderr, second.stderr
        assert "another agent already runs" in second.stderr
        assert "Traceback" not in second.stderr
        assert "starting: site" not in second.stderr  # refused before it touched anything

        # the maintainer's read-only tools still work beside the running agent
        deadline = time.monotonic() + 15
        status = _firegate("status", "--config", str(config))
        while status.returncode == 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            status = _firegate("status", "--config", str(config))
        assert status.returncode in (0, 1), status.stdout + status.stderr
        assert f"pid {first.pid}" in status.stdout
        check = _firegate("check-config", str(config))
        assert check.returncode == 0, check.stdout + check.stderr
        doctor = _firegate("doctor", "--config", str(config), "--timeout-s", "1")
        assert "Traceback" not in doctor.stdout + doctor.stderr
        assert "already runs" not in doctor.stdout + doctor.stderr
        assert "storage" in doctor.stdout and "config" in doctor.stdout
        assert first.poll() is None, "the first agent must be left running"
    finally:
        rest = _stop(first)
    assert first.returncode == 0, rest

    # once the first has stopped, the lock is free again
    again = _start(config)
    try:
        _wait_for(again, "part(s)")
    finally:
        assert _stop(again) is not None


def test_lock_is_released_by_a_killed_agent(tmp_path: Path) -> None:
    """kill -9 (or a power cut) leaves the file but never a held lock."""
    config = _site(tmp_path)
    first = _start(config)
    try:
        _wait_for(first, "part(s)")
        first.kill()
        first.wait(timeout=10)
        assert (tmp_path / "state" / "agent.lock").exists()
        second = _start(config)
        try:
            _wait_for(second, "part(s)")
        finally:
            _stop(second)
        assert second.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()


def test_systemd_does_not_restart_a_refused_agent() -> None:
    """A refused second agent must not become a restart loop under systemd."""
    prevent = [
        line.split("=", 1)[1].split()
        for line in UNIT.read_text().splitlines()
        if line.startswith("RestartPreventExitStatus=")
    ]
    assert prevent and str(EXIT_ALREADY_RUNNING) in prevent[-1]
