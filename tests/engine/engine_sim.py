"""Shared helpers for the engine's unit tests: a tiny site and a time driver."""

from __future__ import annotations

from typing import Any

from agent.engine import Engine, EngineOutput
from agent.engine.site import DeviceInfo, PanelInfo, SiteIndex
from agent.events import (
    CommandResult,
    Condition,
    Decision,
    DecisionType,
    DeviceKind,
    Quantity,
    Reading,
    Region,
    StateChange,
    VideoClass,
    VideoDetection,
)
from agent.siteconfig import ZonePolicy

WALL0 = 1_700_000_000.0


def site(stats_interval_s: float = 3600.0, **policy: Any) -> SiteIndex:
    """Zone z: resettable s1, plain s2, heat h1 (with temperature), camera cam.
    Zone z2: plain n1, residual-current rc, camera cam2, panel point 1/24."""
    pol = ZonePolicy(**policy)
    return SiteIndex(
        policies={"z": pol, "z2": pol},
        devices={
            "s1": DeviceInfo("s1", "z", DeviceKind.SMOKE, True, 1.0),
            "s2": DeviceInfo("s2", "z", DeviceKind.SMOKE, False, 1.0),
            "h1": DeviceInfo("h1", "z", DeviceKind.HEAT, False, 1.0),
            "n1": DeviceInfo("n1", "z2", DeviceKind.SMOKE, False, 1.0),
            "rc": DeviceInfo("rc", "z2", DeviceKind.RESIDUAL_CURRENT, False, 2.0),
        },
        panels={"panel": PanelInfo("panel", "z", {"1/24": "z2"})},
        cameras={"cam": "z", "cam2": "z2"},
        stats_interval_s=stats_interval_s,
        nuisance_prone_count=2,
    )


class Sim:
    """Drives an engine in simulated time, ticking every ``tick_s``."""

    def __init__(self, index: SiteIndex | None = None, tick_s: float = 0.5) -> None:
        self.index = index or site()
        self.engine = Engine(self.index)
        self.tick_s = tick_s
        self.t = 0.0
        self.next_tick = 0.0
        self.decisions: list[tuple[float, Decision]] = []
        self.out = EngineOutput()

    def _take(self, out: EngineOutput) -> EngineOutput:
        self.out.extend(out)
        self.decisions.extend((self.t, d) for d in out.decisions)
        return out

    def until(self, t: float) -> None:
        while self.next_tick <= t:
            self.t = self.next_tick
            self._take(self.engine.tick(self.t, WALL0 + self.t))
            self.next_tick += self.tick_s
        self.t = t

    def feed(self, obs: Any) -> EngineOutput:
        self.until(obs.mono)
        return self._take(self.engine.feed(obs, obs.mono, obs.wall))

    # ----------------------------------------------------------- observations

    def state(
        self,
        t: float,
        source: str,
        condition: Condition,
        active: bool = True,
        *,
        point: str = "",
        kind: DeviceKind | None = None,
        zone: str = "",
        detail: str = "",
    ) -> EngineOutput:
        dev = self.index.devices.get(source)
        if kind is None:
            kind = dev.kind if dev else DeviceKind.CAMERA
        return self.feed(
            StateChange(
                source=source,
                zone=zone or (dev.zone if dev else "z"),
                wall=WALL0 + t,
                mono=t,
                point=point,
                kind=kind,
                condition=condition,
                active=active,
                detail=detail,
            )
        )

    def alarm(self, t: float, source: str, active: bool = True) -> EngineOutput:
        return self.state(t, source, Condition.ALARM, active)

    def reading(
        self,
        t: float,
        source: str,
        value: float,
        quantity: Quantity = Quantity.RESIDUAL_CURRENT_MA,
        *,
        point: str = "",
        setpoint: float | None = None,
    ) -> EngineOutput:
        dev = self.index.devices[source]
        return self.feed(
            Reading(
                source=source,
                zone=dev.zone,
                wall=WALL0 + t,
                mono=t,
                point=point,
                quantity=quantity,
                value=value,
                unit="",
                setpoint=setpoint,
            )
        )

    def video(
        self,
        t: float,
        cam: str = "cam",
        *,
        area: int = 2000,
        active: bool = True,
        confirmed: bool = True,
        snapshot: bytes | None = b"jpeg",
        cls: VideoClass = VideoClass.SMOKE,
    ) -> EngineOutput:
        side = max(1, int(area**0.5))
        return self.feed(
            VideoDetection(
                source=cam,
                zone=self.index.cameras.get(cam, "z"),
                wall=WALL0 + t,
                mono=t,
                cls=cls,
                score=0.8,
                confirmed=confirmed,
                active=active,
                regions=(Region(x=0, y=0, w=side, h=area // side, score=0.8, cls=cls),)
                if active
                else (),
                snapshot_jpeg=snapshot if active else None,
            )
        )

    def result(self, t: float, command_id: str, ok: bool, target: str = "s1") -> EngineOutput:
        return self.feed(
            CommandResult(
                source=target,
                zone="z",
                wall=WALL0 + t,
                mono=t,
                command_id=command_id,
                action="reset",
                ok=ok,
            )
        )

    # -------------------------------------------------------------- queries

    def of(self, type_: DecisionType, zone: str | None = None) -> list[tuple[float, Decision]]:
        return [
            (t, d)
            for t, d in self.decisions
            if d.type is type_ and (zone is None or d.zone == zone)
        ]

    def fires(self, zone: str | None = None) -> list[tuple[float, Decision]]:
        return self.of(DecisionType.FIRE_ALARM, zone)
