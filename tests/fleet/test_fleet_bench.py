"""bench/fleet.py keeps working: a small fleet of real uplinks and outboxes through
a broker restart delivers every decision (the figures themselves are the bench's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_mocks.broker import find_mosquitto

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_small_fleet_through_a_broker_restart() -> None:
    r = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench/fleet.py"), "storm", "--gateways", "24"),
            *("--outage-s", "1", "--steady-alarms", "4", "--storm-alarms", "3", "--no-share"),
            *("--storm-max-s", "60", "--drain-max-s", "60", "--consumers", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr[-2000:]
    assert "24/24 reconnected" in out, out
    m = re.search(r"outage decisions: (\d+)/(\d+) delivered", out)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) > 0, out
    assert "0 reached none" in out and "lost 0" in out, out
