"""A fire alarm panel's printer/CRT port: event lines in, state changes out.

``parse_line`` is the pure part (a line and a profile -> what it says);
``PanelReader`` is the Part that reads the serial port.

Every pattern of the profile that matches a line applies (so a panel-wide
RESET can clear both alarms and pre-alarms with two patterns). A point is
named ``L<loop>/A<address>`` with the numbers as integers (``A023`` ->
``A23``); its zone comes from the bus's ``points`` map ("1/23"), else the
bus zone. A line without loop and address concerns the panel itself (point "").

State changes are edges only: a panel that re-prints FIRE for the same point
produces one event. Problems with the link itself (port gone, silence longer
than ``silence_fault_s``) are a FAULT of point ``link`` of the panel.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from agent.clock import Clock
from agent.events import Condition, DeviceKind, Observation, StateChange
from agent.siteconfig import LoadedSite
from agent.siteconfig.models import PanelBus
from drivers.frames import PortError
from drivers.link import SerialLine
from drivers.profile import LinePattern, PanelProfile

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 512  # longer without a line end: noise, discarded
MAX_IDLE_WAIT_S = 2.0
REOPEN_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
LINK_POINT = "link"


@dataclass(frozen=True, slots=True)
class PanelEvent:
    """What one matching pattern says about one line."""

    pattern: LinePattern
    point: str  # "1/23" (loop/address, as the site config's panel points), or "" for the panel
    loop: int | None
    address: int | None
    text: str


def point_name(loop: int | None, address: int | None) -> str:
    if loop is None and address is None:
        return ""
    if address is None:
        return f"L{loop}"
    if loop is None:
        return f"A{address}"
    return f"{loop}/{address}"  # the form of the site config's `points` keys


def parse_line(profile: PanelProfile, line: str) -> list[PanelEvent]:
    """Every event a line means under ``profile`` (empty when no pattern matches)."""
    out: list[PanelEvent] = []
    for pat in profile.patterns:
        m = pat.compiled.search(line)
        if m is None:
            continue
        groups = m.groupdict()
        loop = int(groups["loop"]) if groups.get("loop") else None
        address = int(groups["address"]) if groups.get("address") else None
        text = (groups.get("text") or "").strip()
        out.append(PanelEvent(pat, point_name(loop, address), loop, address, text))
    return out


class PanelReader:
    """The Part reading one panel's event port. ``name`` is the panel's bus name."""

    def __init__(
        self, bus: PanelBus, site: LoadedSite, out: asyncio.Queue[Observation], clock: Clock
    ) -> None:
        self.name = bus.name
        self.bus = bus
        self.profile = site.panel_profile(bus.profile)
        self.out = out
        self.clock = clock
        self.line = SerialLine(bus.port, bus.baudrate, bus.parity, bus.stopbits, bus.bytesize)
        self.progress_mono = clock.monotonic()
        self.point_zones = {
            tuple(int(n) for n in key.split("/")): zone for key, zone in bus.points.items()
        }
        self.states: dict[tuple[str, Condition], bool] = {}
        self.kinds: dict[str, DeviceKind] = {}
        self.lines = 0
        self.unmatched = 0
        self.discarded_bytes = 0
        self._port_fault = ""
        self._silent = False
        self._link_fault_reported = False
        self._reopen_failures = 0
        self._last_data_mono = clock.monotonic()

    async def run(self) -> None:
        pending = bytearray()
        try:
            while True:
                now = self.clock.monotonic()
                self.progress_mono = now
                if not self.line.is_open:
                    if not await self._reopen():
                        continue
                    pending.clear()
                await self.line.wait_data(MAX_IDLE_WAIT_S / self.clock.speed)
                if self.line.lost and not self.line.is_open:
                    self._port_fault = self.line.lost
                    await self._link_state()
                    continue
                if self.line.buf:
                    wall, mono = self.clock.wall(), self.clock.monotonic()
                    pending += self.line.buf
                    self.line.buf.clear()
                    self._last_data_mono = mono
                    if self._silent:
                        self._silent = False
                        await self._link_state()
                    await self._lines(pending, wall, mono)
                await self._check_silence()
        finally:
            self.line.close()

    async def _reopen(self) -> bool:
        try:
            self.line.open()
        except PortError as e:
            delay = REOPEN_BACKOFF_S[min(self._reopen_failures, len(REOPEN_BACKOFF_S) - 1)]
            self._reopen_failures += 1
            if not self._port_fault:
                log.warning("panel %s: %s; retrying with backoff", self.name, e)
            self._port_fault = str(e)
            await self._link_state()
            # sleep in slices so progress_mono keeps moving during a long backoff
            until = self.clock.monotonic() + delay
            while (left := until - self.clock.monotonic()) > 0:
                await self.clock.sleep(min(left, MAX_IDLE_WAIT_S))
                self.progress_mono = self.clock.monotonic()
            return False
        self._reopen_failures = 0
        self._last_data_mono = self.clock.monotonic()
        if self._port_fault:
            log.info("panel %s: %s open again", self.name, self.bus.port)
            self._port_fault = ""
            await self._link_state()
        return True

    async def _check_silence(self) -> None:
        limit = self.bus.silence_fault_s
        if limit is None or self._silent or not self.line.is_open:
            return
        if self.clock.monotonic() - self._last_data_mono > limit:
            self._silent = True
            await self._link_state()

    async def _link_state(self) -> None:
        active = bool(self._port_fault) or self._silent
        if active == self._link_fault_reported:
            return
        self._link_fault_reported = active
        if self._port_fault:
            detail = f"panel port: {self._port_fault}"
        elif self._silent:
            detail = f"panel printed nothing for {self.bus.silence_fault_s:g} s"
        else:
            detail = "panel link restored"
        await self.out.put(
            StateChange(
                source=self.name,
                zone=self.bus.zone,
                wall=self.clock.wall(),
                mono=self.clock.monotonic(),
                point=LINK_POINT,
                kind=DeviceKind.PANEL,
                condition=Condition.FAULT,
                active=active,
                detail=detail,
            )
        )

    async def _lines(self, pending: bytearray, wall: float, mono: float) -> None:
        while True:
            cut = [i for i in (pending.find(b"\n"), pending.find(b"\r")) if i >= 0]
            if not cut:
                break
            i = min(cut)
            raw = bytes(pending[:i])
            del pending[: i + 1]
            if raw.strip():
                await self._line(raw.decode(self.profile.encoding, errors="replace"), wall, mono)
        if len(pending) > MAX_LINE_BYTES:
            self.discarded_bytes += len(pending)
            log.warning("panel %s: %d bytes without a line end discarded", self.name, len(pending))
            pending.clear()

    async def _line(self, line: str, wall: float, mono: float) -> None:
        self.lines += 1
        line = "".join(ch if ch.isprintable() else " " for ch in line).strip()
        events = parse_line(self.profile, line)
        if not events:
            self.unmatched += 1
            log.debug("panel %s: line not understood: %r", self.name, line)
            return
        for ev in events:
            pat = ev.pattern
            if pat.all_points:
                targets = [
                    p
                    for (p, c), on in self.states.items()
                    if c is pat.condition and on != pat.active
                ]
                if not targets and pat.active:
                    targets = [""]
            else:
                targets = [ev.point]
                if ev.point:
                    self.kinds.setdefault(ev.point, pat.device_kind)
            for point in targets:
                key = (point, pat.condition)
                if self.states.get(key, False) == pat.active:
                    continue
                self.states[key] = pat.active
                await self.out.put(
                    StateChange(
                        source=self.name,
                        zone=self._zone(ev.loop, ev.address)
                        if point == ev.point
                        else self._zone_of(point),
                        wall=wall,
                        mono=mono,
                        point=point,
                        kind=pat.device_kind
                        if point == ev.point
                        else self.kinds.get(point, DeviceKind.PANEL),
                        condition=pat.condition,
                        active=pat.active,
                        detail=f"panel: {line}",
                    )
                )

    def _zone(self, loop: int | None, address: int | None) -> str:
        if loop is not None and address is not None:
            return self.point_zones.get((loop, address), self.bus.zone)
        return self.bus.zone

    def _zone_of(self, point: str) -> str:
        loop, sep, addr = point.partition("/")
        if sep and loop.isdigit() and addr.isdigit():
            return self._zone(int(loop), int(addr))
        return self.bus.zone

    def status(self) -> dict[str, Any]:
        return {
            "panel": self.name,
            "port": self.bus.port,
            "open": self.line.is_open,
            "port_fault": self._port_fault,
            "silent": self._silent,
            "lines": self.lines,
            "unmatched": self.unmatched,
            "active": sorted(f"{p or '-'}:{c.value}" for (p, c), on in self.states.items() if on),
        }
