"""Does real I/O keep up with the demo's accelerated clock?

    python bench/demo_bench.py [--speeds 15,25]

Runs `firegate demo` (no console output) at each speed and prints, per run:
the real time of the scripted day (target: at most 2 minutes at the default
speed), the CPU time the demo process used (mocks, cameras and agent together;
the broker is a separate process), and for each Modbus device the polls it
got against the polls its `poll_interval_s` asks for in simulated time (the
baseline: 1.00 means every poll happened on time; a bus that cannot keep up
falls below). Also the fire's time to alert in simulated seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_mocks.demo.play import SITE_TEMPLATE, DemoOptions, run_demo


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speeds", default="15,25")
    args = ap.parse_args()
    from agent.siteconfig import load_site

    intervals = {d.name: d.poll_interval_s for _b, d in load_site(SITE_TEMPLATE).config.devices()}
    for speed in (float(s) for s in args.speeds.split(",")):
        with tempfile.TemporaryDirectory(prefix="firegate-demo-bench-") as tmp:
            c0 = cpu_s()
            r = asyncio.run(
                run_demo(DemoOptions(speed=speed, state_dir=Path(tmp), out=io.StringIO()))
            )
            used = cpu_s() - c0
            status = json.loads((Path(tmp) / "status.json").read_text())
        print(
            f"speed x{speed:g}: day {r.day_s:.0f} s simulated in {r.real_s:.1f} s real; "
            f"CPU {used:.1f} s ({100 * used / r.real_s:.0f} % of one core); "
            f"result {'OK' if r.ok else 'FAILED: ' + '; '.join(r.problems)}"
        )
        for name, dev in sorted(status.get("devices", {}).items()):
            due = r.day_s / intervals[name]
            print(
                f"  {name:<20} polls {dev.get('polls_ok', 0):4d} ok, {dev.get('polls_failed', 0):3d} "
                f"failed, {due:5.0f} due: {dev.get('polls_ok', 0) / due:4.2f} of the configured rate"
            )
        if r.fire_alert_t is not None and r.fire_started_t is not None:
            print(
                f"  fire: forwarded {r.fire_alert_t - r.fire_started_t:.1f} s (simulated) after "
                f"the first detector sign; engine decision {r.time_to_alert_s:.1f} s after its "
                "first raw alarm"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
