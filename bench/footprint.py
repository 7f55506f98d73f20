"""Idle footprint of the running agent: CPU (percent of one core) and resident memory.

Starts ``python -m agent run --config <config>`` as a child process, lets it
settle, then samples /proc/<pid>/stat (utime+stime, every thread) and
/proc/<pid>/status (VmRSS) for a number of seconds. A bare Python interpreter
is measured the same way in the same run, as the floor the agent is compared
with. The simulated devices and the video file live in this (bench) process
or on disk, so only the agent's own work is counted.

Scenarios (generated configs; or give your own with --config):

* ``idle``      zones only: the agent with no bus or camera
* ``devices32`` 32 devices polled every second: two simulated RS-485 buses of
                16 smoke detectors each (firmware_mocks.SimRtuBus on
                pseudo-terminals; ``--wire-time`` emulates 9600 baud)
* ``cameras4``  ``devices32`` plus four cameras analysed at 2 frames/s, each
                reading a 1280x720 video file (``--video``, or one generated
                here with OpenCV's mp4v encoder at ``--video-fps``), with the
                shipped model vision/models/firenet.onnx

``--video-kind white-room`` films instead a white room the model calls smoke
(tests/fixtures/vision/normal_white_room.jpg) whose lights go off for 2 s every
8 s: each time they come on a candidate appears and the camera takes a burst of
frames (``burst_s``); ``--camera-setting burst_s=0`` measures the same without
bursts. The bursts each camera took are printed (from the agent's status file).

Targets (issue 7): without cameras <= 2 % of a core and <= 80 MB;
with four cameras <= 50 % of a core and <= 200 MB.

``--decode-floor`` (cameras4) also measures, in the same run and for the same
window, a process that only decodes the four clips as the agent's captures do
(OpenCV's FFmpeg backend, one decoder thread, every frame grabbed at the clip's
rate, nothing retrieved or analysed): the part of the agent's CPU and RSS that
no change above the decoder can remove.

``--profile FILE`` runs the agent under cProfile for the same window and
prints where its CPU time goes (cProfile itself adds overhead: read the
shares, not the totals).

    python bench/footprint.py --scenario devices32 --seconds 30
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: firmware_mocks from this checkout
DEVICES_PER_BUS = 16
BUSES = 2
TARGETS = {  # scenario -> (max CPU % of one core, max RSS MB)
    "idle": (2.0, 80.0),
    "devices32": (2.0, 80.0),
    "cameras4": (50.0, 200.0),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
# --decode-floor: N threads each decoding the clip as vision/capture.py does, nothing else
DECODE_ONLY = """
import sys, threading, time
import cv2
def decode(path):
    cap = cv2.VideoCapture(path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    t = time.monotonic()
    while cap.grab():
        t += 1.0 / fps
        time.sleep(max(0.0, t - time.monotonic()))
for _ in range(int(sys.argv[2])):
    threading.Thread(target=decode, args=(sys.argv[1],), daemon=True).start()
time.sleep(1e6)
"""


@dataclass
class Footprint:
    seconds: float
    cpu_percent: float  # of one core, mean over the window
    rss_mb_mean: float
    rss_mb_max: float
    threads: int
    # VmRSS = anonymous (heap, arenas, frames: what the code holds) + file-backed
    # (mapped library pages). The file part depends on the page cache, not on
    # firegate: on recent kernels a library written in large chunks (pip
    # extracting a wheel) sits in large folios and is mapped a whole folio at a
    # time, so the same code reads ~45 MB higher in a freshly installed venv.
    # Compare commits on rss_anon_mb_max, or with the same venv.
    rss_anon_mb_max: float
    rss_file_mb_max: float
    cpu_percent_by_thread_group: dict[str, float]
    # page faults served without disk, per second: a fresh allocation of a picture
    # (2.8 MB at 1280x720) costs ~700 of them, an allocator tuning shows up here first
    minor_faults_per_s: float


def _thread_ticks(pid: int) -> dict[str, int]:
    """CPU ticks per thread group: the main thread (the event loop), FFmpeg's
    decoder threads (named av:*), and every other thread (capture reads and
    colour conversion, inference in to_thread workers, the outbox, the bus mocks'
    counterparts are not here: they live in the bench process)."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                head, _, rest = f.read().rpartition(b")")
            comm = head.split(b"(", 1)[1].decode(errors="replace")
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        fields = rest.split()
        ticks = int(fields[11]) + int(fields[12])
        group = (
            "main thread (event loop)"
            if tid == str(pid)
            else "FFmpeg decoder threads"
            if comm.startswith("av:")
            else "other threads"
        )
        out[group] = out.get(group, 0) + ticks
    return out


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def _minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[7])  # minflt (field 10)


def _status(pid: int) -> tuple[float, int, float, float]:
    """VmRSS (MB), threads, RssAnon (MB), RssFile (MB)."""
    rss_kb, threads, anon_kb, file_kb = 0, 0, 0, 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon_kb = int(line.split()[1])
            elif line.startswith("RssFile:"):
                file_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kb / 1024, threads, anon_kb / 1024, file_kb / 1024


def sample(pid: int, seconds: float, interval_s: float) -> Footprint:
    """Measure a running process for ``seconds``."""
    t0, c0, f0 = time.monotonic(), _cpu_ticks(pid), _minor_faults(pid)
    g0 = _thread_ticks(pid)
    rss: list[float] = []
    anon: list[float] = []
    file: list[float] = []
    threads = 0
    while time.monotonic() - t0 < seconds:
        time.sleep(interval_s)
        mb, threads, anon_mb, file_mb = _status(pid)
        rss.append(mb)
        anon.append(anon_mb)
        file.append(file_mb)
    dt, dc = time.monotonic() - t0, _cpu_ticks(pid) - c0
    faults = _minor_faults(pid) - f0
    g1 = _thread_ticks(pid)  # threads that ended during the window are not in it
    groups = {k: round(100.0 * (v - g0.get(k, 0)) / CLK_TCK / dt, 2) for k, v in sorted(g1.items())}
    return Footprint(
        seconds=round(dt, 1),
        cpu_percent=round(100.0 * dc / CLK_TCK / dt, 3),
        rss_mb_mean=round(sum(rss) / len(rss), 1),
        rss_mb_max=round(max(rss), 1),
        threads=threads,
        rss_anon_mb_max=round(max(anon), 1),
        rss_file_mb_max=round(max(file), 1),
        cpu_percent_by_thread_group=groups,
        minor_faults_per_s=round(faults / dt),
    )


def site_config(
    scenario: str,
    state_dir: Path,
    ports: list[str],
    video: Path | None,
    settings: dict[str, str] | None = None,
) -> str:
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
        for b, port in enumerate(ports):
            lines += [
                f"  - name: rs485-{b}",
                "    type: rtu",
                f"    port: {port}",
                "    baudrate: 9600",
                "    devices:",
            ]
            for d in range(DEVICES_PER_BUS):
                n = b * DEVICES_PER_BUS + d
                lines.append(
                    f"      - {{name: smoke-{n}, profile: calectro-ug3-o-mb-r, device_id: {d + 1}, "
                    f"zone: zone-{n % 8}, poll_interval_s: 1}}"
                )
    if scenario == "cameras4":
        assert video is not None
        lines.append("cameras:")
        extra = "".join(f", {k}: {v}" for k, v in (settings or {}).items())
        for c in range(4):
            lines.append(
                f"  - {{name: cam-{c}, zone: zone-{c}, source: {video.resolve()}, detect_fps: 2"
                f"{extra}}}"
            )
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def simulated_buses(n: int, wire_time: bool) -> Iterator[list[str]]:
    """``n`` simulated RS-485 buses of 16 smoke detectors each; yields their port paths."""
    from firmware_mocks import SimDevice, SimRtuBus, load_modbus_profile

    prof = load_modbus_profile("calectro-ug3-o-mb-r")
    buses = [
        SimRtuBus(
            [SimDevice(i + 1, prof) for i in range(DEVICES_PER_BUS)],
            emulate_wire_time=wire_time,
        ).start()
        for _ in range(n)
    ]
    try:
        yield [b.path for b in buses]
    finally:
        requests = sum(d.requests for b in buses for d in b.devices.values())
        print(f"  (simulated devices answered {requests} requests)", file=sys.stderr)
        for b in buses:
            b.stop()


def make_video(path: Path, seconds: float, fps: float, size: tuple[int, int] = (1280, 720)) -> Path:
    """A mp4v clip of ``size`` with moving content (a still image would decode unrealistically cheaply)."""
    import cv2
    import numpy as np

    w, h = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not out.isOpened():
        raise SystemExit("OpenCV cannot write mp4v video here; give --video FILE")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    base = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    for i in range(int(seconds * fps)):
        frame = np.roll(base, i * 4, axis=1)
        # scaled from the 1280x720 clip's geometry (that default is unchanged)
        x = (i * 13) % (w - w * 200 // 1280)
        y0, y1, side = h * 200 // 720, h * 400 // 720, w * 200 // 1280
        cv2.rectangle(frame, (x, y0), (x + side, y1), (0, 80 + i % 150, 255), -1)
        org = (w * 50 // 1280, h * 650 // 720)
        cv2.putText(frame, f"{i}", org, cv2.FONT_HERSHEY_SIMPLEX, 3 * h / 720, (255, 255, 255), 4)
        out.write(frame)
    out.release()
    return path


def make_white_room(
    path: Path, seconds: float, fps: float, size: tuple[int, int] = (1280, 720)
) -> Path:
    """A mp4v clip of ``size`` of a white room the model calls smoke, sensor noise on
    every frame, its lights off for 2 s every 8 s (a candidate each time they come on)."""
    import cv2
    import numpy as np

    from vision import footage as ft

    room = ft.load(ROOT / "tests" / "fixtures" / "vision" / "normal_white_room.jpg", size)
    dark = ft.light(room, 0.15)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not out.isOpened():
        raise SystemExit("OpenCV cannot write mp4v video here; give --video FILE")
    rng = np.random.default_rng(0)
    for i in range(int(seconds * fps)):
        out.write(ft.noisy(dark if (i / fps) % 8.0 < 2.0 else room, rng))
    out.release()
    return path


def camera_bursts(status_file: Path) -> dict[str, Any]:
    """Per camera, the bursts it took and what they found (the agent's status file)."""
    if not status_file.is_file():
        return {}
    parts = json.loads(status_file.read_text()).get("parts", {})
    out = {}
    for name, part in parts.items():
        st = part.get("status") if isinstance(part, dict) else None
        if isinstance(st, dict) and isinstance(st.get("bursts"), dict):
            out[name] = st["bursts"]
    return out


def model_info() -> str:
    m = ROOT / "vision" / "models" / "firenet.onnx"
    if not m.is_file():
        return "none (vision/models/firenet.onnx missing)"
    digest = hashlib.sha256(m.read_bytes()).hexdigest()[:12]
    return f"{m.relative_to(ROOT)} ({m.stat().st_size // 1024} KB, sha256 {digest})"


def unit_environment() -> dict[str, str]:
    """The Environment= settings of systemd/firegate.service: the agent is measured as
    the unit runs it (MALLOC_ARENA_MAX matters for RSS)."""
    env: dict[str, str] = {}
    unit = ROOT / "systemd" / "firegate.service"
    if unit.is_file():
        for line in unit.read_text().splitlines():
            if line.startswith("Environment="):
                for item in line.removeprefix("Environment=").split():
                    key, _, value = item.partition("=")
                    env[key] = value
    return env


def measure(
    cmd: list[str],
    warmup_s: float,
    seconds: float,
    interval_s: float,
    env: dict[str, str] | None = None,
) -> Footprint:
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
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
    p.add_argument(
        "--wire-time", action="store_true", help="simulated buses emulate 9600 baud wire time"
    )
    p.add_argument("--video", type=Path, help="video file for the cameras4 scenario")
    p.add_argument(
        "--video-fps", type=float, default=25.0, help="frame rate of the generated clip (25)"
    )
    p.add_argument(
        "--video-size",
        default="1280x720",
        help="size of the generated clip, WxH (1280x720, a main stream; 640x360: a sub-stream)",
    )
    p.add_argument(
        "--video-kind",
        choices=("bars", "white-room"),
        default="bars",
        help="generated clip: moving bars (default) or a white room whose lights switch",
    )
    p.add_argument(
        "--camera-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a camera setting for the four cameras (e.g. burst_s=0), repeatable",
    )
    p.add_argument(
        "--no-unit-env",
        action="store_true",
        help="do not apply systemd/firegate.service's Environment= to the agent (it still "
        "bounds malloc arenas to 2 itself: give MALLOC_ARENA_MAX=8 to measure without)",
    )
    p.add_argument(
        "--decode-floor",
        action="store_true",
        help="cameras4: also measure a process that only decodes the four clips",
    )
    p.add_argument("--profile", type=Path, help="also run the agent under cProfile into FILE")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args()
    try:
        size = [int(v) for v in args.video_size.lower().split("x")]
        if len(size) != 2 or min(size) < 16:
            raise ValueError
    except ValueError:
        p.error(f"--video-size {args.video_size!r}: give WxH, e.g. 640x360")

    with (
        tempfile.TemporaryDirectory(prefix="firegate-bench-") as tmp,
        simulated_buses(
            BUSES if args.scenario != "idle" and args.config is None else 0, args.wire_time
        ) as ports,
    ):
        state = Path(tmp) / "state"
        state.mkdir()
        video = args.video
        if args.scenario == "cameras4" and video is None and args.config is None:
            t0 = time.monotonic()
            make = make_white_room if args.video_kind == "white-room" else make_video
            video = make(
                Path(tmp) / "clip.mp4",
                args.warmup_s + args.seconds + 15,
                args.video_fps,
                (size[0], size[1]),
            )
            print(
                f"  (generated {video.stat().st_size // 1024} KB {args.video_size} mp4v clip at "
                f"{args.video_fps:g} fps in {time.monotonic() - t0:.1f} s)",
                file=sys.stderr,
            )
        if args.config is not None:
            cfg, label = args.config, f"config {args.config}"
        else:
            cfg = Path(tmp) / "site.yaml"
            settings = dict(kv.split("=", 1) for kv in args.camera_setting)
            cfg.write_text(site_config(args.scenario, state, ports, video, settings))
            label = f"scenario {args.scenario}"
            if args.scenario != "idle":
                label += f" ({'9600 baud wire time' if args.wire_time else 'no wire time'})"
            if args.scenario == "cameras4":
                label += (
                    f", {args.video_kind} video {args.video_size} {args.video_fps:g} fps"
                    if args.video is None
                    else f", {video}"
                )
                if settings:
                    label += ", " + ", ".join(f"{k}: {v}" for k, v in settings.items())
        floor = measure(
            [sys.executable, "-c", "import time; time.sleep(1e6)"],
            1.0,
            min(args.seconds, 5.0),
            args.interval_s,
        )
        run_cmd = [sys.executable, "-m", "agent", "run", "--config", str(cfg)]
        env = {} if args.no_unit_env else unit_environment()
        agent = measure(run_cmd, args.warmup_s, args.seconds, args.interval_s, env)
        decode = None
        if args.decode_floor and video is not None:
            decode = measure(
                [sys.executable, "-c", DECODE_ONLY, str(video), "4"],
                args.warmup_s,
                args.seconds,
                args.interval_s,
                env,
            )
        status_file = state / "status.json"
        bursts = camera_bursts(status_file)
        parts = []
        if status_file.is_file():
            parts = sorted(json.loads(status_file.read_text()).get("parts", {}))
        if args.profile is not None:
            profile(args, cfg)

    cpu_max, rss_max = TARGETS[args.scenario]
    met = agent.cpu_percent <= cpu_max and agent.rss_mb_max <= rss_max
    result = {
        "what": label,
        "model": model_info() if args.scenario == "cameras4" else None,
        "environment": " ".join(f"{k}={v}" for k, v in env.items()),
        "parts_watched_by_health": parts,
        "camera_bursts": bursts,
        "agent": asdict(agent),
        "python_floor": asdict(floor),
        "decode_floor": asdict(decode) if decode is not None else None,
        "target": {"cpu_percent": cpu_max, "rss_mb": rss_max, "met": met},
        "cpu_share_of_target": round(agent.cpu_percent / cpu_max, 3),
        "rss_share_of_target": round(agent.rss_mb_max / rss_max, 3),
        "rss_above_floor_mb": round(agent.rss_mb_mean - floor.rss_mb_mean, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"firegate footprint, {label} (parts: {', '.join(parts) or 'none'})")
    if result["model"]:
        print(f"  model:        {result['model']}")
    print(f"  environment:  {result['environment'] or 'as inherited (no unit settings)'}")
    print(
        f"  agent:        CPU {agent.cpu_percent:.2f} % of one core over {agent.seconds:g} s; "
        f"RSS {agent.rss_mb_mean:.1f} MB mean, {agent.rss_mb_max:.1f} MB max; {agent.threads} threads; "
        f"{agent.minor_faults_per_s:g} page faults/s"
    )
    print(
        f"  RSS split:    {agent.rss_anon_mb_max:.1f} MB anonymous max (heap, frames), "
        f"{agent.rss_file_mb_max:.1f} MB file-backed max (mapped libraries: depends on the "
        "page cache, e.g. a fresh venv reads higher)"
    )
    print(
        "  by thread:    "
        + "; ".join(f"{k} {v:.2f} %" for k, v in agent.cpu_percent_by_thread_group.items())
    )
    if bursts:
        print(
            "  bursts:       "
            + "; ".join(
                f"{k} {v.get('taken')} taken, {v.get('still_not_confirmed')} still"
                for k, v in bursts.items()
            )
        )
    print(
        f"  python floor: CPU {floor.cpu_percent:.2f} %; RSS {floor.rss_mb_mean:.1f} MB "
        f"(agent is {result['rss_above_floor_mb']:.1f} MB above a bare interpreter)"
    )
    if decode is not None:
        print(
            f"  decode floor: CPU {decode.cpu_percent:.2f} %; RSS {decode.rss_mb_max:.1f} MB max "
            f"({decode.rss_anon_mb_max:.1f} anonymous): four captures decoding every frame, "
            f"nothing else (the agent is {agent.cpu_percent - decode.cpu_percent:.2f} points "
            "of a core above it)"
        )
    print(
        f"  target:       <= {cpu_max:g} % and <= {rss_max:g} MB: "
        f"{'met' if met else 'NOT met'} (CPU at {result['cpu_share_of_target']:.0%} of the limit, "
        f"RSS at {result['rss_share_of_target']:.0%})"
    )
    return 0


def profile(args: argparse.Namespace, cfg: Path) -> None:
    """The agent under cProfile for warm-up + window; prints the top functions by own time."""
    cmd = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(args.profile),
        "-m",
        "agent",
        "run",
        "--config",
        str(cfg),
        "--exit-after",
        str(args.warmup_s + args.seconds),
    ]
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    st = pstats.Stats(str(args.profile))
    print(f"\ncProfile of the agent ({args.profile}), top 15 by own time:", file=sys.stderr)
    st.sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    raise SystemExit(main())
