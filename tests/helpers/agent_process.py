"""The real agent as a child process (`python -m agent run`), read line by line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_agent(config: Path) -> subprocess.Popen[str]:
    """`python -m agent run --config CONFIG` from this checkout, stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout_s: float = 30) -> str:
    """Read the agent's stderr until a line holds ``text``; what was read so far.
    Fails with that text when the agent exits or ``timeout_s`` passes first."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if text in line:
            return seen
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{text!r} not seen; stderr so far:\n{seen}")
