"""End-to-end harness: a corpus scenario through the real agent, in real time.

For one scenario (firmware_mocks/scenarios/*.yaml) it

* generates the site config from the scenario's site: every RTU bus becomes a
  simulated bus on a pseudo-terminal (firmware_mocks.SimRtuBus, devices built
  from the same profiles), a TCP bus a simulated Modbus TCP server, a panel a
  simulated panel printer port; the state folder is in a temporary folder;
  the uplink points at a mosquitto of its own on a free port; cameras are
  left out (no scenario used here has camera events; the simulated replay of
  the same generated site shows that this changes no expected decision);
* starts ``python -m agent run --config SITE`` as a child process: the agent
  exactly as systemd runs it, with its own event loop and GIL, so that the
  harness's mock threads cannot hide or cause timing effects in it, and so
  that it can be killed with SIGKILL;
* drives the mocks from the scenario's ``Timeline`` in real time (values,
  devices that stop answering, a reset command that blanks a detector's
  alarm for ``reset_restart_s`` as the replay models it, panel lines);
* subscribes to the broker and turns every published decision back into an
  ``agent.events.Decision`` with its scenario time, so that the corpus's own
  ``check`` judges them against the scenario's expectations.

Scenario time can be *compressed*: ``cuts`` remove quiet spans (nothing
changes in them) so that a scenario written with minutes of calm resolves
within about a minute; the compressed scenario is replayed in simulated time
against the same generated site first, and must still meet its expectations
there, which shows the cut changed nothing the engine cares about.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from agent.events import Decision, DecisionType, Evidence
from agent.mqtt import reraise_if_cancelled
from agent.siteconfig import LoadedSite, load_site
from agent.siteconfig.models import PanelBus, RtuBus, TcpBus
from drivers.profile import Table
from firmware_mocks import Fault, SimDevice, SimPanel, SimRtuBus, SimTcpServer
from firmware_mocks.broker import Mosquitto, find_mosquitto
from firmware_mocks.timeline import (
    SCENARIO_DIR,
    ReplayResult,
    Scenario,
    Timeline,
    check,
    load_scenario,
    replay,
    scenario_site,
)

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = find_mosquitto() or "/usr/sbin/mosquitto"
TICK_S = 0.05  # how often the mocks are brought up to date with the timeline
# real decision time vs the same scenario replayed in simulated time
MAX_SIM_DRIFT_S = 5.0
# ... except where the replay's model of the bus is coarser than the driver:
DRIFT_S = {
    # the replay reports a silent device at its offline_after-th missed poll, a poll
    # period apart; the driver waits out the timeout, a retry and the link's watch
    # for a late reply before each next poll (drivers/bus.py), which the replay does
    # not model (seen: 4.5-5.0 s later in every run, load 2-6 on 2 cores); a fault
    # may take 100 s (GB/T 45839)
    DecisionType.FAULT: 10.0,
    # a monitor polled every 2 s: the crossing of its setpoint and the end of its
    # sustain time are each seen up to a poll apart (seen: 3.2 s in every run)
    DecisionType.ELECTRICAL_PREALARM: 7.0,
    DecisionType.RESTORE: 7.0,
}


def sim_drift_s(d: Decision) -> float:
    """How far the real agent's time of decision d may be from the replay's."""
    return DRIFT_S.get(d.type, MAX_SIM_DRIFT_S)


# Every child process the harness starts, so that nothing outlives the tests
# even when a run is interrupted (finalizers call kill_leftovers too).
LIVE: set[subprocess.Popen[bytes]] = set()


# Children die with the harness even when it is SIGKILLed (finalizers cannot
# run then): setpriv sets the parent-death signal and execs the real program.
ORPHAN_GUARD = ["setpriv", "--pdeathsig", "SIGKILL", "--"] if shutil.which("setpriv") else []


def kill_leftovers() -> None:
    for p in list(LIVE):
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.send_signal(signal.SIGCONT)
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        LIVE.discard(p)


atexit.register(kill_leftovers)


class Broker(Mosquitto):
    """A real mosquitto on a free port, with persistence (a subscriber's session
    survives its restart) and a parent-death guard; ``stop`` always kills it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(
            folder,
            persistence=True,
            config="max_queued_messages 10000\n",
            argv_prefix=ORPHAN_GUARD,
        )

    def start(self, timeout_s: float = 10.0) -> None:
        super().start(timeout_s)
        assert self.proc is not None
        LIVE.add(self.proc)


@dataclass
class Received:
    wall: float  # when the subscriber got it
    topic: str
    payload: dict[str, Any]
    raw: bytes = b""


@dataclass
class Subscriber:
    """Collects everything under ``firegate/#``; a persistent session, so it
    misses nothing published while it reconnects (or while the broker is paused)."""

    port: int
    messages: list[Received] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    connects: int = 0
    client_id: str = field(default_factory=lambda: f"e2e-sub-{uuid.uuid4().hex[:8]}")

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id, clean_session=False
                ) as c:
                    await c.subscribe("firegate/#", qos=1)
                    self.connects += 1
                    self.ready.set()
                    async for m in c.messages:
                        raw = m.payload if isinstance(m.payload, bytes) else b""
                        try:
                            payload = json.loads(raw) if raw else {}
                        except (ValueError, UnicodeDecodeError):
                            payload = {"raw": raw[:64].hex()}
                        if not isinstance(payload, dict):
                            payload = {"value": payload}
                        self.messages.append(Received(time.time(), str(m.topic), payload, raw))
            except aiomqtt.MqttError:
                reraise_if_cancelled()  # else a cancel during connect loops forever
                await asyncio.sleep(0.1)

    def decisions(self) -> list[Received]:
        """Decisions, and the zones' retained states (zone/<zone>/state)."""
        return [m for m in self.messages if "/decision/" in m.topic or "/zone/" in m.topic]

    def online(self) -> bool:
        return any(
            m.topic.endswith("/status")
            and m.payload.get("state", m.payload.get("status")) == "online"
            for m in self.messages
        )


# ------------------------------------------------------------ the scenario side


def compress(sc: Scenario, cuts: tuple[tuple[float, float], ...], end_s: float) -> Scenario:
    """``sc`` with the spans ``(from_s, to_s]`` removed, ending at ``end_s`` (compressed time).

    Raises ValueError when a cut is not quiet: an event, a ramp or an
    expectation's time inside it.
    """
    cuts = tuple(sorted(cuts))

    def shift(t: float, what: str, *, deadline: bool = False) -> float:
        out = t
        for a, b in cuts:
            if a < t < b and deadline:
                out, t = out - (t - a), a  # a deadline inside a cut becomes its start: stricter
            if a < t < b:
                raise ValueError(f"{sc.name}: {what} at {t:g} s lies inside the cut ({a:g}, {b:g})")
            if t >= b:
                out -= b - a
        return out

    events = []
    for ev in sc.events:
        upd: dict[str, Any] = {"at": shift(ev.at, "an event")}
        if ev.ramp is not None:
            shift(ev.at + ev.ramp.over_s, "a ramp's end")
            for a, b in cuts:
                if ev.at < b and ev.at + ev.ramp.over_s > a:
                    raise ValueError(f"{sc.name}: a ramp crosses the cut ({a:g}, {b:g})")
        events.append(ev.model_copy(update=upd))
    expect = []
    for ex in sc.expect:
        upd = {}
        for key in ("by_s", "after_s"):
            v = getattr(ex, key)
            if v is not None:
                upd[key] = shift(v, f"expect.{key}", deadline=key == "by_s") if v > 0 else v
        expect.append(ex.model_copy(update=upd))
    return sc.model_copy(
        update={"events": tuple(events), "expect": tuple(expect), "duration_s": end_s}
    )


def site_yaml(
    sc: Scenario,
    tmp: Path,
    ports: Mapping[str, str],
    tcp_ports: Mapping[str, int],
    broker_port: int,
    *,
    zone_policy: Mapping[str, Mapping[str, Any]] | None = None,
    bus_timing: Mapping[str, Mapping[str, Any]] | None = None,
    clips: Mapping[str, Path] | None = None,
    camera_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write the generated site config for ``sc`` into ``tmp``; returns its path."""
    src = ((sc.path.parent if sc.path else SCENARIO_DIR) / sc.site).resolve()
    data = yaml.safe_load(src.read_text(encoding="utf-8"))
    data["profile_dirs"] = [str((src.parent / d).resolve()) for d in data.get("profile_dirs", [])]
    data["site"]["site_id"] = f"e2e-{sc.name}"[:60]
    for bus in data.get("buses", []):
        if bus["type"] in ("rtu", "panel"):
            bus["port"] = ports[bus["name"]]
        elif bus["type"] == "tcp":
            bus["host"], bus["port"] = "127.0.0.1", tcp_ports[bus["name"]]
        bus.update((bus_timing or {}).get(bus["name"], {}))
    for z in data["zones"]:
        if z["id"] in (zone_policy or {}):
            z["policy"] = {**z.get("policy", {}), **zone_policy[z["id"]]}  # type: ignore[index]
    # cameras only where the case gives them a clip (others would go stale: faults)
    data["cameras"] = [
        {**c, "source": str(clips[c["name"]]), **(camera_settings or {}).get(c["name"], {})}
        for c in data.get("cameras", [])
        if c["name"] in (clips or {})
    ]
    state = tmp / "state"
    state.mkdir(parents=True, exist_ok=True)
    data["storage"] = {"state_dir": str(state)}
    data["logging"] = {"level": "info"}
    data["uplink"] = {
        "host": "127.0.0.1",
        "port": broker_port,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
        "publish_timeout_s": 2.0,
        "heartbeat_s": 30.0,
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


FIXTURES = ROOT / "tests" / "fixtures" / "vision"
MODEL = ROOT / "vision" / "models" / "firenet.onnx"


def make_clip(source: str, path: Path, seconds: float, fps: float = 10.0) -> Path:
    """A 1280x720 mp4v clip, ``seconds`` long, so it is neither frozen nor unchanged.

    ``source`` is a fixture picture (tests/fixtures/vision/NAME.jpg), given a
    little motion (a moving bar, a frame counter), or a video file, whose real
    frames are looped (flames flicker: a still picture of a fire is not one).
    """
    import cv2

    frames: list[Any] = []
    if source.endswith((".avi", ".mp4")):
        return _loop_clip(source, path, seconds, fps)
    else:
        src = cv2.imread(str(FIXTURES / f"{source}.jpg"))
        if src is None:
            raise FileNotFoundError(FIXTURES / f"{source}.jpg")
        base = cv2.resize(src, (1280, 720))
        for i in range(50):
            frame = base.copy()
            y = (i * 7) % 700
            frame[y : y + 20, :40] = 255 - frame[y : y + 20, :40]
            frames.append(frame)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    if not out.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v here")
    for i in range(int(seconds * fps)):
        frame = frames[i % len(frames)].copy()
        cv2.putText(frame, str(i), (1150, 700), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        out.write(frame)
    out.release()
    return path


def _loop_clip(source: str, path: Path, seconds: float, fps: float) -> Path:
    """``source``'s frames looped to ``seconds`` at 1280x720, one frame in memory at a
    time (a minute of 1280x720 frames held at once is gigabytes)."""
    import cv2

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    if not out.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v here")
    cap = cv2.VideoCapture(source)
    try:
        for i in range(int(seconds * fps)):
            ok, img = cap.read()
            if not ok:  # the end: loop
                cap.release()
                cap = cv2.VideoCapture(source)
                ok, img = cap.read()
                if not ok:
                    raise FileNotFoundError(source)
            frame = cv2.resize(img, (1280, 720))
            cv2.putText(frame, str(i), (1150, 700), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
            out.write(frame)
    finally:
        cap.release()
        out.release()
    return path


class Mocks:
    """The simulated field side of a site: buses, devices and panels, driven by a timeline."""

    def __init__(self, sc: Scenario, tmp: Path) -> None:
        base = scenario_site(sc)  # only for the profiles; ports come from here
        self.devices: dict[str, SimDevice] = {}
        self.rtu: list[SimRtuBus] = []
        self.tcp: dict[str, SimTcpServer] = {}
        self.panels: dict[str, SimPanel] = {}
        self.ports: dict[str, str] = {}
        for bus in base.config.buses:
            if isinstance(bus, PanelBus):
                panel = SimPanel(link_path=tmp / f"tty-{bus.name}")
                self.panels[bus.name] = panel
                self.ports[bus.name] = panel.path
                continue
            devs = []
            for d in bus.devices:
                sim = SimDevice(d.device_id, base.modbus_profile(d.profile))
                self.devices[d.name] = sim
                devs.append(sim)
            if isinstance(bus, RtuBus):
                rtu = SimRtuBus(devs, baudrate=bus.baudrate, link_path=tmp / f"tty-{bus.name}")
                self.rtu.append(rtu.start())
                self.ports[bus.name] = rtu.path
            else:
                assert isinstance(bus, TcpBus)
                self.tcp[bus.name] = SimTcpServer(devs).start()

    @property
    def tcp_ports(self) -> dict[str, int]:
        return {name: s.port for name, s in self.tcp.items()}

    def close(self) -> None:
        for b in self.rtu:
            b.stop()
        for s in self.tcp.values():
            s.stop()
        for p in self.panels.values():
            p.close()


class Driver:
    """Keeps the mocks equal to the timeline at the current scenario time.

    Writes a point only when its value changes, so that a reset the bus
    worker sends (the mock clears the alarm bits itself) is not overwritten:
    the detector stays quiet for ``reset_restart_s``, then, if the timeline
    still says smoke, alarms again, as the replay models it.
    """

    def __init__(self, sc: Scenario, site: LoadedSite, mocks: Mocks) -> None:
        if sc.reset_fails:
            raise ValueError(f"{sc.name}: reset_fails is not emulated by the e2e harness")
        self.sc = sc
        self.tl = Timeline(sc, site)
        self.mocks = mocks
        self.written: dict[tuple[str, str], Any] = {}
        self.offline: dict[str, bool] = {}
        self.resets_seen: dict[str, int] = {}
        self.blank_until: dict[str, float] = {}
        self.reset_times: list[tuple[float, str]] = []
        self.panel_done: set[int] = set()

    def _alarm_points(self, dev: str) -> list[str]:
        prof = self.tl.profiles[dev]
        return [
            p.name
            for p in prof.points
            if p.table.is_bit
            and p.condition is not None
            and p.condition.value in ("alarm", "prealarm")
            and p.table in (Table.DISCRETE, Table.COIL)
        ]

    def apply(self, t: float) -> None:
        for name, sim in self.mocks.devices.items():
            n = len(sim.commands_received)
            if n > self.resets_seen.get(name, 0):
                new = sim.commands_received[self.resets_seen.get(name, 0) :]
                self.resets_seen[name] = n
                if "reset" in new:
                    self.reset_times.append((t, name))
                    self.blank_until[name] = t + self.sc.reset_restart_s
                    for p in self._alarm_points(name):
                        self.written[(name, p)] = None  # the mock cleared it
            online = self.tl.online(name, t)
            if self.offline.get(name, False) == online:
                if online:
                    sim.clear_faults()
                else:
                    sim.inject(Fault.NO_REPLY)  # until cleared
                self.offline[name] = not online
            blank = t < self.blank_until.get(name, -1.0)
            alarm_points = self._alarm_points(name) if blank else []
            prof = self.tl.profiles[name]
            for p in prof.points:
                v = self.tl.value(name, p.name, t)
                if p.name in alarm_points:
                    v = not p.active_when
                if self.written.get((name, p.name), "unset") != v:
                    sim.set_point(p.name, v)
                    self.written[(name, p.name)] = v
        for i, ev in enumerate(self.tl.panel_events):
            if i not in self.panel_done and t >= ev.at:
                assert ev.panel is not None and ev.line is not None
                self.mocks.panels[ev.panel].write_line(ev.line, stamp=False)
                self.panel_done.add(i)


# --------------------------------------------------------------- the agent side


def _parse_iso(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def decision_of(payload: Mapping[str, Any]) -> Decision:
    """A published payload back as a Decision (for the corpus's ``check``)."""
    first = _parse_iso(payload["first_seen"])
    at = _parse_iso(payload["confirmed_at"])
    return Decision(
        type=DecisionType(payload["type"]),
        zone=payload["zone"],
        reason=payload["reason"],
        first_seen_wall=first,
        first_seen_mono=first,
        wall=at,
        mono=at,
        devices=tuple(payload.get("devices", ())),
        cameras=tuple(payload.get("cameras", ())),
        evidence=tuple(
            Evidence(
                observation_id=e["observation_id"],
                source=e["source"],
                what=e["what"],
                wall=_parse_iso(e["time"]),
                mono=_parse_iso(e["time"]),
            )
            for e in payload.get("evidence", ())
        ),
        verified=payload["verified"],
        details=dict(payload.get("details", {})),
        id=payload["id"],
    )


class AgentProcess:
    """``python -m agent run --config SITE`` as a child; stderr to a file."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*ORPHAN_GUARD, sys.executable, "-m", "agent", "run", "--config", str(self.config)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        LIVE.add(self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code (None: had to kill)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def outbox_rows(state_dir: Path) -> list[dict[str, Any]]:
    """The decisions stored in the agent's outbox (read-only, from outside the agent)."""
    db = state_dir / "outbox.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT id, type, payload FROM outbox ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    return [{"id": i, "type": t, **json.loads(p)} for i, t, p in rows]


# ------------------------------------------------------------------ one run


@dataclass(frozen=True)
class Case:
    """A corpus scenario as an end-to-end run: which scenario, which quiet spans to cut,
    where to end (compressed time), site tuning, and what else to check."""

    name: str
    # a file stem under firmware_mocks/scenarios/, or a Scenario object (a generated one)
    scenario: str | Scenario
    cuts: tuple[tuple[float, float], ...]
    end_s: float
    zone_policy: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    bus_timing: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kill_after_stored: DecisionType | None = None  # the kill -9 run (see run_kill)
    videos: Mapping[str, str] = field(default_factory=dict)  # camera -> fixture picture
    # camera -> settings of its own (e.g. the camera before issue 16)
    camera_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    corpus_check: bool = True  # False: the test judges (real video cannot be replayed)
    why: str = ""


@dataclass
class Outcome:
    case: Case
    scenario: Scenario | None = None
    simulated: ReplayResult | None = None
    sim_problems: list[str] = field(default_factory=list)
    decisions: list[tuple[float, Decision]] = field(default_factory=list)  # scenario time
    delivery_s: list[float] = field(default_factory=list)  # receive - confirmed_at
    problems: list[str] = field(default_factory=list)
    resets: list[tuple[float, str]] = field(default_factory=list)
    nuisance_log: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    stored_before_kill: list[dict[str, Any]] = field(default_factory=list)
    received_before_kill: list[str] = field(default_factory=list)  # decision ids
    delivered_after_restart: list[dict[str, Any]] = field(default_factory=list)
    log_tail: str = ""
    evidence: dict[str, bytes] = field(default_factory=dict)  # decision id -> JPEG
    started_wall: float = 0.0  # when the agent process was started
    t0_wall: float = 0.0  # scenario time 0
    wall_s: float = 0.0
    error: str = ""

    def summary(self) -> str:
        sc = self.case.scenario
        name = sc if isinstance(sc, str) else sc.name
        lines = [f"{self.case.name} ({name}) in {self.wall_s:.1f} s real time"]
        for t, d in self.decisions:
            lines.append(
                f"  {t:6.1f} s {d.type.value} {d.zone} rule={d.details.get('rule')} {d.reason}"
            )
        if self.simulated is not None:
            for t, d in self.simulated.decisions:
                lines.append(f"  sim {t:6.1f} s {d.type.value} {d.zone}")
        if self.error:
            lines.append(f"  ERROR {self.error}")
        for p in self.problems:
            lines.append(f"  PROBLEM {p}")
        if self.problems or self.error:
            lines.append("  agent log tail:\n" + self.log_tail)
        return "\n".join(lines)


def prepare(case: Case, tmp: Path) -> tuple[Scenario, Mocks, Broker, Path, LoadedSite]:
    sc0 = (
        case.scenario
        if isinstance(case.scenario, Scenario)
        else load_scenario(SCENARIO_DIR / f"{case.scenario}.yaml")
    )
    sc = compress(sc0, case.cuts, case.end_s)
    tmp.mkdir(parents=True, exist_ok=True)
    mocks = Mocks(sc0, tmp)
    broker = Broker(tmp / "broker")
    try:
        broker.start()
        clips = {
            cam: make_clip(img, tmp / f"{cam}.mp4", case.end_s + 60)
            for cam, img in case.videos.items()
        }
        cfg = site_yaml(
            sc0,
            tmp,
            mocks.ports,
            mocks.tcp_ports,
            broker.port,
            zone_policy=case.zone_policy,
            bus_timing=case.bus_timing,
            clips=clips,
            camera_settings=case.camera_settings,
        )
        site = load_site(cfg)
    except BaseException:
        broker.stop()
        mocks.close()
        raise
    return sc, mocks, broker, cfg, site


async def _wait(pred: Any, timeout_s: float, what: str, agent: AgentProcess | None) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if agent is not None and not agent.alive():
            raise RuntimeError(f"the agent exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:g} s")
        await asyncio.sleep(0.05)


async def _drive(driver: Driver, t0: float, until_s: float, agent: AgentProcess, stop: Any) -> None:
    """Apply the timeline in real time from scenario time 0 (at ``t0``) to ``until_s``."""
    while True:
        t = time.monotonic() - t0
        driver.apply(t)
        if t >= until_s or stop():
            return
        if not agent.alive():
            raise RuntimeError(f"the agent exited at scenario time {t:.1f} s")
        await asyncio.sleep(TICK_S)


async def run_case(case: Case, tmp: Path) -> Outcome:
    out = Outcome(case)
    t_start = time.monotonic()
    sc, mocks, broker, cfg, site = prepare(case, tmp)
    out.scenario = sc
    # the same compressed scenario on the same generated site, in simulated time
    if case.corpus_check:
        # pure computation: off the loop, so that the other cases keep their timing
        out.simulated = await asyncio.to_thread(replay, sc, site=site)
        out.sim_problems = check(out.simulated)
    agent = AgentProcess(cfg, tmp / "agent.log")
    sub = Subscriber(broker.port)
    sub_task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.ready.wait(), 30)
        driver = Driver(sc, site, mocks)
        driver.apply(0.0)
        started_wall = time.time()
        agent.start()
        await _wait(sub.online, 30, "'online' status from the agent's uplink", agent)
        # every device polled at least twice: the engine has its initial states
        await _wait(
            lambda: all(d.requests >= 2 for d in mocks.devices.values()),
            30,
            "polls of every device",
            agent,
        )
        t0 = time.monotonic()
        t0_wall = time.time()
        if case.kill_after_stored is not None:
            await _kill_and_restart(case, out, driver, broker, sub, agent, site, t0)
        else:
            await _drive(driver, t0, sc.duration_s, agent, lambda: False)
        out.exit_code = agent.stop()
        await asyncio.sleep(0.2)
        out.resets = driver.reset_times
        for m in sub.decisions():
            d = decision_of(m.payload)
            out.decisions.append((d.wall - t0_wall, d))
            out.delivery_s.append(m.wall - d.wall)
        out.decisions.sort(key=lambda x: x[0])
        from agent.engine.nuisance_log import NuisanceLog

        out.nuisance_log = NuisanceLog(site.config.storage.state_dir).read()
        out.evidence = {
            m.topic.rsplit("/", 1)[1]: m.raw for m in sub.messages if "/evidence/" in m.topic
        }
        out.started_wall = started_wall
        out.t0_wall = t0_wall
        if case.kill_after_stored is None and case.corpus_check:
            # the kill run restarts mid-incident: its own test judges it
            out.problems = check(ReplayResult(sc, out.decisions, [], [], 0, {}))
    except Exception as e:
        out.error = f"{type(e).__name__}: {e}"
    finally:
        agent.stop(5)
        out.log_tail = agent.log_tail()
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)
        broker.stop()
        mocks.close()
        out.wall_s = time.monotonic() - t_start
    return out


async def _kill_and_restart(
    case: Case,
    out: Outcome,
    driver: Driver,
    broker: Broker,
    sub: Subscriber,
    agent: AgentProcess,
    site: LoadedSite,
    t0: float,
) -> None:
    """Stop the broker (the agent's uplink cannot deliver), drive until a
    ``kill_after_stored`` decision is in the outbox, SIGKILL the agent, start
    the broker again, then the agent on the same state folder, and wait for
    every stored decision to arrive."""
    state = site.config.storage.state_dir
    want = case.kill_after_stored
    assert want is not None and out.scenario is not None
    connects = sub.connects
    broker.terminate()

    def stored() -> bool:
        return any(r["type"] == want.value for r in outbox_rows(state))

    await _drive(driver, t0, out.scenario.duration_s, agent, stored)
    if not stored():
        raise AssertionError(f"no {want.value} stored by the end of the scenario")
    await asyncio.sleep(0.3)  # whatever else the engine decides with it
    agent.kill9()
    out.stored_before_kill = outbox_rows(state)
    out.received_before_kill = [m.payload["id"] for m in sub.decisions()]
    broker.start()
    # the subscriber's persistent session is back before the agent can publish
    await _wait(lambda: sub.connects > connects, 10, "the subscriber back", None)
    restarted = time.time()
    agent.start()
    ids = {r["id"] for r in out.stored_before_kill}
    deadline = time.monotonic() + 30
    while not ids <= {m.payload.get("id") for m in sub.decisions()}:
        if time.monotonic() > deadline or not agent.alive():
            break
        driver.apply(time.monotonic() - t0)
        await asyncio.sleep(TICK_S)
    out.delivered_after_restart = [m.payload for m in sub.decisions()]
    await _wait(
        lambda: any(
            m.topic.endswith("/status")
            and m.payload.get("state") == "online"
            and m.wall > restarted
            for m in sub.messages
        ),
        10,
        "'online' from the restarted agent",
        agent,
    )


class CaseRunner:
    """Runs cases concurrently in a thread with its own event loop, each from
    its plan (a callable that returns the Case; a plan that fails gets its
    error as that case's result)."""

    def __init__(
        self, plans: Mapping[str, Callable[[], Case]], base: Path, *, timeout_s: float
    ) -> None:
        self.plans = dict(plans)
        self.futures: dict[str, Future[Outcome]] = {n: Future() for n in self.plans}
        self.base = base
        self.timeout_s = timeout_s
        self.loop = asyncio.new_event_loop()
        self.tasks: list[asyncio.Task[None]] = []
        self.thread = threading.Thread(target=self._main, name="e2e-runner", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._all())
        self.loop.close()

    async def _one(self, name: str, case: Case) -> None:
        fut = self.futures[name]
        try:
            fut.set_result(await run_case(case, self.base / case.name))
        except BaseException as e:
            fut.set_exception(e)
            if isinstance(e, asyncio.CancelledError):
                raise

    async def _all(self) -> None:
        cases = []
        for name, plan in self.plans.items():
            try:
                cases.append((name, plan()))
            except Exception as e:
                self.futures[name].set_exception(e)
        self.tasks = [asyncio.create_task(self._one(n, c)) for n, c in cases]
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: all done
                for t in self.tasks:
                    self.loop.call_soon_threadsafe(t.cancel)
            self.thread.join(30)
        kill_leftovers()

    def result(self, name: str) -> Outcome:
        return self.futures[name].result(timeout=self.timeout_s)
