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

Modules: play (this: options and the run), script (the day as console lines),
world (mocks, broker, what comes back upstream), console (timeline, summary,
result), cameras (the MJPEG cameras), build_clips (remakes the clips).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from agent.clock import ScaledClock
from agent.gb26875.mapping import directory_for
from agent.siteconfig import LoadedSite, load_site
from agent.siteconfig.models import PanelBus, RtuBus
from firmware_mocks.broker import BrokerError, Mosquitto, find_mosquitto
from firmware_mocks.centre import CENTRE_ADDRESS, MockCentre, centre_lines
from firmware_mocks.demo.cameras import Picture, SimCameraServer, demo_feeds
from firmware_mocks.demo.console import (
    Console,
    DemoResult,
    decision_line,
    decision_zone,
    epoch_of,
    print_summary,
)
from firmware_mocks.demo.script import Happening, happenings
from firmware_mocks.demo.world import (
    DemoError,
    NuisanceTail,
    Upstream,
    World,
)
from firmware_mocks.timeline import Scenario, Timeline, load_scenario

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


@dataclass
class DemoOptions:
    speed: float = DEFAULT_SPEED
    state_dir: Path | None = None  # None: a temporary folder, removed at the end
    broker: bool | None = None  # None: use mosquitto when it is installed
    until_s: float | None = None  # stop the day early (scenario seconds)
    uplink: str = "mqtt"  # "gb26875": also a mock GB/T 26875.3 centre, beside MQTT
    out: TextIO = field(default_factory=lambda: sys.stdout)
    scenario: Path = SCENARIO_FILE
    site_template: Path = SITE_TEMPLATE


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


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
    centre_port: int | None = None,
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
    if centre_port is not None:
        data["gb26875"] = {
            "host": "127.0.0.1",
            "port": centre_port,
            "source_address": 889,
            "destination_address": CENTRE_ADDRESS,
            "reconnect_min_s": 0.2,
        }
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
    "outbox-gb26875.db*",
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

    broker: Mosquitto | None = None
    exe = find_mosquitto() if opts.broker is not False else None
    if opts.broker and exe is None:
        raise DemoError("mosquitto is not installed (sudo apt-get install mosquitto)")
    if exe is not None:
        # its own process group: a Ctrl-C reaches the demo, which then stops it in order
        broker = Mosquitto(folder, exe=exe, new_session=True)
        try:
            broker.start(timeout_s=5)
        except BrokerError as e:
            raise DemoError(f"{e}; run with --no-broker to use the outbox instead") from None
        stack.callback(broker.stop)

    centre: MockCentre | None = None
    if opts.uplink == "gb26875":
        if broker is None:
            raise DemoError(
                "--uplink gb26875 runs beside MQTT and needs mosquitto "
                "(sudo apt-get install mosquitto)"
            )
        centre = MockCentre()
        await centre.start()
    cfg_path = generate_config(
        opts.site_template,
        folder,
        world,
        streams,
        broker.port if broker else None,
        centre.port if centre else None,
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
    if centre is not None:
        upstream_label += f" and a mock GB/T 26875.3 centre on 127.0.0.1:{centre.port}"
    result = DemoResult(opts.speed, upstream_label, with_cameras, fire_zone=sc.zone)
    if centre is not None:
        result.centre_frames = 0
    result.raw_alarms = [h for h in script if h.raw_alarm]
    con = Console(opts.out, day_start)
    end_s = min(sc.duration_s, opts.until_s) if opts.until_s is not None else sc.duration_s
    result.until_s = end_s if end_s < sc.duration_s else None

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

    centre_seen = 0
    directory = directory_for(site) if centre is not None else None

    def show_centre() -> None:
        nonlocal centre_seen
        if centre is None or directory is None:
            return
        t_now = clock.monotonic() - mono0
        for line in centre.received[centre_seen:]:
            if line.answer is None:
                continue  # not answered (yet): shown when confirmed
            centre_seen += 1
            if line.answer.name != "CONFIRM" or line.unit is None:
                continue
            result.centre_frames = (result.centre_frames or 0) + 1
            for zone, text, fire in centre_lines(line.unit, directory):
                result.centre_fire |= fire
                con.line(t_now, "CENTRE", zone, text)

    def show_news() -> None:
        nonlocal shown
        show_centre()
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
                decision_zone(result, did),
                f"evidence: the camera's JPEG snapshot ({len(jpeg) / 1024:.0f} KiB){where}",
            )
        while shown < len(upstream.decisions):
            d = upstream.decisions[shown]
            shown += 1
            result.decisions.append(d)
            result.decision_t[d["id"]] = t_of_wall(epoch_of(d["confirmed_at"]))
            con.line(
                result.decision_t[d["id"]],
                tag,
                d["zone"],
                decision_line(d),
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
        if centre is not None:
            show_centre()
            await centre.stop()
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
