"""The real agent process under a stand-in for systemd: READY, WATCHDOG, STOPPING."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_agent_process_notifies_systemd(tmp_path: Path, notify_socket: Any) -> None:
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        "version: 1\nsite: {site_id: s1, gateway_id: gw}\nzones: [{id: a}]\n"
        f"storage: {{state_dir: {state}}}\nhealth: {{status_interval_s: 1}}\n"
    )
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(notify_socket.path),
        "WATCHDOG_USEC": "600000",  # feed every 0.2 s
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            notify_socket.drain()
            if sum(1 for m in notify_socket.messages if m.get("WATCHDOG") == "1") >= 3:
                break
            time.sleep(0.05)
        msgs = notify_socket.messages
        assert msgs and msgs[0].get("READY") == "1", msgs[:3]
        assert sum(1 for m in msgs if m.get("WATCHDOG") == "1") >= 3
        doc = json.loads((state / "status.json").read_text())
        assert doc["pid"] == proc.pid and doc["site_id"] == "s1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        notify_socket.drain()
        assert any(m.get("STOPPING") == "1" for m in notify_socket.messages)
        assert json.loads((state / "status.json").read_text())["stopping"] is True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
