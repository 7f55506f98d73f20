"""How long `firegate` takes to start, against `python -c pass` in the same run.

    .venv/bin/python bench/cli_startup.py [--runs 15]

Prints the median wall time of each command over ``--runs`` runs (runs
interleaved, so that load on the machine hits every command alike) and its
ratio to ``python -c pass``. Target (issue #13): ``firegate --help`` <= 3x.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_HELP_RATIO = 3.0


def _firegate() -> list[str]:
    # the console script next to this interpreter (what a person types), else -m agent
    script = Path(sys.executable).with_name("firegate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    fg = _firegate()
    tmp = Path(tempfile.mkdtemp(prefix="firegate-cli-bench-"))
    try:
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "firegate --help": [*fg, "--help"],
            "firegate (no command)": fg,
            "firegate status --state-dir EMPTY": [*fg, "status", "--state-dir", str(tmp)],
            "firegate check-config example": [
                *fg,
                "check-config",
                str(ROOT / "config" / "example-site.yaml"),
            ],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
                times[name].append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<36} {'median':>9} {'ratio':>7}   ({args.runs} runs, {' '.join(fg)})")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<36} {med * 1000:7.0f} ms {med / base:6.1f}x")
    help_ratio = statistics.median(times["firegate --help"]) / base
    verdict = "meets" if help_ratio <= TARGET_HELP_RATIO else "MISSES"
    print(f"firegate --help: {help_ratio:.1f}x python -c pass, {verdict} the target <= 3x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
