"""`firegate demo`: a simulated school, the real agent, a scripted day, a readable timeline.

What runs (all on this machine, all stopped at the end or on Ctrl-C):

* firmware mocks: two RS-485 buses on pseudo-terminals (``SimRtuBus``, with
  wire-time emulation), one Modbus TCP device (``SimTcpServer``), a fire
  panel's printer line (``SimPanel``) and two IP cameras streaming the short
  clips in clips/ as HTTP MJPEG (``SimCameraServer``);
* the agent itself, built by ``agent.app.build_agent`` from a real site config
  generated into the state folder, on a ``ScaledClock`` (the production code,
  with time running ``speed`` times faster);
* a local mosquitto on a free port when one is installed (the agent's uplink
  publishes to it and the demo subscribes like a monitoring centre would);
  without it the agent's outbox is the upstream and the demo reads it.

The day (school-day.yaml, a scenario in the format of firmware_mocks/scenarios)
sets the mocks' point values as time passes; the console shows what the
devices do, what the gateway does about it (resets, held-back nuisances from
its nuisance log, decisions received upstream) and a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from agent.clock import ScaledClock
from agent.events import Condition, DecisionType, DeviceKind
from agent.siteconfig import LoadedSite, load_site
from agent.siteconfig.models import PanelBus, RtuBus
from drivers.profile import DataType, ModbusProfile, Point
from firmware_mocks.demo.cameras import Picture, SimCameraServer, demo_feeds
from firmware_mocks.device import Fault, SimDevice
from firmware_mocks.panel import SimPanel
from firmware_mocks.rtu import SimRtuBus
from firmware_mocks.tcp import SimTcpServer
from firmware_mocks.timeline import Event, Scenario, Timeline, load_scenario

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent
SCENARIO_FILE = DEMO_DIR / "school-day.yaml"
SITE_TEMPLATE = DEMO_DIR / "site.yaml"
DEFAULT_SPEED = 15.0
# Above this, real-time bounds inside the agent (the uplink's 2 s idle wake,
# agent/uplink.py IDLE_WAKE_S) pass the health part's 60 s stall limit in
# simulated time, and the agent would rightly report itself stalled.
MAX_SPEED = 25.0
DAY_START = (7, 50)  # the day's scenario time 0, local time of day
TICK_REAL_S = 0.1  # how often the mocks follow the timeline (real seconds)
CAMERA_FPS_MAX = 12.0  # real frames per second a simulated camera sends at most
DRAIN_REAL_S = 1.5  # after the day: time for the last decisions to arrive
STOP_TIMEOUT_REAL_S = 10.0
NUISANCE_TYPES = (DecisionType.FIRE_ALARM.value, DecisionType.ELECTRICAL_PREALARM.value)


class DemoError(Exception):
    """The demo cannot run here (a port, a file, the config); the message says why."""


@dataclass
class DemoOptions:
    speed: float = DEFAULT_SPEED
    state_dir: Path | None = None  # None: a temporary folder, removed at the end
    broker: bool | None = None  # None: use mosquitto when it is installed
    until_s: float | None = None  # stop the day early (scenario seconds)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    scenario: Path = SCENARIO_FILE
    site_template: Path = SITE_TEMPLATE


@dataclass
class Happening:
    """Something the simulated world does at scenario time ``t``."""

    t: float
    zone: str
    text: str
    raw_alarm: bool = False
    event: Event | None = None
    detector_alarm: bool = False  # a fire/smoke detector, camera or panel (not an electrical value)


@dataclass
class DemoResult:
    speed: float
    upstream: str
    cameras: bool
    day_s: float = 0.0
    real_s: float = 0.0
    raw_alarms: list[Happening] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    resets: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fire_zone: str = ""
    interrupted: bool = False
    decision_t: dict[str, float] = field(default_factory=dict)  # id -> scenario s confirmed

    @property
    def fire_started_t(self) -> float | None:
        """Scenario time of the first detector alarm (smoke, camera, panel) in the fire zone."""
        ts = [h.t for h in self.raw_alarms if h.zone == self.fire_zone and h.detector_alarm]
        return min(ts) if ts else None

    @property
    def fire_alert_t(self) -> float | None:
        return self.decision_t.get(self.fire_alerts[0]["id"]) if self.fire_alerts else None

    def of(self, type_: str, zone: str | None = None) -> list[dict[str, Any]]:
        return [
            d for d in self.decisions if d["type"] == type_ and (zone is None or d["zone"] == zone)
        ]

    @property
    def fire_alerts(self) -> list[dict[str, Any]]:
        return self.of(DecisionType.FIRE_ALARM.value, self.fire_zone)

    @property
    def forwarded_nuisances(self) -> list[dict[str, Any]]:
        return [
            d for d in self.decisions if d["type"] in NUISANCE_TYPES and d["zone"] != self.fire_zone
        ]

    @property
    def time_to_alert_s(self) -> float | None:
        """First raw alarm of the fire incident to the forwarded fire alarm (agent's clock)."""
        if not self.fire_alerts:
            return None
        d = self.fire_alerts[0]
        return _epoch(d["confirmed_at"]) - _epoch(d["first_seen"])

    @property
    def problems(self) -> list[str]:
        out = []
        if self.interrupted:
            out.append("interrupted before the end of the day")
        if not self.fire_alerts:
            out.append(f"the fire in the {self.fire_zone} was not forwarded")
        for d in self.forwarded_nuisances:
            out.append(f"a nuisance was forwarded: {d['type']} in {d['zone']}: {d['reason']}")
        if self.errors:
            out.append(f"the agent logged {len(self.errors)} error(s), first: {self.errors[0]}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


def _epoch(iso_text: str) -> float:
    return datetime.fromisoformat(iso_text).timestamp()


# ------------------------------------------------------------------ the script

ELECTRICAL_KINDS = (DeviceKind.RESIDUAL_CURRENT, DeviceKind.ELECTRICAL_FIRE)
_PANEL_POINT = re.compile(r"\bL(\d+)\s+A(\d+)")


def panel_zone(site: LoadedSite, panel: str, line: str) -> str:
    """The zone a panel line is about: its point's zone in the config, else the panel's."""
    for pb in site.config.panels():
        if pb.name == panel:
            m = _PANEL_POINT.search(line)
            key = f"{int(m[1])}/{int(m[2])}" if m else ""
            return pb.points.get(key, pb.zone)
    return ""


def _setpoint_of(prof: ModbusProfile, p: Point, tl: Timeline, dev: str, t: float) -> float | None:
    if p.setpoint_point is None:
        return None
    sp = float(tl.value(dev, p.setpoint_point, t))
    return sp if sp > 0 else None


def _alarm_words(prof: ModbusProfile, point: str, before: float, after: float) -> list[str]:
    """What a point change turns on, in the profile's words (alarms only)."""
    p = prof.point_by_name[point]
    if (
        p.type is DataType.BOOL
        and p.condition is Condition.ALARM
        and bool(after) == p.active_when
        and bool(before) != p.active_when
    ):
        return [p.detail or "alarm"]
    out = []
    for f in p.flags:
        on = bool((int(after) >> f.bit) & 1) == f.active_when
        was = bool((int(before) >> f.bit) & 1) == f.active_when
        if f.condition is Condition.ALARM and on and not was:
            out.append(f.detail or "alarm")
    return out


def happenings(
    sc: Scenario,
    tl: Timeline,
    site: LoadedSite,
    with_cameras: bool,
    camera_zones: dict[str, str] | None = None,
) -> list[Happening]:
    """The day's script as console lines: each event, plus where a measured value
    crosses its device's setpoint (a raw alarm the device itself reports by value)."""
    zone_of = {d.name: d.zone for _b, d in site.config.devices()}
    kind_of = {
        d.name: d.kind or site.modbus_profile(d.profile).device_kind
        for _b, d in site.config.devices()
    }
    zone_of.update(camera_zones or {c.name: c.zone for c in site.config.cameras})
    for pb in site.config.panels():
        zone_of[pb.name] = pb.zone
    out: list[Happening] = []
    for ev in sorted(sc.events, key=lambda e: e.at):
        if ev.device is not None:
            prof = tl.profiles[ev.device]
            raw: list[str] = []
            for point, v in (ev.set or {}).items():
                before = tl.value(ev.device, point, ev.at - 1e-6)
                raw += _alarm_words(prof, point, float(before), float(v))
                p = prof.point_by_name[point]
                sp = _setpoint_of(prof, p, tl, ev.device, ev.at)
                if p.quantity is not None and sp is not None and float(v) > sp >= float(before):
                    raw.append(f"{p.sub_point or point} {float(v):g} {p.unit} over setpoint {sp:g}")
            what = f"{ev.device}: {', '.join(raw)}" if raw else ev.device
            kind = kind_of[ev.device]
            detector = bool(raw) and kind not in ELECTRICAL_KINDS
            out.append(
                Happening(ev.at, zone_of[ev.device], f"{what} - {ev.note}", bool(raw), ev, detector)
            )
        elif ev.camera is not None:
            zone = zone_of.get(ev.camera, "")
            note = ev.note if with_cameras else f"{ev.note} (no cameras in this run)"
            fire = ev.video is not None and ev.video != "end" and with_cameras
            out.append(Happening(ev.at, zone, f"{ev.camera}: {note}", fire, ev, fire))
        elif ev.panel is not None:
            line = (ev.line or "").strip()
            alarm = line.startswith(("FIRE", "MCP"))
            out.append(
                Happening(
                    ev.at,
                    panel_zone(site, ev.panel, line),
                    f'{ev.panel} prints "{line}" - {ev.note}',
                    alarm,
                    ev,
                    alarm,
                )
            )
    # ramps crossing a setpoint: found on a fine grid (the exact moment matters little)
    for (dev, point), series in tl.series.items():
        if not any(r is not None for r in series.ramps):
            continue
        prof = tl.profiles[dev]
        p = prof.point_by_name[point]
        if p.quantity is None:
            continue
        step = 0.5
        t = 0.0
        over = False
        while t <= sc.duration_s:
            sp = _setpoint_of(prof, p, tl, dev, t)
            v = float(tl.value(dev, point, t))
            now_over = sp is not None and v > sp
            if now_over and not over:
                out.append(
                    Happening(
                        t,
                        zone_of[dev],
                        f"{dev}: {p.sub_point or point} {v:.0f} {p.unit} passes its setpoint {sp:g}",
                        True,
                    )
                )
            over = now_over
            t += step
    out.sort(key=lambda h: h.t)
    return out


# ------------------------------------------------------------------ the world


def _blank_alarm(p: Point, v: float | int | bool) -> float | int | bool:
    """The value a point shows while its detector restarts after a reset."""
    alarmish = (Condition.ALARM, Condition.PREALARM)
    if p.type is DataType.BOOL and p.condition in alarmish:
        return not p.active_when
    if p.flags:
        word = int(v)
        for f in p.flags:
            if f.condition in alarmish:
                word = word | (1 << f.bit) if not f.active_when else word & ~(1 << f.bit)
        return word
    return v


@dataclass
class _Mock:
    device: SimDevice
    profile: ModbusProfile
    seen_commands: int = 0
    blank_until: float = -math.inf
    silenced: bool = False


class World:
    """The firmware mocks of the demo site, driven by the timeline."""

    def __init__(self, site: LoadedSite, folder: Path) -> None:
        self.site = site
        self.rtu: list[SimRtuBus] = []
        self.tcp: list[SimTcpServer] = []
        self.panels: dict[str, SimPanel] = {}
        self.mocks: dict[str, _Mock] = {}
        self.ports: dict[str, str] = {}  # bus name -> port path / host:port
        try:
            for bus in site.config.buses:
                if isinstance(bus, PanelBus):
                    panel = SimPanel(link_path=folder / bus.name)
                    self.panels[bus.name] = panel
                    self.ports[bus.name] = panel.path
                    continue
                devices = []
                for d in bus.devices:
                    prof = site.modbus_profile(d.profile)
                    sim = SimDevice(d.device_id, prof)
                    self.mocks[d.name] = _Mock(sim, prof)
                    devices.append(sim)
                if isinstance(bus, RtuBus):
                    rtu = SimRtuBus(
                        devices,
                        baudrate=bus.baudrate,
                        emulate_wire_time=True,
                        link_path=folder / bus.name,
                    ).start()
                    self.rtu.append(rtu)
                    self.ports[bus.name] = rtu.path
                else:
                    srv = SimTcpServer(devices).start()
                    self.tcp.append(srv)
                    self.ports[bus.name] = f"{srv.host}:{srv.port}"
        except BaseException:
            self.stop()
            raise

    def follow(self, tl: Timeline, t: float, reset_restart_s: float) -> list[str]:
        """Set every mock to the timeline at ``t``; returns the devices reset since last time."""
        reset: list[str] = []
        for name, m in self.mocks.items():
            cmds = m.device.commands_received
            if len(cmds) > m.seen_commands:
                new = cmds[m.seen_commands :]
                m.seen_commands = len(cmds)
                if "reset" in new:
                    m.blank_until = t + reset_restart_s
                    reset.append(name)
            blank = t < m.blank_until
            for p in m.profile.points:
                v = tl.value(name, p.name, t)
                m.device.set_point(p.name, _blank_alarm(p, v) if blank else v)
            online = tl.online(name, t)
            if not online and not m.silenced:
                m.device.inject(Fault.NO_REPLY)
                m.silenced = True
            elif online and m.silenced:
                m.device.clear_faults()
                m.silenced = False
        return reset

    def stop(self) -> None:
        for r in self.rtu:
            with contextlib.suppress(Exception):
                r.stop()
        for s in self.tcp:
            with contextlib.suppress(Exception):
                s.stop()
        for p in self.panels.values():
            with contextlib.suppress(Exception):
                p.close()


# ----------------------------------------------------------------- the broker


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(p, os.X_OK):
            return p
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """A private mosquitto on 127.0.0.1 (no persistence, anonymous), for the demo only."""

    def __init__(self, exe: str, folder: Path) -> None:
        self.exe = exe
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.folder / "mosquitto.conf"
        # as root, mosquitto would otherwise drop to user "mosquitto" and lose its files
        user = f"user {pwd.getpwuid(0).pw_name}\n" if os.getuid() == 0 else ""
        conf.write_text(
            user + f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self.folder / 'mosquitto.log'}\n"
        )
        # its own process group: a Ctrl-C reaches the demo, which then stops it in order
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise DemoError(
            f"mosquitto did not start on port {self.port} (see {self.folder / 'mosquitto.log'}); "
            "run with --no-broker to use the outbox instead"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# ------------------------------------------------------------ what comes back


class Upstream:
    """Decisions as the monitoring centre gets them: from the broker, or the outbox."""

    def __init__(self) -> None:
        self.decisions: list[dict[str, Any]] = []
        self.snapshots: dict[str, bytes] = {}  # decision id -> JPEG received
        self._seen: set[str] = set()
        self.error = ""

    def _add(self, payload: dict[str, Any]) -> None:
        if payload.get("id") in self._seen:
            return  # QoS 1 may deliver twice: de-duplicate by id, as a centre does
        self._seen.add(payload["id"])
        self.decisions.append(payload)

    async def from_broker(self, port: int, topic_root: str, ready: asyncio.Event) -> None:
        import aiomqtt

        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier="firegate-demo-centre") as c:
                await c.subscribe(f"{topic_root}/decision/#", qos=1)
                await c.subscribe(f"{topic_root}/evidence/+", qos=1)
                ready.set()
                async for msg in c.messages:
                    topic = str(msg.topic)
                    body = bytes(msg.payload) if isinstance(msg.payload, bytes | bytearray) else b""
                    if "/evidence/" in topic:
                        self.snapshots[topic.rsplit("/", 1)[1]] = body
                    else:
                        with contextlib.suppress(ValueError):
                            self._add(json.loads(body))
        except aiomqtt.MqttError as e:
            self.error = f"subscriber: {e}"
            ready.set()

    def from_outbox(self, db_path: Path) -> None:
        """Read decisions the agent stored (read-only; WAL lets us read while it writes)."""
        if not db_path.exists():
            return
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=0.5)
            try:
                rows = db.execute("SELECT payload, snapshot FROM outbox ORDER BY seq").fetchall()
            finally:
                db.close()
        except sqlite3.Error as e:
            # the agent may be creating the file right now: only the last read's error counts
            self.error = "" if "no such table" in str(e) else f"reading the outbox: {e}"
            return
        self.error = ""
        for payload, snapshot in rows:
            d = json.loads(payload)
            if snapshot:
                self.snapshots[d["id"]] = bytes(snapshot)
            self._add(d)


class NuisanceTail:
    """New lines of the agent's nuisance log (agent/engine/nuisance_log.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for line in data[: end + 1].splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


# ------------------------------------------------------------------ the console


class Console:
    """The live timeline: one line per thing, simulated time of day first."""

    def __init__(self, out: TextIO, day_start_wall: float) -> None:
        self.out = out
        self.day_start_wall = day_start_wall

    def clock(self, t: float) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.day_start_wall + t))

    def line(self, t: float, tag: str, zone: str, text: str) -> None:
        self.out.write(f"{self.clock(t)}  {tag:<7} {zone:<16} {text}\n")
        self.out.flush()

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _decision_zone(r: DemoResult, decision_id: str) -> str:
    return next((d["zone"] for d in r.decisions if d["id"] == decision_id), "")


def _decision_line(d: dict[str, Any]) -> str:
    type_ = d["type"]
    label = type_.replace("_", " ").upper() if type_ in NUISANCE_TYPES else type_
    rule = (d.get("details") or {}).get("rule")
    bits = []
    if type_ == DecisionType.FIRE_ALARM.value:
        bits.append("verified" if d.get("verified") else "NOT verified (time ceiling)")
        if rule:
            bits.append(f"rule {rule}")
        cams = d.get("cameras") or []
        if cams:
            bits.append(f"camera {', '.join(cams)}")
    extra = f" ({', '.join(bits)})" if bits else ""
    return f"{label}{extra}: {d['reason']}"


# ------------------------------------------------------------------- the run


def _day_start_wall() -> float:
    now = time.localtime()
    return time.mktime(
        (now.tm_year, now.tm_mon, now.tm_mday, DAY_START[0], DAY_START[1], 0, 0, 0, -1)
    )


def model_available() -> bool:
    from vision.detector import DEFAULT_MODEL

    return DEFAULT_MODEL.is_file() and DEFAULT_MODEL.with_suffix(".json").is_file()


def generate_config(
    template: Path,
    folder: Path,
    world: World,
    cameras: dict[str, str] | None,
    broker_port: int | None,
) -> Path:
    """The run's site config: the template with this run's ports, streams, folder and broker."""
    data: dict[str, Any] = yaml.safe_load(template.read_text(encoding="utf-8"))
    for bus in data.get("buses", []):
        where = world.ports[bus["name"]]
        if bus["type"] == "tcp":
            host, port = where.rsplit(":", 1)
            bus["host"], bus["port"] = host, int(port)
        else:
            bus["port"] = where
    if cameras is None:
        data.pop("cameras", None)
    else:
        for cam in data.get("cameras", []):
            cam["source"] = cameras[cam["name"]]
    data.setdefault("storage", {})["state_dir"] = str(folder)
    if broker_port is not None:
        data["uplink"] = {"host": "127.0.0.1", "port": broker_port, "heartbeat_s": 60}
    path = folder / "site.yaml"
    path.write_text(
        f"# Generated by `firegate demo` from {template.name}: this run's ports and folders.\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return path


def _install_logging(folder: Path) -> tuple[_ErrorCollector, Callable[[], None]]:
    """Agent logs go to <folder>/agent.log (the console is the timeline); errors are counted."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    for h in saved[0]:
        root.removeHandler(h)
    fh = logging.FileHandler(folder / "agent.log", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    errors = _ErrorCollector()
    root.addHandler(fh)
    root.addHandler(errors)
    root.setLevel(logging.INFO)
    for noisy in ("pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def restore() -> None:
        root.removeHandler(fh)
        root.removeHandler(errors)
        fh.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])

    return errors, restore


DEMO_MARKER = ".firegate-demo"
# what a demo run leaves in its folder (a later run clears these, and only these)
DEMO_FILES = (
    "site.yaml",
    "agent.log",
    "status.json",
    "mosquitto.conf",
    "mosquitto.log",
    "outbox.db*",
    "nuisance.jsonl*",
    "snapshot-*.jpg",
    "rs485-*",
    "panel",
)


def prepare_state_dir(folder: Path) -> None:
    """An empty (or new) folder, or one a previous demo run used: cleared of its files.

    Anything else is refused, so that --state-dir can never empty a real
    gateway's state folder."""
    if folder.exists() and not folder.is_dir():
        raise DemoError(f"--state-dir {folder}: not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    entries = list(folder.iterdir())
    if not entries:
        return
    if not (folder / DEMO_MARKER).is_file():
        raise DemoError(
            f"--state-dir {folder} is not empty and was not used by a demo before; "
            "give a new or empty folder"
        )
    for pattern in DEMO_FILES:
        for p in folder.glob(pattern):
            if p.is_file() or p.is_symlink():
                p.unlink()


async def run_demo(opts: DemoOptions) -> DemoResult:
    """Play the day; returns what happened. Raises DemoError if it cannot start."""
    if not 0 < opts.speed <= MAX_SPEED:
        raise DemoError(
            f"--speed must be above 0 and at most {MAX_SPEED:g} (real-time timeouts in the "
            "agent must stay short in simulated time)"
        )
    sc = load_scenario(opts.scenario)
    temp = opts.state_dir is None
    if opts.state_dir is None:
        folder = Path(tempfile.mkdtemp(prefix="firegate-demo-"))
    else:
        folder = Path(opts.state_dir)
        prepare_state_dir(folder)
    (folder / DEMO_MARKER).write_text("a folder of `firegate demo`; the next demo run clears it\n")
    stack = contextlib.ExitStack()
    try:
        return await _run(opts, sc, folder, stack)
    finally:
        stack.close()
        if temp:
            shutil.rmtree(folder, ignore_errors=True)


async def _run(
    opts: DemoOptions, sc: Scenario, folder: Path, stack: contextlib.ExitStack
) -> DemoResult:
    # Ctrl-C and SIGTERM end the day from the very start: a signal during the
    # (synchronous) start-up is handled at the first await, and every start-up
    # step below has registered how to undo itself on ``stack``.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()

    def on_signal() -> None:
        interrupted.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)
            stack.callback(loop.remove_signal_handler, sig)

    template_site = load_site(opts.site_template)
    world = World(template_site, folder)
    stack.callback(world.stop)

    with_cameras = model_available() and bool(template_site.config.cameras)
    cam_server: SimCameraServer | None = None
    streams: dict[str, str] | None = None
    if with_cameras:
        names = tuple(c.name for c in template_site.config.cameras)
        if len(names) != 2:
            raise DemoError(f"{opts.site_template}: the demo streams exactly two cameras")
        fps = min(
            CAMERA_FPS_MAX, max(c.detect_fps for c in template_site.config.cameras) * opts.speed
        )
        cam_server = SimCameraServer(demo_feeds((names[0], names[1])), fps=fps).start()
        stack.callback(cam_server.stop)
        streams = {n: cam_server.url(n) for n in names}

    broker: LocalBroker | None = None
    exe = find_mosquitto() if opts.broker is not False else None
    if opts.broker and exe is None:
        raise DemoError("mosquitto is not installed (sudo apt-get install mosquitto)")
    if exe is not None:
        broker = LocalBroker(exe, folder)
        broker.start()
        stack.callback(broker.stop)

    cfg_path = generate_config(
        opts.site_template, folder, world, streams, broker.port if broker else None
    )
    site = load_site(cfg_path)
    played = sc
    if not with_cameras:  # the camera events still show, marked as not played
        played = sc.model_copy(update={"events": tuple(e for e in sc.events if e.camera is None)})
    tl = Timeline(played, site)
    day_start = _day_start_wall()
    camera_zones = {c.name: c.zone for c in template_site.config.cameras}
    script = happenings(sc, tl, site, with_cameras, camera_zones)
    upstream_label = (
        f"MQTT broker 127.0.0.1:{broker.port} (a local mosquitto, started for the demo)"
        if broker
        else "the agent's outbox (no mosquitto installed: decisions stay queued there)"
    )
    result = DemoResult(opts.speed, upstream_label, with_cameras, fire_zone=sc.zone)
    result.raw_alarms = [h for h in script if h.raw_alarm]
    con = Console(opts.out, day_start)
    end_s = min(sc.duration_s, opts.until_s) if opts.until_s is not None else sc.duration_s

    con.say(f"firegate demo: {site.config.site.name}, one morning at x{opts.speed:g} speed")
    for line in textwrap.wrap(" ".join(sc.description.split()), 96):
        con.say(f"  {line}")
    con.say(f"  site config  {cfg_path}")
    label = "devices"
    for bus in site.config.buses:
        if isinstance(bus, PanelBus):
            what = f"fire panel printer line, pty {world.ports[bus.name]}"
        elif isinstance(bus, RtuBus):
            what = f"RS-485 {bus.baudrate} baud, pty {world.ports[bus.name]}: " + ", ".join(
                d.name for d in bus.devices
            )
        else:
            what = f"Modbus TCP {world.ports[bus.name]}: " + ", ".join(d.name for d in bus.devices)
        con.say(f"  {label:<12} {bus.name} ({what})")
        label = ""
    if cam_server is not None:
        con.say(
            f"  cameras      {', '.join(streams or {})} as HTTP MJPEG on port {cam_server.port}"
        )
    else:
        con.say(
            "  cameras      left out: no vision model in vision/models/ yet "
            "(the devices and the engine run as usual)"
        )
    con.say(f"  upstream     {upstream_label}")
    con.say(
        f"  logs         {folder / 'agent.log'}"
        + (" (removed at the end: keep it with --state-dir)" if opts.state_dir is None else "")
    )
    con.say(
        f"  the day      {con.clock(0)[:5]}-{con.clock(end_s)[:5]} ({end_s:g} s) in about "
        f"{end_s / opts.speed:.0f} s; Ctrl-C stops it"
    )
    con.say()
    con.say(
        "ALARM a device raises an alarm  EVENT something happens  RESET the gateway resets a "
        "detector to verify it\nHELD  the gateway holds a nuisance back  "
        + (
            "SENT  an alert the monitoring centre received"
            if broker
            else "QUEUED  an alert the gateway stored to send"
        )
    )
    con.say()
    con.say("TIME      WHO     ZONE             WHAT")

    errors, restore_logging = _install_logging(folder)
    stack.callback(restore_logging)

    from agent.app import build_agent

    clock = ScaledClock(opts.speed, start_wall=day_start)
    agent = build_agent(site, clock)
    upstream = Upstream()
    ready = asyncio.Event()
    sub_task: asyncio.Task[None] | None = None
    if broker is not None:
        root = site.config.uplink.topic_root if site.config.uplink else ""
        root = root.format(site_id=site.config.site.site_id, gateway_id=site.config.site.gateway_id)
        sub_task = asyncio.create_task(upstream.from_broker(broker.port, root, ready))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 5)
    mono0 = clock.monotonic()
    # scenario time 0 is now; the agent's wall clock says DAY_START at that moment
    wall_shift = clock.wall() - day_start
    sup_task = asyncio.create_task(agent.supervisor().run(stop))
    real0 = time.monotonic()
    nuisance = NuisanceTail(folder / "nuisance.jsonl")
    snaps_shown: set[str] = set()
    outbox_db = folder / "outbox.db"
    next_i = 0
    shown = 0
    camera_names = {c.name for c in site.config.cameras} if with_cameras else set()

    def t_of_wall(wall: float) -> float:
        return wall - wall_shift - day_start

    def show_news() -> None:
        nonlocal shown
        if broker is None:
            upstream.from_outbox(outbox_db)
        for s in nuisance.read():
            result.suppressed.append(s)
            con.line(
                t_of_wall(s["wall"]),
                "HELD",
                s["zone"],
                f"{s['source']}: {s['reason']} - not forwarded (nuisance log)",
            )
        tag = "SENT" if broker is not None else "QUEUED"
        for did, jpeg in list(upstream.snapshots.items()):
            if did in snaps_shown or did not in result.decision_t:
                continue
            snaps_shown.add(did)
            where = ""
            if opts.state_dir is not None:
                (folder / f"snapshot-{did}.jpg").write_bytes(jpeg)
                where = f", saved as snapshot-{did}.jpg"
            con.line(
                result.decision_t[did],
                tag,
                _decision_zone(result, did),
                f"evidence: the camera's JPEG snapshot ({len(jpeg) / 1024:.0f} KiB){where}",
            )
        while shown < len(upstream.decisions):
            d = upstream.decisions[shown]
            shown += 1
            result.decisions.append(d)
            result.decision_t[d["id"]] = t_of_wall(_epoch(d["confirmed_at"]))
            con.line(
                result.decision_t[d["id"]],
                tag,
                d["zone"],
                _decision_line(d),
            )

    try:
        while not stop.is_set():
            t = clock.monotonic() - mono0
            if t >= end_s:
                break
            while next_i < len(script) and script[next_i].t <= t:
                h = script[next_i]
                next_i += 1
                _act(h, world, cam_server, camera_names)
                con.line(h.t, "ALARM" if h.raw_alarm else "EVENT", h.zone, h.text)
            for name in world.follow(tl, t, sc.reset_restart_s):
                result.resets.append((t, name))
                con.line(
                    t,
                    "RESET",
                    _zone_of(site, name),
                    f"the gateway resets {name} to verify its alarm",
                )
            show_news()
            if sup_task.done():
                break  # the agent stopped on its own: report what we have
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_REAL_S)
        if not stop.is_set():
            await asyncio.sleep(DRAIN_REAL_S)  # last decisions on their way upstream
            show_news()
    finally:
        result.interrupted = interrupted.is_set()
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(sup_task), STOP_TIMEOUT_REAL_S)
        except TimeoutError:
            sup_task.cancel()
            with contextlib.suppress(BaseException):
                await sup_task
        except Exception as e:
            errors.messages.append(f"supervisor: {type(e).__name__}: {e}")
        await agent.close()
        if cam_server is not None:
            # the agent's capture threads hang up after their next frame
            await asyncio.to_thread(cam_server.wait_idle, 2.0)
        if sub_task is not None:
            sub_task.cancel()
            with contextlib.suppress(BaseException):
                await sub_task
        result.day_s = clock.monotonic() - mono0
        result.real_s = time.monotonic() - real0
    show_news()
    result.errors = list(errors.messages)
    result.raw_alarms = [h for h in result.raw_alarms if h.t <= result.day_s]
    if upstream.error and not result.interrupted:
        result.errors.append(upstream.error)
    print_summary(con, result, folder if opts.state_dir is not None else None)
    return result


def _zone_of(site: LoadedSite, device: str) -> str:
    for _b, d in site.config.devices():
        if d.name == device:
            return d.zone
    return ""


def _act(h: Happening, world: World, cams: SimCameraServer | None, cameras: set[str]) -> None:
    """What a happening does to the mocks beyond point values (those follow the timeline)."""
    ev = h.event
    if ev is None:
        return
    if ev.panel is not None and ev.line is not None:
        world.panels[ev.panel].write_line(ev.line)
    elif ev.camera is not None and cams is not None and ev.camera in cameras:
        if ev.fault is not None:
            cams.show(ev.camera, Picture(ev.fault) if ev.active else Picture.QUIET)
        elif ev.video == "end":
            cams.show(ev.camera, Picture.QUIET)
        elif ev.video is not None:
            cams.show(ev.camera, Picture.FIRE)


def print_summary(con: Console, r: DemoResult, kept: Path | None) -> None:
    con.say()
    con.say(f"Summary: {r.day_s / 60:.1f} minutes of the school day in {r.real_s:.0f} s")
    by_type: dict[str, int] = {}
    for d in r.decisions:
        by_type[d["type"]] = by_type.get(d["type"], 0) + 1
    nuisance_raw = [h for h in r.raw_alarms if h.zone != r.fire_zone]
    fire_raw = [h for h in r.raw_alarms if h.zone == r.fire_zone]
    con.say(
        f"  raw alarms from the devices  {len(r.raw_alarms):3d}   "
        f"({len(nuisance_raw)} nuisances, {len(fire_raw)} from the fire)"
    )
    con.say(
        f"  forwarded alerts             {len(r.decisions):3d}   "
        + (", ".join(f"{k} {v}" for k, v in sorted(by_type.items())) or "none")
    )
    held = len(nuisance_raw) - len(r.forwarded_nuisances)
    spikes = sum(1 for h in nuisance_raw if not h.detector_alarm)
    con.say(
        f"  nuisances held back          {max(0, held):3d}   "
        f"({len(r.suppressed)} after alarm verification, kept in the local nuisance log; "
        f"{spikes} electrical spike(s) shorter than the sustain time)"
    )
    tta = r.time_to_alert_s
    if tta is not None:
        d = r.fire_alerts[0]
        rule = (d.get("details") or {}).get("rule", "?")
        start, alert = r.fire_started_t, r.fire_alert_t
        since = (
            f"{alert - start:.1f} s after the first detector sign in the room ({con.clock(start)}); "
            if start is not None and alert is not None
            else ""
        )
        con.say(
            f"  time to alert for the fire   forwarded at {con.clock(alert or 0)}, {since}"
            f"rule {rule}, {'verified' if d.get('verified') else 'NOT verified'}; "
            f"the gateway decided {tta:.1f} s after reading the first alarm"
        )
    elif not r.interrupted:
        con.say(f"  fire in the {r.fire_zone}: NOT forwarded")
    con.say(f"  errors logged by the agent   {len(r.errors):3d}")
    if kept is not None:
        con.say(f"  state folder kept: {kept} (site.yaml, outbox.db, nuisance.jsonl, agent.log)")
    if r.interrupted:
        con.say(f"Result: stopped at {con.clock(r.day_s)} (Ctrl-C), before the end of the day.")
    elif r.ok:
        con.say("Result: OK - the fire was forwarded, every nuisance was held back.")
    else:
        con.say("Result: FAILED")
        for p in r.problems:
            con.say(f"  - {p}")
