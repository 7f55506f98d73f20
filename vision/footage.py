"""Synthetic camera footage for the tests and bench/camera_day.py: a still photo
of a room filmed by a fixed camera (sensor noise), with the things that happen
in a room (lights switched off and on, sunlight, a person walking, a preset
move). Flames are not pasted in: the shipped model scores a frame by its whole
context, and a flame cut from a fire photo and pasted into a room scores about
0 (tried 2026-12-05; bench/indoor_set.py's "pasted" rows: 4 of 48 held-back
flames pasted into held-back rooms reach its fire threshold, and a model
trained on such composites, vision/composite.py, finds 8 of 48); fire footage
comes from real fire photos filmed whole.

Not used by the agent. Pure numpy/OpenCV; every function takes a seeded
``numpy.random.Generator`` so that a clip is the same on every run.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

FRAME_SIZE = (640, 480)


def load(path: Path, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: not a readable image")
    out: np.ndarray = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return out


def noisy(img: np.ndarray, rng: np.random.Generator, amp: int = 3) -> np.ndarray:
    """The picture with a camera sensor's noise (uniform, +-amp grey levels)."""
    n = rng.integers(-amp, amp + 1, img.shape, dtype=np.int16)
    out: np.ndarray = np.clip(img.astype(np.int16) + n, 0, 255).astype(np.uint8)
    return out


def light(img: np.ndarray, gain: float, warm: float = 0.0) -> np.ndarray:
    """Lighting change: ``gain`` scales brightness; ``warm`` > 0 adds yellow sunlight."""
    f = img.astype(np.float32) * gain
    if warm:
        f[..., 2] += 40 * warm
        f[..., 1] += 25 * warm
    out: np.ndarray = np.clip(f, 0, 255).astype(np.uint8)
    return out


def ir_night(img: np.ndarray) -> np.ndarray:
    """An IR night picture: grey, flat, bright centre."""
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    g = 0.6 * g + 50
    out: np.ndarray = cv2.cvtColor(np.clip(g, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return out


def person(img: np.ndarray, x_px: int, shade: int = 45) -> np.ndarray:
    """A dark figure (body and head) standing at ``x_px``."""
    out = img.copy()
    h = out.shape[0]
    cv2.rectangle(out, (x_px - 28, int(h * 0.45)), (x_px + 28, h), (shade, shade, shade + 10), -1)
    cv2.circle(out, (x_px, int(h * 0.38)), 24, (shade + 20, shade + 30, shade + 60), -1)
    return out


def preset(img: np.ndarray, dx_px: int, zoom: float = 1.0) -> np.ndarray:
    """The same room after a PTZ preset move (pan by ``dx_px``, zoom)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
    m[0, 2] += dx_px
    out: np.ndarray = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return out


def sun_patch(img: np.ndarray, x_px: int, width_px: int, warm: float = 1.0) -> np.ndarray:
    """Sunlight through a window: a warm, bright slanted band (``width_px`` wide,
    its foot at ``x_px``) with soft edges over the picture."""
    h, w = img.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :] - (np.arange(h, dtype=np.float32)[:, None] * 0.5)
    band = np.clip(1.0 - np.abs(xs - (x_px - 0.5 * h) - width_px / 2) / (width_px / 2), 0, 1)
    band = np.minimum(1.0, 2.0 * band)[..., None]  # flat top, soft sides
    f = img.astype(np.float32)
    lit = f * 1.35 + np.array([10.0, 35.0, 55.0], np.float32) * warm
    out: np.ndarray = np.clip(band * lit + (1.0 - band) * f, 0, 255).astype(np.uint8)
    return out


def door(img: np.ndarray, x_px: int, width_px: int, level: int = 230) -> np.ndarray:
    """A door opened onto a lit white corridor: a near-white upright panel (a pale
    floor-to-ceiling gradient, level ``level`` at its brightest) at ``x_px``."""
    h = img.shape[0]
    out = img.copy()
    top = int(h * 0.2)
    shade = np.linspace(level, level - 40, h - top, dtype=np.float32)[:, None, None]
    out[top:, x_px : x_px + width_px] = np.clip(shade, 0, 255).astype(np.uint8)
    return out


def zoom(img: np.ndarray, centre: tuple[float, float], factor: float) -> np.ndarray:
    """The view zoomed ``factor`` times towards ``centre`` (x, y): what is there grows."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(centre, 0.0, factor)
    out: np.ndarray = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return out


def flame_pixels(image: np.ndarray) -> np.ndarray:
    """Flame-coloured pixels (bool): bright red, well redder than blue."""
    b, r = image[..., 0].astype(np.int16), image[..., 2].astype(np.int16)
    out: np.ndarray = (r > 170) & (r > b + 50)
    return out


def flicker(image: np.ndarray, frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``frames`` frames in which the flame-coloured pixels flicker (brightness, a
    small upward lick), as flames do; sensor noise on every frame."""
    flame = flame_pixels(image)
    out = []
    for _ in range(frames):
        f = image.astype(np.float32)
        lick = np.roll(flame, -int(rng.integers(0, 6)), axis=0)
        f[lick] = f[lick] * rng.uniform(0.55, 1.0) + 40 * rng.uniform(0, 1)
        out.append(noisy(np.clip(f, 0, 255).astype(np.uint8), rng))
    return out


def drift(
    image: np.ndarray, frames: int, rng: np.random.Generator, frac: float = 0.02
) -> list[np.ndarray]:
    """``frames`` frames in which the grey, pale pixels (smoke's) drift: displaced by
    up to ``frac`` of the picture's width along a smooth field that rises a few
    pixels a frame, as smoke billows; everything else stays put; sensor noise on
    every frame."""
    h, w = image.shape[:2]
    px = frac * w
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    spread = image.max(axis=2).astype(np.int16) - image.min(axis=2)
    pale = ((spread < 40) & (grey > 90)).astype(np.float32)
    pale = cv2.GaussianBlur(pale, (0, 0), 3.0)[..., None]
    field = rng.uniform(-1.0, 1.0, (2, h // 24 + 2, w // 24 + 2)).astype(np.float32)
    big = [cv2.resize(f, (w, 2 * h), interpolation=cv2.INTER_CUBIC) for f in field]
    big = [np.concatenate([b, b], axis=0) for b in big]  # wraps as it rises
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = []
    for i in range(frames):
        top = (2 * h - (3 * i) % (2 * h)) % (2 * h)
        dx, dy = (b[top : top + h] for b in big)
        moved = cv2.remap(
            image, xs + px * dx, ys + px * dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        f = pale * moved.astype(np.float32) + (1.0 - pale) * image.astype(np.float32)
        out.append(noisy(np.clip(f, 0, 255).astype(np.uint8), rng))
    return out


def burning(image: np.ndarray, frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``frames`` frames of a fire photo filmed as it burns: its smoke-coloured
    pixels drift (``drift``); its flame-coloured pixels flicker, and so does the
    glow a night camera saturates to near white around a fire (grey above 200, no
    bluer than red): each patch of them (~1/20 of the picture) on its own, in
    brightness, with a small upward lick, as turbulent flames do (``flicker``
    flickers all of them as one); sensor noise on every frame."""
    h, w = image.shape[:2]
    b, r = image[..., 0].astype(np.int16), image[..., 2].astype(np.int16)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    flame = flame_pixels(image) | ((grey > 200) & (r >= b))
    cells = (max(2, w // 32), max(2, h // 32))
    out = []
    for moved in drift(image, frames, rng):
        f = moved.astype(np.float32)
        lick = np.roll(flame, -int(rng.integers(0, 6)), axis=0)
        gain = cv2.resize(rng.uniform(0.55, 1.0, cells[::-1]).astype(np.float32), (w, h))
        lift = cv2.resize(rng.uniform(0.0, 40.0, cells[::-1]).astype(np.float32), (w, h))
        f[lick] = f[lick] * gain[lick][:, None] + lift[lick][:, None]
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def write_clip(path: Path, frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    """An MJPG .avi (decoded again by OpenCV/FFmpeg in the camera). ``frames`` may
    be a generator, for a clip too long to hold in memory."""
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not vw.isOpened():
        raise OSError(f"{path}: OpenCV cannot write MJPG video here")
    vw.write(first)
    for f in it:
        vw.write(f)
    vw.release()
    return path


def camera_alone_alarms(
    observations: list[Any], camera: str, zone: str, end_mono: float, tick_s: float = 0.5
) -> list[Any]:
    """The FIRE_ALARM decisions the real confirmation engine (default zone policy)
    makes from one camera's observations alone, replayed in time order."""
    from agent.engine.core import Engine
    from agent.engine.site import SiteIndex
    from agent.events import DecisionType
    from agent.siteconfig.policy import ZonePolicy

    index = SiteIndex(
        policies={zone: ZonePolicy()},
        devices={},
        panels={},
        cameras={camera: zone},
        stats_interval_s=3600.0,
        nuisance_prone_count=3,
    )
    engine = Engine(index)
    alarms: list[Any] = []
    obs = sorted(observations, key=lambda o: o.mono)
    t = min([o.mono for o in obs], default=0.0)
    i = 0
    while t <= end_mono:
        while i < len(obs) and obs[i].mono <= t:
            out = engine.feed(obs[i], obs[i].mono, obs[i].wall)
            alarms += [d for d in out.decisions if d.type is DecisionType.FIRE_ALARM]
            i += 1
        out = engine.tick(t, t)
        alarms += [d for d in out.decisions if d.type is DecisionType.FIRE_ALARM]
        t += tick_s
    return alarms


# ------------------------------------------------------------------ varied days

DAY_EVENTS = (
    "lights_off",
    "dim",
    "brighter",
    "walk",
    "stand",
    "sunlight",
    "sun_patch",
    "ir_night",
    "preset",
    "door",
)


@dataclass(frozen=True)
class DayEvent:
    """One scene change of a camera-day: ``what`` (one of ``DAY_EVENTS``) held for
    ``seconds``, with its drawn parameters."""

    what: str
    seconds: float
    params: dict[str, float] = field(default_factory=dict)


def day_seed(room_name: str, day: int) -> int:
    """The seed of a room's ``day``-th varied day: the same on every run and
    machine, different for every (room, day)."""
    return zlib.crc32(f"{room_name}\0{day}".encode()) ^ (day * 0x9E3779B1 & 0xFFFFFFFF)


def quick_noisy(img: np.ndarray, rng: np.random.Generator, amp: int = 3) -> np.ndarray:
    """``noisy`` at a third of its cost (for long benches): uniform noise of +-amp
    grey levels from random bytes (each level 36 or 37 of 256 byte values)."""
    levels = 2 * amp + 1
    step = (np.arange(256) * levels) // 256 - amp
    up, down = np.maximum(step, 0).astype(np.uint8), np.maximum(-step, 0).astype(np.uint8)
    b = np.frombuffer(rng.bytes(img.size), np.uint8).reshape(img.shape)
    out: np.ndarray = cv2.subtract(cv2.add(img, cv2.LUT(b, up)), cv2.LUT(b, down))
    return out


def plan_day(rng: np.random.Generator, width_px: int = FRAME_SIZE[0]) -> list[DayEvent]:
    """A camera-day's scene changes in a drawn order, each with drawn timing and
    levels (5-7 different ones of ``DAY_EVENTS``, lights off and a walk always
    among them; after a lights-off, dimming, IR night, preset or door, the room
    comes back as commissioned more often than not), between the room as
    commissioned at the start and at the end. The hours in which nothing
    changes are left out."""
    kinds = [str(k) for k in rng.choice(DAY_EVENTS, size=int(rng.integers(4, 7)), replace=False)]
    kinds += [k for k in ("lights_off", "walk") if k not in kinds]
    rng.shuffle(kinds)
    w = width_px

    def u(lo: float, hi: float) -> float:
        return round(float(rng.uniform(lo, hi)), 3)

    events = [DayEvent("normal", u(8, 15))]
    for k in kinds:
        p: dict[str, float]
        if k == "lights_off":
            p = {"gain": u(0.05, 0.35)}
        elif k == "dim":
            p = {"gain": u(0.45, 0.8)}
        elif k == "brighter":
            p = {"gain": u(1.1, 1.4)}
        elif k == "walk":
            x0, x1 = (30.0, w - 30.0) if rng.random() < 0.5 else (w - 30.0, 30.0)
            p = {"x0": x0, "x1": x1, "shade": u(25, 110)}
        elif k == "stand":
            p = {"x": u(40, w - 40), "shade": u(25, 110), "sway": u(0, 6)}
        elif k == "sunlight":
            p = {"gain": u(1.0, 1.3), "warm": u(0.3, 1.2)}
        elif k == "sun_patch":
            p = {"x0": u(0, w * 0.8), "drift": u(-60, 60), "width": u(60, 200), "warm": u(0.4, 1.2)}
        elif k == "ir_night":
            p = {}
        elif k == "preset":
            p = {"dx": u(-90, 90), "zoom": u(1.0, 1.35)}
        else:  # door
            p = {"x": u(0, w * 0.8), "width": u(50, 120), "level": u(200, 250)}
        events.append(DayEvent(k, u(8, 25), p))
        if k in ("lights_off", "dim", "ir_night", "preset", "door") and rng.random() < 0.6:
            events.append(DayEvent("normal", u(5, 20)))
    if events[-1].what != "normal":
        events.append(DayEvent("normal", u(10, 25)))
    return events


def _picture(room: np.ndarray, ev: DayEvent, i: int, n: int, fps: float) -> np.ndarray:
    """Frame ``i`` of ``n`` of a day event, before noise."""
    p = ev.params
    t = i / max(1, n - 1)
    w = room.shape[1]
    if ev.what == "normal":
        return room
    if ev.what in ("lights_off", "dim", "brighter"):
        return light(room, p["gain"])
    if ev.what == "walk":
        return person(room, int(p["x0"] + t * (p["x1"] - p["x0"])), int(p["shade"]))
    if ev.what == "stand":
        sway = p["sway"] * np.sin(2 * np.pi * i / (2 * fps))
        return person(room, int(p["x"] + sway), int(p["shade"]))
    if ev.what == "sunlight":
        return light(room, p["gain"], warm=p["warm"])
    if ev.what == "sun_patch":
        return sun_patch(room, int(p["x0"] + t * p["drift"]), int(p["width"]), p["warm"])
    if ev.what == "ir_night":
        return ir_night(room)
    if ev.what == "preset":
        return preset(room, int(p["dx"]), p["zoom"])
    if ev.what == "door":
        x = int(min(p["x"], w - p["width"]))
        return door(room, x, int(p["width"]), int(p["level"]))
    raise ValueError(f"unknown day event {ev.what!r}")


# events whose picture is the same on every frame (drawn once, then noise only)
_STILL = frozenset(
    {"normal", "lights_off", "dim", "brighter", "sunlight", "ir_night", "preset", "door"}
)


def render_day(
    room: np.ndarray, events: list[DayEvent], rng: np.random.Generator, fps: float
) -> list[np.ndarray]:
    """The frames of a planned day at ``fps``, sensor noise on every frame (its
    amplitude drawn once for the day: 2-5 grey levels)."""
    amp = int(rng.integers(2, 6))
    out: list[np.ndarray] = []
    for ev in events:
        n = max(1, round(ev.seconds * fps))
        still = _picture(room, ev, 0, n, fps) if ev.what in _STILL else None
        for i in range(n):
            img = still if still is not None else _picture(room, ev, i, n, fps)
            out.append(quick_noisy(img, rng, amp))
    return out


def varied_day(room: np.ndarray, seed: int, fps: float) -> tuple[list[DayEvent], list[np.ndarray]]:
    """A seeded camera-day of ``room``: its plan (``plan_day``) and frames
    (``render_day``); the same seed gives the same day."""
    rng = np.random.default_rng(seed)
    events = plan_day(rng, room.shape[1])
    return events, render_day(room, events, rng, fps)
