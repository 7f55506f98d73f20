"""Soak: the real agent for a long run under a broker that keeps going away.

    .venv/bin/python bench/soak.py --minutes 30

What runs (all real: the agent is ``python -m agent run`` on a generated site):

* 32 devices: two simulated RS-485 buses of 12 smoke detectors each on
  pseudo-terminals (firmware_mocks.SimRtuBus) and one Modbus TCP server with 8
  more (firmware_mocks.SimTcpServer), polled every second;
* 4 cameras: HTTP MJPEG streams of the demo's clips (firmware_mocks.demo.cameras)
  analysed at 2 frames/s each with the shipped model;
* a mosquitto (with persistence) that is stopped every ``--broker-every-s``
  (default 180 s) for ``--broker-down-s`` (default 15 s), so the uplink
  reconnects and the outbox buffers and drains again and again;
* a monitoring centre: a persistent MQTT session (QoS 1) that collects every
  decision the agent publishes;
* every ``--event-every-s`` (default 60 s) something happens, in turn: a
  detector stops answering for 45 s (FAULT, RESTORE), a detector reports a
  dirty chamber for 30 s, smoke in a zone with a camera for 60 s (alarm
  verification, video corroboration, a FIRE_ALARM and its RESTORE).

Every ``--sample-s`` (default 10 s) the agent's RSS, open fds, threads (from
/proc) and asyncio tasks (its metrics endpoint) are sampled. At the end the
broker stays up until the outbox is empty; then the figures:

* per quantity: the mean of the first and last tenth, the least-squares slope
  per hour after the warm-up (``--warmup-s``, default 300), the residual noise,
  and whether the growth over the run exceeds the noise (3 sigma and a floor);
* decisions: taken by the agent (its decisions counter) against received by
  the monitoring centre (distinct ids): none may be missing;
* ERROR/CRITICAL lines and tracebacks in the agent's log: there must be none;
* the agent's exit status on SIGTERM: 0.

Exit 0 when every check holds, 1 otherwise. ``--keep DIR`` keeps the site
config, the agent's log, the samples (CSV) and mosquitto's log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: firmware_mocks from this checkout

RTU_BUSES, PER_RTU_BUS, TCP_DEVICES = 2, 12, 8
CAMERAS = 4
ZONES = 8
# growth below these over the whole run is noise whatever the fit says
FLOORS = {"rss_mb": 3.0, "fds": 3.0, "threads": 2.0, "tasks": 3.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------- the site


def site_config(
    state: Path, rtu_ports: list[str], tcp_port: int, cam_urls: list[str], mqtt: int, metrics: int
) -> str:
    lines = [
        "version: 1",
        "site: {site_id: soak, gateway_id: gw-1}",
        "zones:",
        *(f"  - id: zone-{i}" for i in range(ZONES)),
        f"storage: {{state_dir: {state}}}",
        "logging: {level: info}",
        f"health: {{status_interval_s: 5, metrics_port: {metrics}}}",
        f"uplink: {{host: 127.0.0.1, port: {mqtt}, reconnect_max_s: 5, heartbeat_s: 30}}",
        "buses:",
    ]
    n = 0
    for b, port in enumerate(rtu_ports):
        lines += [f"  - name: rs485-{b}", "    type: rtu", f"    port: {port}", "    devices:"]
        for d in range(PER_RTU_BUS):
            lines.append(
                f"      - {{name: smoke-{n}, profile: calectro-ug3-o-mb-r, device_id: {d + 1}, "
                f"zone: zone-{n % ZONES}, poll_interval_s: 1}}"
            )
            n += 1
    lines += ["  - name: tcp-0", "    type: tcp", "    host: 127.0.0.1", f"    port: {tcp_port}"]
    lines.append("    devices:")
    for d in range(TCP_DEVICES):
        lines.append(
            f"      - {{name: smoke-{n}, profile: calectro-ug3-o-mb-r, device_id: {d + 1}, "
            f"zone: zone-{n % ZONES}, poll_interval_s: 1}}"
        )
        n += 1
    lines.append("cameras:")
    for c, url in enumerate(cam_urls):
        lines.append(f"  - {{name: cam-{c}, zone: zone-{c}, source: '{url}', detect_fps: 2}}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------- the monitoring centre


class Centre:
    """A persistent MQTT session (clean_session false, QoS 1): the broker keeps its
    subscription and queues for it across restarts (mosquitto persistence)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.ids: dict[str, str] = {}  # decision id -> type
        self.copies = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="soak-centre",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", port, keepalive=20)
        self.client.loop_start()

    def _on_connect(
        self, client: object, userdata: object, flags: object, rc: object, *_: object
    ) -> None:
        self.client.subscribe("firegate/#", qos=1)

    def _on_message(self, client: object, userdata: object, msg: object) -> None:
        topic = str(getattr(msg, "topic", ""))
        if "/decision/" not in topic:
            return
        with contextlib.suppress(ValueError):
            doc = json.loads(getattr(msg, "payload", b""))
            with self._lock:
                self.copies += 1
                self.ids[str(doc.get("id"))] = str(doc.get("type"))

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# -------------------------------------------------------------------- samples


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    threads: int
    tasks: float


def proc_sample(pid: int) -> tuple[float, int, int]:
    rss_kb = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def scrape(port: int) -> dict[str, float]:
    """The agent's metrics, as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def decisions_taken(metrics: dict[str, float]) -> dict[str, int]:
    out = {}
    for k, v in metrics.items():
        m = re.match(r'firegate_decisions_total\{type="([^"]+)"\}', k)
        if m:
            out[m.group(1)] = int(v)
    return out


@dataclass
class Trend:
    first: float
    last: float
    slope_per_h: float
    noise: float
    growth: float  # fitted growth over the fitted window
    grows: bool


def trend(xs_s: list[float], ys: list[float], floor: float) -> Trend:
    n = len(xs_s)
    tenth = max(1, n // 10)
    first, last = statistics.fmean(ys[:tenth]), statistics.fmean(ys[-tenth:])
    if n < 3:
        return Trend(first, last, 0.0, 0.0, 0.0, False)
    mx, my = statistics.fmean(xs_s), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs_s) or 1.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs_s, ys, strict=True)) / sxx
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs_s, ys, strict=True)]
    noise = math.sqrt(sum(r * r for r in resid) / (n - 2))
    growth = slope * (xs_s[-1] - xs_s[0])
    return Trend(first, last, slope * 3600, noise, growth, growth > max(3 * noise, floor))


# ------------------------------------------------------------------- events


@dataclass
class World:
    rtu: list[object]
    tcp: object
    cams: object
    devices: list[object] = field(default_factory=list)  # smoke-0 .. smoke-31 (SimDevice)
    log: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def play_events(w: World, every_s: float, t0: float) -> None:
    from firmware_mocks import Fault
    from firmware_mocks.demo.cameras import Picture

    k = 0
    while not w.stop.wait(every_s if k else min(every_s, 30.0)):
        kind = k % 3
        dev_index = (k * 7) % len(w.devices)
        dev = w.devices[dev_index]
        name = f"smoke-{dev_index}"
        at = time.monotonic() - t0
        if kind == 0:
            w.log.append(f"{at:7.0f} s  {name} stops answering for 45 s")
            dev.inject(Fault.NO_REPLY)  # type: ignore[attr-defined]
            w.stop.wait(45)
            dev.clear_faults()  # type: ignore[attr-defined]
        elif kind == 1:
            w.log.append(f"{at:7.0f} s  {name}: dirty chamber for 30 s")
            dev.set_condition("service_alarm", True)  # type: ignore[attr-defined]
            w.stop.wait(30)
            dev.set_condition("service_alarm", False)  # type: ignore[attr-defined]
        else:
            zone = (k // 3) % CAMERAS  # a zone with a camera: zone-z holds smoke-z, smoke-z+8 ...
            dev_index = zone
            dev = w.devices[dev_index]
            cam = f"cam-{zone}"
            w.log.append(f"{at:7.0f} s  smoke in zone-{zone}: smoke-{dev_index} and {cam} for 60 s")
            w.cams.show(cam, Picture.FIRE)  # type: ignore[attr-defined]
            end = time.monotonic() + 60
            while time.monotonic() < end and not w.stop.is_set():
                dev.set_condition("smoke_alarm", True)  # comes back after each reset
                w.stop.wait(1.0)
            dev.set_condition("smoke_alarm", False)  # type: ignore[attr-defined]
            w.cams.show(cam, Picture.QUIET)  # type: ignore[attr-defined]
        k += 1


def broker_cycles(broker: object, every_s: float, down_s: float, w: World, t0: float) -> None:
    n = 0
    while not w.stop.wait(every_s):
        n += 1
        w.log.append(f"{time.monotonic() - t0:7.0f} s  broker stopped ({n}) for {down_s:g} s")
        broker.terminate()  # type: ignore[attr-defined]
        w.stop.wait(down_s)
        broker.start()  # type: ignore[attr-defined]


# --------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the run (default 30)")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--warmup-s", type=float, default=300.0, help="left out of the slopes")
    ap.add_argument("--broker-every-s", type=float, default=180.0)
    ap.add_argument("--broker-down-s", type=float, default=15.0)
    ap.add_argument("--event-every-s", type=float, default=60.0)
    ap.add_argument("--keep", type=Path, help="keep config, logs and samples here")
    args = ap.parse_args()

    from agent.health import METRICS  # noqa: F401  (fails early on a broken checkout)
    from firmware_mocks import SimDevice, SimRtuBus, SimTcpServer, load_modbus_profile
    from firmware_mocks.broker import Mosquitto
    from firmware_mocks.demo.cameras import Feed, SimCameraServer, jpegs, read_clip

    folder = Path(tempfile.mkdtemp(prefix="firegate-soak-")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    state = folder / "state"
    prof = load_modbus_profile("calectro-ug3-o-mb-r")
    rtu = [
        SimRtuBus([SimDevice(i + 1, prof) for i in range(PER_RTU_BUS)]).start()
        for _ in range(RTU_BUSES)
    ]
    tcp = SimTcpServer([SimDevice(i + 1, prof) for i in range(TCP_DEVICES)]).start()
    clips = ROOT / "firmware_mocks" / "demo" / "clips"
    quiet, fire = (
        jpegs(read_clip(clips / "classroom.avi")),
        jpegs(read_clip(clips / "storeroom-fire.avi")),
    )
    cams = SimCameraServer(
        {f"cam-{c}": Feed(f"cam-{c}", quiet, fire) for c in range(CAMERAS)}, fps=5
    ).start()
    broker = Mosquitto(folder / "mosquitto", persistence=True)
    broker.start()
    centre = Centre(broker.port)
    metrics_port = free_port()
    cfg = folder / "site.yaml"
    cfg.write_text(
        site_config(
            state,
            [b.path for b in rtu],
            tcp.port,
            [cams.url(f"cam-{c}") for c in range(CAMERAS)],
            broker.port,
            metrics_port,
        )
    )
    devices = [d for b in rtu for d in b.devices.values()] + list(tcp.devices.values())
    world = World(rtu, tcp, cams, devices)
    log_path = folder / "agent.log"
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "PYTHONUNBUFFERED": "1"}  # as the unit runs it
    with open(log_path, "w") as log_file:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=play_events, args=(world, args.event_every_s, t0), daemon=True),
        threading.Thread(
            target=broker_cycles,
            args=(broker, args.broker_every_s, args.broker_down_s, world, t0),
            daemon=True,
        ),
    ]
    for th in threads:
        th.start()
    samples: list[Sample] = []
    exit_code: int | None = None
    drained = False
    taken: dict[str, int] = {}
    try:
        end = t0 + args.minutes * 60
        print(f"soak: {args.minutes:g} min, agent pid {agent.pid}, folder {folder}", flush=True)
        while time.monotonic() < end:
            time.sleep(args.sample_s)
            if agent.poll() is not None:
                print(f"soak: the agent exited with {agent.returncode}", flush=True)
                break
            rss, fds, nthreads = proc_sample(agent.pid)
            tasks = math.nan
            with contextlib.suppress(OSError, ValueError):
                tasks = scrape(metrics_port).get("firegate_asyncio_tasks", math.nan)
            s = Sample(round(time.monotonic() - t0, 1), round(rss, 2), fds, nthreads, tasks)
            samples.append(s)
            if len(samples) % max(1, int(300 / args.sample_s)) == 0:
                print(
                    f"  {s.t_s / 60:5.1f} min: RSS {s.rss_mb:.1f} MB, {s.fds} fds, "
                    f"{s.threads} threads, {s.tasks:g} tasks, {len(centre.ids)} decisions received",
                    flush=True,
                )
        # the end: no more events or broker stops; the outbox must drain
        world.stop.set()
        for th in threads:
            th.join(timeout=120)
        if broker.proc is None or broker.proc.poll() is not None:
            broker.start()
        deadline = time.monotonic() + 180
        while agent.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                m = scrape(metrics_port)
                taken = decisions_taken(m)
                if m.get("firegate_outbox_depth", 1) == 0 and sum(taken.values()) <= len(
                    centre.ids
                ):
                    drained = True
                    break
            time.sleep(2)
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                exit_code = agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                exit_code = agent.wait()
        else:
            exit_code = agent.returncode
    finally:
        world.stop.set()
        if agent.poll() is None:
            agent.kill()
        centre.stop()
        broker.stop()
        cams.stop()
        tcp.stop()
        for b in rtu:
            b.stop()

    return report(args, folder, samples, taken, centre, exit_code, drained, world, log_path)


def report(
    args: argparse.Namespace,
    folder: Path,
    samples: list[Sample],
    taken: dict[str, int],
    centre: Centre,
    exit_code: int | None,
    drained: bool,
    world: World,
    log_path: Path,
) -> int:
    with open(folder / "samples.csv", "w") as f:
        f.write("t_s,rss_mb,fds,threads,tasks\n")
        for s in samples:
            f.write(f"{s.t_s},{s.rss_mb},{s.fds},{s.threads},{s.tasks}\n")
    lines = log_path.read_text(errors="replace").splitlines()
    errors = [
        line for line in lines if " ERROR" in line or " CRITICAL" in line or "Traceback" in line
    ]
    warnings = [line for line in lines if " WARNING" in line]
    fitted = [s for s in samples if s.t_s >= args.warmup_s] or samples
    ok = True
    span_min = (samples[-1].t_s / 60) if samples else 0.0
    print(
        f"\nfiregate soak: {span_min:.1f} min sampled ({len(samples)} samples every "
        f"{args.sample_s:g} s; slopes after {args.warmup_s:g} s of warm-up), "
        f"{RTU_BUSES * PER_RTU_BUS + TCP_DEVICES} devices, {CAMERAS} cameras, broker stopped "
        f"every {args.broker_every_s:g} s for {args.broker_down_s:g} s"
    )
    print(f"  {'quantity':<9} {'first':>9} {'last':>9} {'slope/h':>9} {'noise':>7}  verdict")
    for key, unit in (("rss_mb", "MB"), ("fds", ""), ("threads", ""), ("tasks", "")):
        pts = [(s.t_s, float(getattr(s, key))) for s in fitted if not math.isnan(getattr(s, key))]
        if len(pts) < 3:
            print(f"  {key:<9} not enough samples")
            ok = False
            continue
        tr = trend([p[0] for p in pts], [p[1] for p in pts], FLOORS[key])
        ok &= not tr.grows
        verdict = "GROWS" if tr.grows else "flat (within noise)"
        print(
            f"  {key:<9} {tr.first:9.1f} {tr.last:9.1f} {tr.slope_per_h:+9.2f} {tr.noise:7.2f}  "
            f"{verdict}{' ' + unit if unit else ''}"
        )
    total = sum(taken.values())
    missing = max(0, total - len(centre.ids))
    ok &= drained and missing == 0
    by_type = ", ".join(f"{k} {v}" for k, v in sorted(taken.items())) or "none"
    print(
        f"  decisions: {total} taken by the agent ({by_type}); {len(centre.ids)} distinct "
        f"received by the centre ({centre.copies} copies); missing {missing}; "
        f"outbox {'drained' if drained else 'NOT drained'} at the end"
    )
    ok &= not errors
    print(
        f"  agent log: {len(errors)} ERROR/CRITICAL/traceback line(s), {len(warnings)} warning(s)"
    )
    for line in errors[:10]:
        print(f"    {line}")
    ok &= exit_code == 0
    print(f"  agent exit status on SIGTERM: {exit_code}")
    print(f"  events: {len(world.log)} (first ones below); files in {folder}")
    for line in world.log[:6]:
        print(f"    {line}")
    print(f"Result: {'OK' if ok else 'FAILED'}")
    if args.keep is None and ok:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
