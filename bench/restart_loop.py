"""Restart loop (issue 13): the real agent stopped with SIGTERM and started
again N times (default 50) with its devices on a pseudo-terminal and a real
mosquitto; every exit status 0, no alarm, pre-alarm or fault forwarded twice
under a new id, every episode closed by its RESTORE, nothing left in the
outbox. It runs tests/ops/test_restart_loop.py with that count (CI runs 6).

    .venv/bin/python bench/restart_loop.py [--cycles 50]

Prints the test's own lines (SIGTERM cycles, then kill -9 cycles, two thirds
as many): cycles, seconds, episodes seen; and PASS/FAIL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=50)
    args = ap.parse_args()
    env = {**os.environ, "FIREGATE_RESTART_CYCLES": str(args.cycles)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/ops/test_restart_loop.py",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "-o",
            f"timeout={60 + 12 * args.cycles}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    # pytest -s prints a test's line right after the previous test's dot
    lines = [
        ln[ln.index("restart loop") :] for ln in proc.stdout.splitlines() if "restart loop" in ln
    ]
    print(*(lines or ["restart loop: no figures (the test failed before the end)"]), sep="\n")
    print("PASS" if proc.returncode == 0 else "FAIL")
    if proc.returncode:
        print(proc.stdout[-4000:])
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
