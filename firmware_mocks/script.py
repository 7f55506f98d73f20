"""A simulated bus described in a small YAML file, with values scripted over time.

Example (firmware_mocks/examples/rs485-demo.yaml)::

    bus: {type: rtu, baudrate: 9600, emulate_wire_time: true, link: /tmp/firegate-rs485-1}
    devices:
      - {id: 3, profile: calectro-ug3-o-mb-r}
      - {id: 1, profile: acrel-aim-r100, reply_delay_s: 0.01}
    script:
      - {at_s: 0, device: 1, point: setpoint_l1, value: 300}
      - {at_s: 0, device: 1, point: leakage_l1, value: 20, ramp_to: 450, over_s: 60}
      - {at_s: 30, device: 3, point: smoke_alarm, value: 1}
      - {at_s: 45, device: 5, fault: no_reply}

``bus.echo: true`` makes the simulated adapter echo every request back to the
master (local echo), even to an absent device.

Each step sets one point (engineering value; a bool point takes 0/1) at
``at_s`` seconds after start, optionally ramping linearly to ``ramp_to``
over ``over_s``; or injects a fault (``fault``, optional ``count``);
``clear_faults: true`` clears them. Profiles are names of built-in profiles
or paths (relative to the YAML file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from agent.model import Strict
from firmware_mocks.device import Fault, SimDevice, load_modbus_profile
from firmware_mocks.rtu import SimRtuBus
from firmware_mocks.tcp import SimTcpServer

STEP_S = 0.25  # ramp resolution


class BusSpec(Strict):
    type: Literal["rtu", "tcp"] = "rtu"
    baudrate: int = 9600
    emulate_wire_time: bool = True
    link: str | None = Field(default=None, description="stable path of the pty (rtu)")
    echo: bool = Field(
        default=False, description="the adapter echoes every byte the master sends (rtu)"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="tcp port, 0 = any free")


class DeviceSpec(Strict):
    id: int = Field(ge=1, le=247)
    profile: str
    reply_delay_s: float = Field(default=0.0, ge=0, le=5)


class Step(Strict):
    at_s: float = Field(ge=0)
    device: int = Field(ge=1, le=247)
    point: str | None = None
    value: float | None = None
    ramp_to: float | None = None
    over_s: float = Field(default=0.0, ge=0)
    fault: Fault | None = None
    count: int | None = Field(default=None, ge=1)
    clear_faults: bool = False

    @model_validator(mode="after")
    def _one_thing(self) -> Step:
        if (self.point is None) == (self.fault is None and not self.clear_faults):
            raise ValueError(
                "a step sets a `point` (with `value`), or injects a `fault`, or clears them"
            )
        if self.point is not None and self.value is None:
            raise ValueError("a point step needs a `value`")
        return self


class SimSpec(Strict):
    bus: BusSpec = Field(default_factory=BusSpec)
    devices: tuple[DeviceSpec, ...] = Field(min_length=1)
    script: tuple[Step, ...] = ()


def load_spec(path: Path) -> SimSpec:
    return SimSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def build_devices(spec: SimSpec, base: Path) -> list[SimDevice]:
    out = []
    for d in spec.devices:
        ref = d.profile if not d.profile.endswith((".yaml", ".yml")) else str(base / d.profile)
        out.append(SimDevice(d.id, load_modbus_profile(ref), reply_delay_s=d.reply_delay_s))
    return out


def value_at(step: Step, t: float) -> float:
    """The scripted value of a point step ``t`` seconds after start."""
    assert step.value is not None
    if step.ramp_to is None or step.over_s <= 0:
        return step.value
    frac = min(1.0, max(0.0, (t - step.at_s) / step.over_s))
    return step.value + (step.ramp_to - step.value) * frac


def play(
    spec: SimSpec, devices: dict[int, SimDevice], duration_s: float | None, say: object = print
) -> None:
    """Apply the script in real time until its end (or ``duration_s``)."""
    for s in spec.script:
        if s.device not in devices:
            raise ValueError(f"script step at {s.at_s} s names device {s.device}, not on the bus")
    t0 = time.monotonic()
    done: set[int] = set()
    end = max([s.at_s + s.over_s for s in spec.script], default=0.0)
    while True:
        t = time.monotonic() - t0
        for i, s in enumerate(spec.script):
            if i in done or t < s.at_s:
                continue
            dev = devices[s.device]
            if s.clear_faults:
                dev.clear_faults()
                done.add(i)
            elif s.fault is not None:
                dev.inject(s.fault, s.count)
                done.add(i)
            else:
                assert s.point is not None
                dev.set_point(s.point, value_at(s, t))
                if s.ramp_to is None or t >= s.at_s + s.over_s:
                    done.add(i)
                    if callable(say):
                        say(f"t={t:6.1f}s device {s.device} {s.point} = {value_at(s, t):g}")
        if duration_s is not None and t >= duration_s:
            return
        if duration_s is None and len(done) == len(spec.script) and t >= end:
            while True:  # script over: keep serving until interrupted
                time.sleep(3600)
        time.sleep(STEP_S)


def serve(path: Path, duration_s: float | None = None) -> None:
    spec = load_spec(path)
    devices = build_devices(spec, path.parent)
    if spec.bus.type == "rtu":
        with SimRtuBus(
            devices,
            baudrate=spec.bus.baudrate,
            emulate_wire_time=spec.bus.emulate_wire_time,
            link_path=spec.bus.link,
            echo=spec.bus.echo,
        ) as bus:
            print(f"pty: {bus.path} -> {bus.port.slave_name}", flush=True)
            play(spec, bus.devices, duration_s)
    else:
        with SimTcpServer(devices, host=spec.bus.host, port=spec.bus.port) as srv:
            print(f"tcp: {srv.host}:{srv.port}", flush=True)
            play(spec, srv.devices, duration_s)
