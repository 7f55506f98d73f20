"""The agent bounds glibc's malloc arenas itself (agent/memory.py), and the unit
sets the same before the interpreter starts (systemd/firegate.service)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "firegate.service"

# eight threads allocating at once, then glibc's own count of its arenas (malloc_stats
# writes one "Arena N:" block per arena to stderr)
THREADS = """
import ctypes, sys, threading
from agent import memory
if sys.argv[1] == "tune":
    print(memory.tune())
def work():
    for _ in range(300):
        blocks = [bytearray(40000) for _ in range(30)]
ts = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
ctypes.CDLL("libc.so.6").malloc_stats()
"""


def arenas(mode: str, env: dict[str, str]) -> tuple[str, int]:
    r = subprocess.run(
        [sys.executable, "-c", THREADS, mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return r.stdout.strip(), r.stderr.count("Arena ")


def test_the_agent_bounds_malloc_arenas_itself_unless_the_environment_does() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    _, untuned = arenas("none", env)
    said, tuned = arenas("tune", env)
    assert said == "True"
    assert untuned > 2, untuned  # one per contending thread without a bound
    assert tuned <= 2, tuned
    # the environment (the unit, a drop-in) decides when it says something
    said, n = arenas("tune", {**env, "MALLOC_ARENA_MAX": "4"})
    assert said == "False" and 2 < n <= 4, (said, n)


def test_the_unit_bounds_malloc_arenas_before_the_interpreter_starts() -> None:
    env: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            env.update(kv.split("=", 1) for kv in line.removeprefix("Environment=").split())
    assert env.get("MALLOC_ARENA_MAX") == "2"
