"""Idle footprint of the running agent: CPU (percent of one core) and resident memory.

Starts ``python -m agent run --config <config>`` as a child process, lets it
settle, then samples /proc/<pid>/stat (utime+stime) and /proc/<pid>/status
(VmRSS) for a number of seconds. A bare Python interpreter is measured the
same way in the same run, as the floor the agent is compared with.

Scenarios (generated configs; or give your own with --config):

* ``idle``      zones only: the agent with no bus or camera (today's baseline)
* ``devices32`` 32 devices polled every second on two Modbus TCP buses
                (needs something answering at --modbus-host:--modbus-port, e.g.
                the firmware mock of issue 3; the drivers must be wired)
* ``cameras4``  ``devices32`` plus four cameras analysed at 2 frames/s from a
                looping video file (--video; vision must be wired)

Targets (issue 7): without cameras <= 2 % of a core and <= 80 MB;
with four cameras <= 50 % of a core and <= 200 MB.

    python bench/footprint.py --scenario idle --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {  # scenario -> (max CPU % of one core, max RSS MB)
    "idle": (2.0, 80.0),
    "devices32": (2.0, 80.0),
    "cameras4": (50.0, 200.0),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Footprint:
    seconds: float
    cpu_percent: float  # of one core, mean over the window
    rss_mb_mean: float
    rss_mb_max: float
    threads: int


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def _status(pid: int) -> tuple[float, int]:
    rss_kb, threads = 0, 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kb / 1024, threads


def sample(pid: int, seconds: float, interval_s: float) -> Footprint:
    """Measure a running process for ``seconds``."""
    t0, c0 = time.monotonic(), _cpu_ticks(pid)
    rss: list[float] = []
    threads = 0
    while time.monotonic() - t0 < seconds:
        time.sleep(interval_s)
        mb, threads = _status(pid)
        rss.append(mb)
    dt, dc = time.monotonic() - t0, _cpu_ticks(pid) - c0
    return Footprint(
        seconds=round(dt, 1),
        cpu_percent=round(100.0 * dc / CLK_TCK / dt, 3),
        rss_mb_mean=round(sum(rss) / len(rss), 1),
        rss_mb_max=round(max(rss), 1),
        threads=threads,
    )


def site_config(scenario: str, state_dir: Path, args: argparse.Namespace) -> str:
    lines = [
        "version: 1",
        "site: {site_id: bench, gateway_id: gw-1}",
        "zones:",
        *(f"  - id: zone-{i}" for i in range(8)),
        f"storage: {{state_dir: {state_dir}}}",
        "logging: {level: warning}",
    ]
    if scenario in ("devices32", "cameras4"):
        lines.append("buses:")
        for b in range(2):
            lines += [
                f"  - name: tcp-{b}",
                "    type: tcp",
                f"    host: {args.modbus_host}",
                f"    port: {args.modbus_port + b}",
                "    devices:",
            ]
            for d in range(16):
                n = b * 16 + d
                lines.append(
                    f"      - {{name: smoke-{n}, profile: calectro-ug3-o-mb-r, device_id: {d + 1}, "
                    f"zone: zone-{n % 8}, poll_interval_s: 1}}"
                )
    if scenario == "cameras4":
        if args.video is None:
            raise SystemExit("--video FILE is needed for the cameras4 scenario")
        lines.append("cameras:")
        for c in range(4):
            lines.append(
                f"  - {{name: cam-{c}, zone: zone-{c}, source: {Path(args.video).resolve()}, detect_fps: 2}}"
            )
    return "\n".join(lines) + "\n"


def measure(cmd: list[str], warmup_s: float, seconds: float, interval_s: float) -> Footprint:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(warmup_s)  # imports and start-up are not the idle footprint
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}:\n{err[-2000:]}")
        return sample(proc.pid, seconds, interval_s)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scenario", choices=sorted(TARGETS), default="idle")
    p.add_argument(
        "--config", type=Path, help="measure this site config instead of a generated one"
    )
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window (default 30)")
    p.add_argument(
        "--warmup-s", type=float, default=5.0, help="settle time before sampling (default 5)"
    )
    p.add_argument(
        "--interval-s", type=float, default=1.0, help="RSS sampling interval (default 1)"
    )
    p.add_argument("--modbus-host", default="127.0.0.1")
    p.add_argument("--modbus-port", type=int, default=5020, help="first of two Modbus TCP ports")
    p.add_argument("--video", type=Path, help="looping video file for the cameras4 scenario")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="firegate-bench-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        if args.config is not None:
            cfg, label = args.config, f"config {args.config}"
        else:
            cfg = Path(tmp) / "site.yaml"
            cfg.write_text(site_config(args.scenario, state, args))
            label = f"scenario {args.scenario}"
        floor = measure(
            [sys.executable, "-c", "import time; time.sleep(1e6)"],
            1.0,
            min(args.seconds, 5.0),
            args.interval_s,
        )
        agent = measure(
            [sys.executable, "-m", "agent", "run", "--config", str(cfg)],
            args.warmup_s,
            args.seconds,
            args.interval_s,
        )
        status_file = state / "status.json"
        parts = []
        if status_file.is_file():
            parts = sorted(json.loads(status_file.read_text()).get("parts", {}))

    cpu_max, rss_max = TARGETS[args.scenario]
    met = agent.cpu_percent <= cpu_max and agent.rss_mb_max <= rss_max
    result = {
        "what": label,
        "parts_watched_by_health": parts,
        "agent": asdict(agent),
        "python_floor": asdict(floor),
        "target": {"cpu_percent": cpu_max, "rss_mb": rss_max, "met": met},
        "cpu_share_of_target": round(agent.cpu_percent / cpu_max, 3),
        "rss_share_of_target": round(agent.rss_mb_max / rss_max, 3),
        "rss_above_floor_mb": round(agent.rss_mb_mean - floor.rss_mb_mean, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"firegate footprint, {label} (parts besides health: {', '.join(parts) or 'none'})")
    if args.scenario != "idle" and args.config is None and not parts:
        print(
            "  NOTE: this build creates no driver or camera parts, so this is NOT yet the "
            f"{args.scenario} footprint; it equals the idle agent"
        )
    print(
        f"  agent:        CPU {agent.cpu_percent:.2f} % of one core over {agent.seconds:g} s; "
        f"RSS {agent.rss_mb_mean:.1f} MB mean, {agent.rss_mb_max:.1f} MB max; {agent.threads} threads"
    )
    print(
        f"  python floor: CPU {floor.cpu_percent:.2f} %; RSS {floor.rss_mb_mean:.1f} MB "
        f"(agent is {result['rss_above_floor_mb']:.1f} MB above a bare interpreter)"
    )
    print(
        f"  target:       <= {cpu_max:g} % and <= {rss_max:g} MB: "
        f"{'met' if met else 'NOT met'} (CPU at {result['cpu_share_of_target']:.0%} of the limit, "
        f"RSS at {result['rss_share_of_target']:.0%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
