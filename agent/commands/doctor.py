"""`firegate doctor --config PATH`: a checklist an installer reads on site.

Each line is PASS, FAIL or SKIP, with what was found and, on FAIL, what to do.
Exit 0 when nothing failed, 1 when anything did.

The checks are a list (``CHECKS``) of functions (sync or async) taking a ``Context``
and returning ``Result`` lines, run in order; a check that needs the site
config SKIPs when the config is not valid. To add one (the lead wires
driver- and vision-based checks here)::

    from agent.commands import doctor
    doctor.register_check("devices", my_check)   # replaces the placeholder

Permissions are judged for the service user, not for whoever runs doctor:
run as root, doctor evaluates the device's mode bits for ``--user`` (default
firegate) with the groups the unit adds (dialout, video); run as any other
user, it asks the kernel (``os.access``) for that user. ACLs are not read in
the first case (udev does not give the service user ACLs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import errno
import functools
import grp
import inspect
import json
import os
import pwd
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent import unitcheck
from agent.logs import redact
from agent.siteconfig import ConfigError, LoadedSite, load_site
from agent.siteconfig.models import CameraConfig, PanelBus, RtuBus, TcpBus, UplinkConfig
from agent.unitcheck import DEFAULT_UNIT

if TYPE_CHECKING:
    from agent.mqtt import AckedClient

DEFAULT_CONFIG = Path("/etc/firegate/site.yaml")
SERVICE_GROUPS = ("dialout", "video")  # SupplementaryGroups= in systemd/firegate.service
OUTBOX_RESERVE_MB = 64.0  # journal, status file and the database's own overhead
MIN_FREE_INODES = 1000
CLOCK_MIN_YEAR = 2025
CLOCK_SLACK_S = 300.0  # file times this far in the future mean the clock is behind
MODELS_DIR = Path(__file__).resolve().parents[2] / "vision" / "models"

T = TypeVar("T")


class Outcome(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Result:
    """One line of the checklist. ``fix`` says what to do (on FAIL, sometimes SKIP)."""

    check: str
    outcome: Outcome
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        # the one redaction of every output (a camera URL's password, ?pwd=...)
        object.__setattr__(self, "detail", redact(self.detail))
        object.__setattr__(self, "fix", redact(self.fix))


@dataclass(frozen=True)
class Identity:
    """Whose access to devices and folders is judged."""

    description: str
    uid: int | None = None  # None: the current process (ask the kernel)
    gids: frozenset[int] = frozenset()


@dataclass
class Context:
    config_path: Path
    timeout_s: float = 5.0
    identity: Identity = field(default_factory=lambda: Identity("you"))
    site: LoadedSite | None = None
    models_dir: Path = MODELS_DIR
    now_wall: Callable[[], float] = time.time
    service_user: str = "firegate"
    unit_path: Path = DEFAULT_UNIT


Check = Callable[[Context], list[Result] | Awaitable[list[Result]]]  # sync or async


# ----------------------------------------------------------------- permissions


def mode_allows(
    st_mode: int, st_uid: int, st_gid: int, uid: int, gids: frozenset[int], want: int
) -> bool:
    """POSIX permission bits: may ``uid`` (with groups ``gids``) do ``want`` (os.R_OK|W_OK|X_OK)?

    The owner class applies to the owner only, the group class to group
    members only, as the kernel does (an owner without rights is refused even
    if the group has them). Root (uid 0) may read and write anything.
    """
    if uid == 0:
        return True
    if st_uid == uid:
        bits = (st_mode >> 6) & 7
    elif st_gid in gids:
        bits = (st_mode >> 3) & 7
    else:
        bits = st_mode & 7
    return bits & want == want


def service_identity(user: str) -> Identity | None:
    """The service user with the groups systemd gives it, or None if it does not exist."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    extra = []
    for name in SERVICE_GROUPS:
        try:
            gids.add(grp.getgrnam(name).gr_gid)
            extra.append(name)
        except KeyError:
            pass
    groups = f" with the unit's groups {', '.join(extra)}" if extra else ""
    return Identity(f"the service user {user}{groups}", pw.pw_uid, frozenset(gids))


def may_access(path: Path, who: Identity, want: int) -> bool:
    if who.uid is None:
        return os.access(path, want)
    st = path.stat()
    return mode_allows(st.st_mode, st.st_uid, st.st_gid, who.uid, who.gids, want)


def _owner(st: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{stat.filemode(st.st_mode)} {user}:{group}"


def _holders(path: Path) -> list[str]:
    """Processes that have ``path`` open ('name (pid N)'); best effort, needs /proc."""
    try:
        target = os.path.realpath(path)
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            fd_dir = f"/proc/{pid}/fd"
            try:
                for fd in os.listdir(fd_dir):
                    if os.readlink(f"{fd_dir}/{fd}") == target:
                        with open(f"/proc/{pid}/comm") as f:
                            out.append(f"{f.read().strip()} (pid {pid})")
                        break
            except OSError:
                continue
        return out
    except OSError:
        return []


# -------------------------------------------------------------------- checks


def check_config(ctx: Context) -> list[Result]:
    try:
        ctx.site = load_site(ctx.config_path)
    except ConfigError as e:
        n = len(e.problems)
        shown = "; ".join(str(p) for p in e.problems[:5]) + (" ..." if n > 5 else "")
        return [
            Result(
                "config",
                Outcome.FAIL,
                f"{n} problem{'s' if n != 1 else ''}: {shown}",
                f"run `firegate check-config {ctx.config_path}` for the full list and fix each line",
            )
        ]
    c = ctx.site.config
    return [
        Result(
            "config",
            Outcome.PASS,
            f"{ctx.config_path}: site {c.site.site_id} gateway {c.site.gateway_id}, "
            f"{_n(len(c.zones), 'zone')}, {_n(len(c.buses), 'bus')} "
            f"({_n(len(c.devices()), 'device')}, {_n(len(c.panels()), 'panel')}), "
            f"{_n(len(c.cameras), 'camera')}",
        )
    ]


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else ("es" if word.endswith("s") else "s"))


def check_service_user(ctx: Context) -> list[Result]:
    """The unit runs as this user: without it systemd refuses to start the agent."""
    svc = service_identity(ctx.service_user)
    if svc is None:
        return [
            Result(
                "service user",
                Outcome.FAIL,
                f"user {ctx.service_user} does not exist; the unit runs as it",
                "run systemd/install.sh (it creates the user), or give --user NAME",
            )
        ]
    return [Result("service user", Outcome.PASS, f"{svc.description}")]


def _readable(path: Path, who: Identity) -> bool:
    """May ``who`` open ``path`` for reading (search rights on every folder above it)?"""
    try:
        for d in reversed(path.resolve().parents):
            if not may_access(d, who, os.X_OK):
                return False
        return may_access(path, who, os.R_OK)
    except OSError:
        return False


def check_files(ctx: Context) -> list[Result]:
    """The config and the files it names are readable by the service; secrets by no one else."""
    assert ctx.site is not None
    files: list[tuple[str, Path, bool]] = [("site config", ctx.config_path, False)]
    up = ctx.site.config.uplink
    if up is not None:
        if up.password_file is not None:
            files.append(("password_file", up.password_file, True))
        if up.tls is not None:
            files.append(("tls.ca_file", up.tls.ca_file, False))
            if up.tls.cert_file is not None and up.tls.key_file is not None:
                files.append(("tls.cert_file", up.tls.cert_file, False))
                files.append(("tls.key_file", up.tls.key_file, True))
    out = []
    for what, path, secret in files:
        if not _readable(path, ctx.identity):
            out.append(
                Result(
                    f"file {what}",
                    Outcome.FAIL,
                    f"{path}: {ctx.identity.description} may not read it",
                    f"chgrp firegate {path}; chmod 640 {path} (and the folders above it need o+x or group firegate)",
                )
            )
        elif secret and path.stat().st_mode & 0o004:
            out.append(
                Result(
                    f"file {what}",
                    Outcome.FAIL,
                    f"{path} ({_owner(path.stat())}) is readable by every user on the gateway",
                    f"chmod 640 {path}; chgrp firegate {path}",
                )
            )
    if not out:
        names = ", ".join(w for w, _, _ in files)
        out.append(
            Result("files", Outcome.PASS, f"{names}: readable by {ctx.identity.description}")
        )
    return out


def _serial_candidates() -> str:
    found: list[str] = []
    for pattern in (
        "/dev/firegate*",
        "/dev/firegate/*",
        "/dev/serial/by-id/*",
        "/dev/ttyUSB*",
        "/dev/ttyACM*",
    ):
        found.extend(str(p) for p in sorted(Path("/").glob(pattern.lstrip("/"))))
    return ", ".join(found) if found else "none"


def check_serial_ports(ctx: Context) -> list[Result]:
    assert ctx.site is not None
    out = []
    for bus in ctx.site.config.buses:
        if isinstance(bus, TcpBus):
            continue
        assert isinstance(bus, RtuBus | PanelBus)
        out.append(_check_port(f"serial {bus.name}", Path(bus.port), ctx.identity))
    if not out:
        out.append(Result("serial", Outcome.SKIP, "no serial buses in the config"))
    return out


def _check_port(name: str, port: Path, who: Identity) -> Result:
    try:
        st = port.stat()
    except FileNotFoundError:
        return Result(
            name,
            Outcome.FAIL,
            f"{port} not found",
            "plug in the adapter (or fix the port in the config); serial devices present now: "
            f"{_serial_candidates()}",
        )
    except PermissionError:
        return Result(
            name, Outcome.FAIL, f"{port}: permission denied looking it up", "run doctor with sudo"
        )
    real = os.path.realpath(port)
    shown = f"{port}" + (f" -> {real}" if real != str(port) else "")
    if not stat.S_ISCHR(st.st_mode):
        return Result(
            name,
            Outcome.FAIL,
            f"{shown} is not a serial device",
            "use the adapter's /dev/ttyUSB* or /dev/firegate/* name",
        )
    if not may_access(port, who, os.R_OK | os.W_OK):
        return Result(
            name,
            Outcome.FAIL,
            f"{shown} ({_owner(st)}): {who.description} may not read and write it",
            "serial devices should be group dialout, mode 660: install "
            "systemd/99-firegate-serial.rules (install.sh does) and replug, or add the user to "
            "dialout (usermod -aG dialout USER); the service gets dialout from SupplementaryGroups=",
        )
    detail = f"{shown} ({_owner(st)}), read/write for {who.description}"
    holders = _holders(port)
    if holders:
        detail += f"; open in {', '.join(holders)}"
    return Result(name, Outcome.PASS, detail)


DEVICE_TIMEOUT_S = 0.5  # per attempt (two at most): a healthy device answers in tens of ms


@dataclass(frozen=True)
class _Probe:
    """What one read of one device gave: ``kind`` is ok, silent, garbled, refused or port."""

    kind: str
    detail: str
    took_s: float = 0.0


async def check_devices(ctx: Context) -> list[Result]:
    """Read each configured Modbus device once (the first point of its profile)
    through the drivers' own link, one bus after another, one request at a time.

    The verdict per device uses the whole bus: when nothing on a bus answers,
    the wiring or the line settings are the likely cause (A/B swapped, baud
    rate, parity); when others answer, that one device's address or power.
    """
    assert ctx.site is not None
    cfg = ctx.site.config
    buses = [b for b in cfg.buses if isinstance(b, RtuBus | TcpBus)]
    out: list[Result] = []
    timeout_s = min(ctx.timeout_s, DEVICE_TIMEOUT_S)
    for bus in buses:
        out.extend(await _check_bus(ctx.site, bus, timeout_s))
    for panel in cfg.panels():
        out.append(
            Result(
                f"panel {panel.name}",
                Outcome.SKIP,
                f"{panel.port}: a panel prints events on its own and cannot be asked",
                "print a test event at the panel (or its printer self-test) and watch "
                "`journalctl -u firegate -f` for the line",
            )
        )
    if not out:
        out.append(Result("devices", Outcome.SKIP, "no devices in the config"))
    return out


def _line_settings(bus: RtuBus | TcpBus) -> str:
    if isinstance(bus, TcpBus):
        return f"{bus.host}:{bus.port}"
    return f"{bus.port} at {bus.baudrate} baud {bus.bytesize}{bus.parity}{bus.stopbits}"


async def _check_bus(site: LoadedSite, bus: RtuBus | TcpBus, timeout_s: float) -> list[Result]:
    from drivers import codec, frames  # lazy: only doctor's device check needs the drivers
    from drivers.bus import make_link
    from drivers.frames import DeviceException, FrameError, NoReply, PortError, PortSettingsError

    link = make_link(bus)
    try:
        await link.open()
    except PortError as e:
        if isinstance(bus, RtuBus) and "exclusively lock" in str(e):
            # the running agent (or another program) polls this bus: do not fight it
            holders = ", ".join(_holders(Path(bus.port))) or "another process"
            return [
                Result(
                    f"devices on {bus.name}",
                    Outcome.SKIP,
                    f"{bus.port} is in use by {holders}; {_n(len(bus.devices), 'device')} not read",
                    "if that is the agent, `firegate status` shows each device; to check them "
                    "here, stop it first (systemctl stop firegate)",
                )
            ]
        return [
            Result(
                f"device {d.name}",
                Outcome.FAIL,
                f"bus {bus.name}: {e}",
                "use the line settings the devices use, ones this adapter accepts (or another "
                "adapter); `firegate scan --port ... --baudrate auto --parity auto` tries them"
                if isinstance(e, PortSettingsError)
                else "fix the port first (see the serial line above)"
                if isinstance(bus, RtuBus)
                else "check the host and port, the device's power and its network",
            )
            for d in bus.devices
        ]
    probes: list[tuple[Any, str, _Probe]] = []
    try:
        for d in bus.devices:
            prof = site.modbus_profile(d.profile)
            p = prof.points[0]
            block = codec.ReadBlock.make(p.table, prof.pdu_address(p.address), p.count, (p,))
            what = f"{p.name} ({p.table.value} {p.address})"
            t0 = time.monotonic()
            try:
                try:
                    reply = await _ask(link, d.device_id, block.pdu, timeout_s)
                except (NoReply, FrameError):
                    # one lost or hit frame must not fail a device on site: ask once more
                    t0 = time.monotonic()
                    reply = await _ask(link, d.device_id, block.pdu, timeout_s)
                parsed = frames.parse_reply(block.pdu, reply)
                raw = codec.block_raws(prof, block, parsed.registers, parsed.bits)[p.name]
                probe = _Probe("ok", f"{p.name} = {_shown(p, raw)}", time.monotonic() - t0)
            except DeviceException as e:
                probe = _Probe("refused", f"answered, but refused to read {what}: {e}")
            except NoReply:
                probe = _Probe("silent", f"no answer within {timeout_s:g} s (asked twice)")
            except FrameError as e:
                probe = _Probe("garbled", f"only garbled replies ({e})")
            except PortError as e:
                probe = _Probe("port", str(e))
            probes.append((d, what, probe))
    finally:
        link.close()
    answering = sum(1 for _, _, pr in probes if pr.kind in ("ok", "refused"))
    out = []
    for d, _what, pr in probes:
        name = f"device {d.name}"
        head = f"bus {bus.name} id {d.device_id} ({d.profile})"
        if pr.kind == "ok":
            out.append(
                Result(
                    name,
                    Outcome.PASS,
                    f"{head}: {pr.detail}, answered in {pr.took_s * 1000:.0f} ms",
                )
            )
            continue
        out.append(
            Result(
                name, Outcome.FAIL, f"{head}: {pr.detail}", _device_fix(bus, d, pr.kind, answering)
            )
        )
    echo = _echo_result(bus, getattr(link, "line_echoes", None))
    if echo is not None:
        out.append(echo)
    return out


def _echo_result(bus: RtuBus | TcpBus, line_echoes: bool | None) -> Result | None:
    """What the reads showed about the adapter's local echo, where it matters."""
    if not isinstance(bus, RtuBus) or line_echoes is None:
        return None
    name = f"echo on {bus.name}"
    if line_echoes and bus.echo == "off":
        return Result(
            name,
            Outcome.FAIL,
            f"{bus.port} echoes what it sends (local echo), but the bus has echo: off: a "
            "write (a detector reset) to a dead device would be confirmed by its own echo",
            f"set echo: auto (or on) on bus {bus.name}, or turn the adapter's echo off",
        )
    if not line_echoes and bus.echo == "on":
        return Result(
            name,
            Outcome.FAIL,
            f"{bus.port} does not echo, but the bus has echo: on: every single write (a "
            "detector reset) will fail with no reply, as its one reply looks like the echo",
            f"set echo: auto (or off) on bus {bus.name}",
        )
    if line_echoes:
        return Result(
            name,
            Outcome.PASS,
            f"{bus.port} echoes what it sends (local echo); the echo is discarded "
            f"(echo: {bus.echo})",
        )
    return None


async def _ask(link: Any, unit: int, pdu: bytes, timeout_s: float) -> bytes:
    # a Modbus TCP link closes itself after a timeout (the stream's framing is
    # unknown then): reopen it, as the bus worker does, before the next request
    if not link.is_open:
        await link.open()
    reply: bytes = await link.transact(unit, pdu, timeout_s)
    return reply


def _device_fix(bus: RtuBus | TcpBus, d: Any, kind: str, answering: int) -> str:
    line = _line_settings(bus)
    if kind == "refused":
        return (
            f"a device answers at id {d.device_id} but is not a {d.profile}: check the "
            f"profile (firegate scan --port {getattr(bus, 'port', '...')} suggests one) or "
            "whether another device has this address"
        )
    if kind == "port":
        return "the port failed during the check: check the adapter (dmesg) and replug it"
    if isinstance(bus, TcpBus):
        return (
            f"check the unit id {d.device_id} set on the device (or its Modbus TCP gateway) "
            f"and that {line} is that device"
        )
    if kind == "garbled":
        return (
            f"replies arrive but are corrupted: the device's baud rate or parity differs from "
            f"the config ({line}), or the bus lacks termination (120 ohm at both ends) or bias"
        )
    if answering:
        return (
            f"other devices on this bus answer: check that this one's address is set to "
            f"{d.device_id} (DIP switches or menu), that it has power, and its A/B wires at "
            "the device"
        )
    return (
        f"nothing on this bus answers: swap A and B at the gateway first (vendors disagree "
        f"on which is which), then check the devices' baud rate and parity match the config "
        f"({line}), their power, and termination"
    )


def _shown(point: Any, raw: int) -> str:
    """A point's value for people: the condition of a bit, a status word in hex,
    a measurement in its unit."""
    from drivers import codec

    if point.table.is_bit:
        active = bool(raw) == point.active_when
        cond = point.condition.value if point.condition is not None else "condition"
        return f"{int(bool(raw))} ({cond} {'ACTIVE' if active else 'clear'})"
    if point.flags:
        return f"0x{raw:04x}"
    value = codec.engineering(point, raw)
    return f"{value:g} {point.unit}".rstrip()


def _in_thread(fn: Callable[[], T], timeout_s: float) -> Awaitable[T]:
    """Run blocking ``fn`` in a daemon thread: a hung camera or library call
    cannot keep doctor from finishing (an executor thread would be joined at exit)."""
    fut: Future[T] = Future()

    def target() -> None:
        try:
            fut.set_result(fn())
        except BaseException as e:
            fut.set_exception(e)

    threading.Thread(target=target, daemon=True, name="doctor-probe").start()
    return asyncio.wait_for(asyncio.wrap_future(fut), timeout_s)


def _grab_frame(source: str) -> tuple[int, int]:
    import cv2  # lazy: only doctor and the vision parts need OpenCV

    src: str | int = source
    if source.startswith("usb:"):
        src = int(source[4:])
    cap = cv2.VideoCapture(src)
    try:
        if not cap.isOpened():
            raise OSError("cannot open the stream")
        for _ in range(3):  # the first read of some streams is empty
            ok, frame = cap.read()
            if ok and frame is not None:
                h, w = frame.shape[:2]
                return int(w), int(h)
        raise OSError("opened, but no frame decoded")
    finally:
        cap.release()


async def check_cameras(ctx: Context) -> list[Result]:
    assert ctx.site is not None
    cams = ctx.site.config.cameras
    if not cams:
        return [Result("cameras", Outcome.SKIP, "no cameras in the config")]
    return [await _check_camera(cam, max(ctx.timeout_s, 10.0)) for cam in cams]


async def _check_camera(cam: CameraConfig, timeout_s: float) -> Result:
    from agent.logs import redact_url

    name, src = f"camera {cam.name}", redact_url(cam.source)
    t0 = time.monotonic()
    try:
        w, h = await _in_thread(lambda: _grab_frame(cam.source), timeout_s)
    except TimeoutError:
        return Result(
            name,
            Outcome.FAIL,
            f"{src}: no frame within {timeout_s:g} s",
            "check the address, network and camera power",
        )
    except (OSError, ValueError) as e:
        return Result(
            name,
            Outcome.FAIL,
            f"{src}: {e}",
            "check the URL, user and password (open it in VLC from this network), or the device",
        )
    took = time.monotonic() - t0
    if cam.resolution is not None and tuple(cam.resolution) != (w, h):
        return Result(
            name,
            Outcome.FAIL,
            f"{src}: frames are {w}x{h}, the config says {cam.resolution[0]}x{cam.resolution[1]}",
            "set resolution to the stream's size (masks are in its pixels), or pick the matching stream",
        )
    return Result(name, Outcome.PASS, f"{src}: a {w}x{h} frame in {took:.1f} s")


def _run_model(path: Path) -> str:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [
            d if isinstance(d, int) and d > 0 else (1 if n == 0 else 320)
            for n, d in enumerate(i.shape)
        ]
        dtype = {"tensor(uint8)": np.uint8, "tensor(float16)": np.float16}.get(i.type, np.float32)
        feeds[i.name] = np.zeros(shape, dtype=dtype)
    t0 = time.perf_counter()
    outs = sess.run(None, feeds)
    ms = (time.perf_counter() - t0) * 1000
    shapes = ", ".join("x".join(map(str, getattr(o, "shape", ()))) for o in outs)
    return f"one zero frame in {ms:.0f} ms, outputs {shapes}"


async def check_model(ctx: Context) -> list[Result]:
    models = sorted(ctx.models_dir.glob("*.onnx")) if ctx.models_dir.is_dir() else []
    in_use: Path | None = None
    if ctx.site is not None and ctx.site.config.cameras:
        choice = ctx.site.config.vision.model
        in_use = ctx.models_dir / "firenet.onnx" if isinstance(choice, str) else choice
        if in_use not in models:
            models.append(in_use)
    if not models:
        return [
            Result("model", Outcome.SKIP, f"no model in {ctx.models_dir} (*.onnx) in this build")
        ]
    out = []
    for m in models:
        if m == in_use and not m.exists():
            out.append(
                Result(
                    f"model {m.name}",
                    Outcome.FAIL,
                    f"vision.model is {m}, which does not exist: the cameras cannot run",
                    "fix vision.model in the site config (standard or an .onnx path)",
                )
            )
            continue
        try:
            detail = await _in_thread(lambda m=m: _run_model(m), 60.0)  # type: ignore[misc]
        except Exception as e:
            if m.parent.resolve() == ctx.models_dir.resolve():  # shipped with firegate
                fix = "reinstall firegate (the shipped model file may be damaged)"
            else:  # the site's own model: reinstalling firegate would not touch it
                fix = (
                    f"{m} is not a model onnxruntime can run: copy or export it again, "
                    "or set vision.model: standard (the shipped model)"
                )
            out.append(Result(f"model {m.name}", Outcome.FAIL, f"{type(e).__name__}: {e}", fix))
            continue
        used = " (vision.model: in use)" if m == in_use else ""
        out.append(
            Result(
                f"model {m.name}",
                Outcome.PASS,
                f"{m.stat().st_size // 1024} KB loaded; {detail}{used}",
            )
        )
        if m == in_use and ctx.site is not None:
            out.append(await _camera_load(m, ctx.site.config.cameras))
    return out


CAMERA_LOAD_MAX = 0.5  # detection and decoding may take at most half of one core


def _time_detection(path: Path) -> float:
    """Median milliseconds of the agent's own per-frame path (preprocessing and one
    inference on one thread) for a 1280 x 720 frame, on this machine."""
    import numpy as np

    from vision.detector import Detector

    det = Detector.load(path, threads=1)
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    det.detect(frame)  # the first run allocates
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        det.detect(frame)
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2]


ASSUMED_SIZE = (1280, 720)  # a camera without ``resolution``: its main stream, likely
STREAM_FPS = 25.0  # a video stream's frames are all decoded (each depends on the last)
H264_OVER_MPEG4 = 2.0  # H.264 decodes roughly twice as slow as MPEG-4 part 2 (no encoder here)


def _time_decoding(size: tuple[int, ...]) -> tuple[float, float]:
    """Median milliseconds to decode one frame of ``size`` on this machine: as JPEG
    (an MJPEG camera, only the frames looked at are decoded) and as MPEG-4 part 2
    video with FFmpeg on one thread (the H.264 estimate is this times H264_OVER_MPEG4;
    no H.264 encoder ships with OpenCV to make a real clip)."""
    import tempfile

    import cv2
    import numpy as np

    w, h = size
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    ok, jpeg = cv2.imencode(".jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("OpenCV cannot encode JPEG")
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        times.append((time.perf_counter() - t0) * 1000)
    jpeg_ms = sorted(times)[len(times) // 2]
    frames = 12
    with tempfile.TemporaryDirectory() as tmp:
        clip = str(Path(tmp) / "probe.mp4")
        writer = cv2.VideoWriter(clip, cv2.VideoWriter.fourcc(*"mp4v"), STREAM_FPS, (w, h))
        for i in range(frames):  # a moving, noisy picture: motion vectors and residuals
            noise = rng.integers(-6, 7, base.shape, dtype=np.int16)
            moved = np.roll(base, 4 * i, axis=1).astype(np.int16) + noise
            writer.write(np.clip(moved, 0, 255).astype(np.uint8))
        writer.release()
        cap = cv2.VideoCapture(clip, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        times = []
        while True:
            t0 = time.perf_counter()
            if not cap.grab():
                break
            times.append((time.perf_counter() - t0) * 1000)
        cap.release()
    if len(times) < 3:
        raise RuntimeError("OpenCV's FFmpeg cannot decode its own MPEG-4 clip")
    video_ms = sorted(times[1:])[(len(times) - 1) // 2]  # the first frame opens the codec
    return jpeg_ms, video_ms


def _is_mjpeg(source: str) -> bool:
    return source.startswith(("http://", "https://"))


async def _camera_load(path: Path, cams: Sequence[CameraConfig]) -> Result:
    """Whether this gateway's CPU can decode and analyse the configured cameras."""
    from vision.camera import DECODE_PER_LOOK

    fps = sum(cam.detect_fps for cam in cams)
    cameras = len(cams)
    sizes = {tuple(cam.resolution or ASSUMED_SIZE) for cam in cams}
    try:
        ms = await _in_thread(lambda: _time_detection(path), 60.0)
        dec: dict[tuple[int, ...], tuple[float, float]] = {}
        for sz in sizes:
            dec[sz] = await _in_thread(functools.partial(_time_decoding, sz), 60.0)
    except Exception as e:
        return Result("camera load", Outcome.FAIL, f"{path.name}: {type(e).__name__}: {e}")
    share = ms * fps / 1000
    decode = 0.0
    for cam in cams:
        jpeg_ms, video_ms = dec[tuple(cam.resolution or ASSUMED_SIZE)]
        if _is_mjpeg(cam.source):
            decode += jpeg_ms * DECODE_PER_LOOK * cam.detect_fps / 1000
        else:
            decode += video_ms * H264_OVER_MPEG4 * STREAM_FPS / 1000
    biggest = max(sizes, key=lambda sz: sz[0] * sz[1])
    assumed = sum(1 for cam in cams if cam.resolution is None)
    detail = (
        f"{path.name}: {ms:.1f} ms per analysed 1280x720 frame here; {cameras} camera(s) at "
        f"{fps:g} frames/s in all: detection takes about {share * 100:.0f} % of one core, "
        f"decoding about {decode * 100:.0f} % more (video streams decoded whole at "
        f"{STREAM_FPS:g} fps as H.264, MJPEG only the frames looked at; largest stream "
        f"{biggest[0]}x{biggest[1]}"
        + (f", {assumed} camera(s) without resolution taken as 1280x720" if assumed else "")
        + ")"
    )
    total = share + decode
    if total <= CAMERA_LOAD_MAX:
        return Result("camera load", Outcome.PASS, detail)
    fixes = []
    if decode > 0.1 * CAMERA_LOAD_MAX:
        fixes.append(
            "use each camera's sub-stream (e.g. 640x360, set in its web page; its RTSP "
            "URL often ends in /102 or subtype=1) and give its resolution in the config"
        )
    if share > 0.1 * CAMERA_LOAD_MAX or not fixes:
        fixes.append("lower detect_fps (or analyse fewer cameras on this gateway)")
    return Result(
        "camera load",
        Outcome.FAIL,
        f"{detail}, over {CAMERA_LOAD_MAX * 100:.0f} % of one core: analyses would fall "
        "behind and cameras be reported as unchecked",
        "; ".join(fixes) + "; measure again with firegate doctor",
    )


async def check_broker(ctx: Context) -> list[Result]:
    assert ctx.site is not None
    c = ctx.site.config
    up = c.uplink
    if up is None:
        return [
            Result("broker", Outcome.SKIP, "no uplink in the config: decisions stay in the outbox")
        ]
    import aiomqtt

    from agent.events import iso
    from agent.mqtt import AckedClient, session_options
    from agent.uplink import read_password, tls_context_for, topics_for  # the agent's own way

    where = f"{'mqtts' if up.tls else 'mqtt'}://{up.host}:{up.effective_port}"
    try:
        password = read_password(up)
    except OSError as e:
        return [
            Result(
                "broker",
                Outcome.FAIL,
                f"cannot read password_file {up.password_file}: {e.strerror or e}",
                "make it readable by the service user (chgrp firegate FILE; chmod 640 FILE)",
            )
        ]
    try:
        tls = tls_context_for(up)
    except (OSError, ssl.SSLError) as e:
        return [
            Result(
                "broker",
                Outcome.FAIL,
                f"TLS files: {e}",
                "check uplink.tls ca_file/cert_file/key_file",
            )
        ]
    # Never the agent's own client id: the broker would drop the running agent's session.
    cid = (up.client_id or f"firegate-{c.site.site_id}-{c.site.gateway_id}") + "-doctor"
    client = AckedClient(
        up.host,
        up.effective_port,
        username=up.username,
        password=password,
        identifier=cid,
        tls_context=tls,
        timeout=ctx.timeout_s,
        keepalive=max(5, up.keepalive_s),
        **session_options(up.mqtt_version),
    )
    # A harmless message (not retained, nobody subscribes to it) under the root
    # where the agent publishes, so that an ACL refusal shows at commissioning.
    probe_topic = f"{topics_for(up, c).root}/doctor"
    probe = json.dumps(
        {"schema": 1, "test": "firegate doctor", "client_id": cid, "time": iso(ctx.now_wall())}
    )
    published: Result
    extra: list[Result] = []
    t0 = time.monotonic()
    try:
        # a guard over aiomqtt's own timeouts: timeout_s to connect, timeout_s for the PUBACK
        async with asyncio.timeout(2 * ctx.timeout_s + 1):
            async with client:
                connected_s = time.monotonic() - t0
                published = await _check_publish(client, probe_topic, probe, up, ctx.timeout_s)
                if up.downlink:
                    requests = f"{topics_for(up, c).root}/request/+"
                    extra = [await _check_subscribe(client, requests, up, ctx.timeout_s)]
    except TimeoutError:
        return [
            Result(
                "broker",
                Outcome.FAIL,
                f"{where}: no answer within {ctx.timeout_s:g} s",
                "check the host and port, and that the site's firewall lets this gateway out",
            )
        ]
    except aiomqtt.MqttError as e:
        return [_broker_failure(where, e, up.username)]
    auth = f" as {up.username}" if up.username else ""
    how = "TLS verified" if tls else "no TLS"
    return [
        Result(
            "broker",
            Outcome.PASS,
            f"{where}: connected{auth} ({how}, MQTT {up.mqtt_version}) in {connected_s:.2f} s",
        ),
        published,
        *extra,
    ]


async def _check_subscribe(
    client: AckedClient, topic: str, up: UplinkConfig, timeout_s: float
) -> Result:
    """Subscribe to the downlink's requests and say whether the broker allowed it."""
    import aiomqtt

    from agent.mqtt import SubscribeRefused

    try:
        await client.subscribe_checked(topic, qos=1, timeout_s=timeout_s)
    except SubscribeRefused as e:
        who = _who(up)
        return Result(
            "broker subscribe",
            Outcome.FAIL,
            f"the broker refused the downlink subscription to {topic} ({e.why})",
            f"ask the monitoring centre to give {who} subscribe (read) rights on {topic} "
            "(see docs/integrator.md), or set uplink.downlink: false",
        )
    except aiomqtt.MqttError as e:
        return Result(
            "broker subscribe",
            Outcome.FAIL,
            f"no SUBACK for {topic} within {timeout_s:g} s ({e})",
            "check the broker's load and limits with the monitoring centre",
        )
    return Result(
        "broker subscribe",
        Outcome.PASS,
        f"downlink subscription to {topic} allowed (the broker may still check read "
        "rights per message: mosquitto does)",
    )


async def _check_publish(
    client: AckedClient, topic: str, payload: str, up: UplinkConfig, timeout_s: float
) -> Result:
    """Publish ``payload`` once and say whether the broker accepted it (MQTT 5 only)."""
    import aiomqtt

    from agent.mqtt import PublishRefused

    if up.mqtt_version != "5":
        return Result(
            "broker publish",
            Outcome.SKIP,
            f"not checked: under MQTT {up.mqtt_version} a broker acknowledges a publish its "
            "ACL refused like a delivered one",
            "use uplink.mqtt_version: 5 if the broker supports it; otherwise have the centre "
            "confirm it receives this gateway's decisions",
        )
    try:
        code = await client.publish_acked(topic, payload, timeout_s=timeout_s)
    except PublishRefused as e:
        who = _who(up)
        return Result(
            "broker publish",
            Outcome.FAIL,
            f"the broker refused a test message on {topic} ({e.why})",
            f"ask the monitoring centre to give {who} publish rights on "
            f"{topic.rsplit('/', 1)[0]}/# (see docs/integrator.md); until then the agent "
            "keeps refused decisions in its outbox",
        )
    except aiomqtt.MqttError as e:
        return Result(
            "broker publish",
            Outcome.FAIL,
            f"no PUBACK for a test message on {topic} within {timeout_s:g} s ({e})",
            "check the broker's load and limits with the monitoring centre",
        )
    accepted = "accepted" if code == 0 else f"accepted (0x{code:02x}: nobody subscribes to it)"
    return Result("broker publish", Outcome.PASS, f"test message on {topic} {accepted}")


def _who(up: UplinkConfig) -> str:
    return f"user {up.username}" if up.username else "anonymous clients"


def _broker_failure(where: str, e: Exception, username: str | None) -> Result:
    text = str(e)
    rc = getattr(e, "rc", None)
    rc_value = getattr(rc, "value", rc)
    cause = e.__cause__ or e.__context__
    if rc_value in (4, 5, 134, 135) or "not authori" in text.lower() or "bad user" in text.lower():
        return Result(
            "broker",
            Outcome.FAIL,
            f"{where}: the broker refused the credentials ({text})",
            f"check uplink.username ({username or 'none given'}) and the password with the monitoring centre",
        )
    if isinstance(cause, ssl.SSLCertVerificationError) or "certificate" in text.lower():
        return Result(
            "broker",
            Outcome.FAIL,
            f"{where}: TLS certificate not accepted ({text})",
            "check uplink.tls.ca_file is the CA that signed the broker's certificate, the host "
            "name matches it, and the clock is right",
        )
    if isinstance(cause, socket.gaierror) or "name or service not known" in text.lower():
        return Result(
            "broker",
            Outcome.FAIL,
            f"{where}: cannot resolve the host ({text})",
            "check uplink.host and DNS",
        )
    if isinstance(cause, ConnectionRefusedError) or "refused" in text.lower():
        return Result(
            "broker",
            Outcome.FAIL,
            f"{where}: connection refused, nothing listens there ({text})",
            "check uplink.host and uplink.port (1883 plain, 8883 TLS) with the monitoring centre",
        )
    return Result(
        "broker", Outcome.FAIL, f"{where}: {text}", "check the uplink section and the network"
    )


async def check_centre(ctx: Context) -> list[Result]:
    """The GB/T 26875.3 monitoring centre answers a heartbeat (agent/gb26875/probe.py)."""
    from agent.gb26875.probe import check_centre as probe

    return await probe(ctx)


def check_storage(ctx: Context) -> list[Result]:
    assert ctx.site is not None
    s = ctx.site.config.storage
    d = s.state_dir
    if not d.is_dir():
        return [
            Result(
                "storage",
                Outcome.FAIL,
                f"state folder {d} does not exist",
                "run systemd/install.sh (it creates it), or mkdir it owned by the service user",
            )
        ]
    err = _write_probe(d)
    if err is not None:
        fix = {
            errno.EROFS: "the file system is read-only: remount it read-write or move storage.state_dir",
            errno.ENOSPC: "the disk is full: free space (journalctl --vacuum-size=100M, old files)",
            errno.EDQUOT: "the disk quota is used up: free space or raise the quota",
        }.get(err.errno or 0, "make the folder writable by the service user (install.sh sets it)")
        return [Result("storage", Outcome.FAIL, f"cannot write in {d}: {err.strerror or err}", fix)]
    if not may_access(d, ctx.identity, os.W_OK | os.X_OK):
        st = d.stat()
        return [
            Result(
                "storage",
                Outcome.FAIL,
                f"{d} ({_owner(st)}): {ctx.identity.description} may not write in it",
                f"chown the folder to the service user (chown firegate:firegate {d}; chmod 750 {d})",
            )
        ]
    vfs = os.statvfs(d)
    free_mb = vfs.f_bavail * vfs.f_frsize / 2**20
    # beside MQTT, the GB/T 26875.3 uplink has an outbox of its own with the same cap
    two = ctx.site is not None and ctx.site.config.uplink and ctx.site.config.gb26875
    cap_mb = s.outbox_max_mb * (2 if two else 1)
    need_mb = cap_mb + OUTBOX_RESERVE_MB
    used = sum(f.stat().st_size for f in d.iterdir() if f.is_file()) / 2**20
    if free_mb < need_mb:
        return [
            Result(
                "storage",
                Outcome.FAIL,
                f"{d}: {free_mb:.0f} MB free; the outbox may grow to {cap_mb:g} MB "
                f"(+{OUTBOX_RESERVE_MB:g} MB reserve)",
                "free disk space, or lower storage.outbox_max_mb to what the disk can hold",
            )
        ]
    if vfs.f_files and vfs.f_favail < MIN_FREE_INODES:
        return [
            Result(
                "storage",
                Outcome.FAIL,
                f"{d}: only {vfs.f_favail} free inodes",
                "delete small files on that disk",
            )
        ]
    return [
        Result(
            "storage",
            Outcome.PASS,
            f"{d}: writable, {free_mb:.0f} MB free for an outbox capped at {cap_mb:g} MB "
            f"({used:.1f} MB used now)",
        )
    ]


def _write_probe(d: Path) -> OSError | None:
    """Write and sync 4 KB in ``d``, then remove it: the honest test of a full or read-only disk."""
    probe = d / f".doctor-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        return e
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
        return None
    except OSError as e:
        return e
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()


def _newest_file(paths: list[Path]) -> tuple[float, Path] | None:
    best: tuple[float, Path] | None = None
    for p in paths:
        try:
            m = p.stat().st_mtime
        except OSError:
            continue
        if best is None or m > best[0]:
            best = (m, p)
    return best


def check_clock(ctx: Context) -> list[Result]:
    now = ctx.now_wall()
    when = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    fix_time = (
        "set the time: enable NTP (timedatectl set-ntp true) and let it reach a time server; "
        "check the board's RTC battery"
    )
    if datetime.fromtimestamp(now, tz=UTC).year < CLOCK_MIN_YEAR:
        return [Result("clock", Outcome.FAIL, f"the clock says {when}", fix_time)]
    files = [ctx.config_path, Path(__file__)]
    if ctx.site is not None:
        d = ctx.site.config.storage.state_dir
        if d.is_dir():
            files.extend(p for p in d.iterdir() if p.is_file())
    newest = _newest_file(files)
    if newest is not None and newest[0] > now + CLOCK_SLACK_S:
        ahead = newest[0] - now
        return [
            Result(
                "clock",
                Outcome.FAIL,
                f"the clock says {when}, but {newest[1]} was written {ahead / 3600:.1f} h later: "
                "the clock is behind",
                fix_time,
            )
        ]
    synced = Path("/run/systemd/timesync/synchronized").exists()
    how = "synchronised by systemd-timesyncd" if synced else "NTP state unknown (no timesyncd flag)"
    return [Result("clock", Outcome.PASS, f"{when}; not behind file times; {how}")]


def check_unit(ctx: Context) -> list[Result]:
    """The installed unit allows the configured serial ports and state folder
    (doctor runs outside its sandbox: what works here may be refused there)."""
    assert ctx.site is not None
    unit = ctx.unit_path
    if not unit.is_file():
        return [Result("unit", Outcome.SKIP, f"no systemd unit at {unit} (not installed here)")]
    try:
        view = unitcheck.read_unit(unit)
    except OSError as e:
        return [
            Result("unit", Outcome.FAIL, f"cannot read {unit}: {e.strerror or e}", "run with sudo")
        ]
    dropin = "sudo systemctl edit firegate (a drop-in), under [Service]"
    out: list[Result] = []
    state_dir = ctx.site.config.storage.state_dir
    why = unitcheck.state_dir_refusal(view, state_dir)
    if why:
        out.append(
            Result(
                "unit",
                Outcome.FAIL,
                f"the service could not write storage.state_dir: {why}",
                f"{dropin} add: ReadWritePaths={state_dir}; or use the default /var/lib/firegate",
            )
        )
    for bus in ctx.site.config.buses:
        if isinstance(bus, TcpBus):
            continue
        why = unitcheck.device_refusal(view, Path(bus.port))
        if why:
            out.append(
                Result(
                    f"unit {bus.name}",
                    Outcome.FAIL,
                    f"the service would be refused the port: {why}",
                    f"{dropin} add: DeviceAllow={Path(bus.port).resolve()} rw",
                )
            )
    if not out:
        files = ", ".join(str(f) for f in view.files)
        out.append(
            Result(
                "unit", Outcome.PASS, f"{files} allows the serial ports and writes to {state_dir}"
            )
        )
    return out


def _check_scenes(ctx: Context) -> list[Result]:
    from agent.commands.commission import check_scenes  # what each camera learned

    return check_scenes(ctx)


# ------------------------------------------------------------- the checklist

NEEDS_SITE = {
    "files",
    "serial",
    "devices",
    "cameras",
    "scenes",
    "broker",
    "centre",
    "storage",
    "unit",
}
CHECKS: list[tuple[str, Check]] = [
    ("config", check_config),
    ("service-user", check_service_user),
    ("files", check_files),
    ("serial", check_serial_ports),
    ("devices", check_devices),
    ("cameras", check_cameras),
    ("scenes", _check_scenes),
    ("model", check_model),
    ("broker", check_broker),
    ("centre", check_centre),
    ("storage", check_storage),
    ("unit", check_unit),
    ("clock", check_clock),
]


def register_check(
    name: str, check: Check, *, needs_site: bool = True, before: str | None = None
) -> None:
    """Add a check, or replace the one of the same name (e.g. "devices")."""
    if needs_site:
        NEEDS_SITE.add(name)
    for i, (n, _) in enumerate(CHECKS):
        if n == name:
            CHECKS[i] = (name, check)
            return
    idx = next((i for i, (n, _) in enumerate(CHECKS) if n == before), len(CHECKS))
    CHECKS.insert(idx, (name, check))


async def run_checks(
    ctx: Context,
    skip: frozenset[str] = frozenset(),
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Every check in order; ``on_result`` sees each result as soon as its check ends
    (doctor prints it then: a slow broker check must not leave a blank screen)."""
    results: list[Result] = []
    for name, check in CHECKS:
        done = len(results)
        if name in skip:
            results.append(Result(name, Outcome.SKIP, "skipped (--skip)"))
        elif name in NEEDS_SITE and ctx.site is None:
            results.append(Result(name, Outcome.SKIP, "needs a valid config"))
        else:
            try:
                got = check(ctx)
                results.extend(await got if inspect.isawaitable(got) else got)
            except Exception as e:  # a bug in one check must not hide the others
                results.append(
                    Result(
                        name,
                        Outcome.FAIL,
                        f"the check itself failed: {type(e).__name__}: {e}",
                        "please report this",
                    )
                )
        if on_result is not None:
            for r in results[done:]:
                on_result(r)
    return results


RESULT_WIDTH = 16  # the check column; a longer name (device <name>) just pushes its line


def format_result(r: Result, width: int = RESULT_WIDTH) -> str:
    """One result: its line, and the fix on a second line unless it passed."""
    line = f"{r.outcome.value}  {r.check:<{width}}  {r.detail}"
    if r.fix and r.outcome is not Outcome.PASS:
        line += f"\n{'':6}{'':<{width}}  -> {r.fix}"
    return line


def format_counts(results: list[Result]) -> str:
    counts = {o: sum(1 for r in results if r.outcome is o) for o in Outcome}
    return (
        f"{counts[Outcome.PASS]} passed, {counts[Outcome.FAIL]} failed, "
        f"{counts[Outcome.SKIP]} skipped"
    )


def format_results(results: list[Result]) -> str:
    width = max((len(r.check) for r in results), default=10)
    lines = [format_result(r, width) for r in results]
    lines.append(f"\n{format_counts(results)}")
    return "\n".join(lines)


# ------------------------------------------------------------------ command


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check an installation on site: config, ports, devices, cameras, model, broker, disk, clock",
        description="Check everything the agent needs, one line each (PASS/FAIL/SKIP with what "
        "to do). Exit 0 when nothing failed, 1 otherwise.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"site config (default: {DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--user",
        default="firegate",
        help="when run as root, judge permissions for this service user (default: firegate)",
    )
    p.add_argument(
        "--timeout-s", type=float, default=5.0, help="network timeout per check (default: 5)"
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="CHECK",
        help=f"skip a check ({', '.join(n for n, _ in CHECKS)}); may be repeated",
    )
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    p.add_argument(
        "--unit",
        type=Path,
        default=DEFAULT_UNIT,
        help=f"the installed systemd unit to check against (default: {DEFAULT_UNIT})",
    )
    p.set_defaults(func=run)


def identity_for(user: str) -> Identity:
    if os.geteuid() != 0:
        try:
            me = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            me = str(os.geteuid())
        return Identity(f"you ({me})")
    svc = service_identity(user)
    if svc is None:
        return Identity(f"root (service user {user} does not exist: install.sh creates it)")
    return svc


def run(args: argparse.Namespace) -> int:
    if args.timeout_s <= 0:
        print("--timeout-s must be positive", file=sys.stderr)
        return 2
    ctx = Context(
        config_path=args.config,
        timeout_s=args.timeout_s,
        identity=identity_for(args.user),
        service_user=args.user,
        unit_path=args.unit,
    )

    def show(r: Result) -> None:  # each line as its check ends, not all at the end
        if args.json:
            d: dict[str, Any] = asdict(r)
            d["outcome"] = r.outcome.value
            print(json.dumps(d), flush=True)
        else:
            print(format_result(r), flush=True)

    if not args.json:
        print(
            f"firegate doctor: {args.config}, permissions judged for {ctx.identity.description}",
            flush=True,
        )
    results = asyncio.run(run_checks(ctx, frozenset(args.skip), on_result=show))
    if not args.json:
        print(f"\n{format_counts(results)}")
    return 1 if any(r.outcome is Outcome.FAIL for r in results) else 0
