"""`firegate run` as a process: starts, and stops cleanly within 5 s on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.agent_process import start_agent, wait_for_line

ROOT = Path(__file__).resolve().parents[2]


def _start(config: Path) -> subprocess.Popen[str]:
    return start_agent(config)


def _wait_for(proc: subprocess.Popen[str], text: str, timeout_s: float = 20) -> str:
    return wait_for_line(proc, text, timeout_s)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_quickly(sig: signal.Signals, tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    # a bus whose adapter is unplugged: the agent runs, reports it, and still stops at once
    config.write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: hall}]\n"
        "buses:\n"
        f"  - {{name: b1, type: rtu, port: {tmp_path}/ttyUSB9, devices:\n"
        "      [{name: d1, profile: calectro-ug3-o-mb-r, device_id: 1, zone: hall}]}\n"
        f"storage: {{state_dir: {tmp_path}/state}}\n"
    )
    proc = _start(config)
    try:
        _wait_for(proc, "part(s)")
        t0 = time.monotonic()
        proc.send_signal(sig)
        rest = proc.communicate(timeout=10)[1]
        assert time.monotonic() - t0 < 5.0
        assert proc.returncode == 0, rest
        assert "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()


def test_invalid_config_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("site: {site_id: x}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert "gateway_id" in proc.stderr and "Traceback" not in proc.stderr
