"""The demo's world: the firmware mocks that follow the timeline, a private
mosquitto, and what comes back upstream (broker or outbox, nuisance log)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.events import Condition
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import PanelBus, RtuBus
from drivers.profile import DataType, ModbusProfile, Point
from firmware_mocks.device import Fault, SimDevice
from firmware_mocks.panel import SimPanel
from firmware_mocks.rtu import SimRtuBus
from firmware_mocks.tcp import SimTcpServer
from firmware_mocks.timeline import Timeline


class DemoError(Exception):
    """The demo cannot run here (a port, a file, the config); the message says why."""


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

        from agent.mqtt import reraise_if_cancelled

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
            reraise_if_cancelled()  # stopped while connecting: not a subscriber error
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
