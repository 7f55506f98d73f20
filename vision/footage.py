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


def zoom(img: np.ndarray, centre: tuple[float, float], factor: float) -> np.ndarray:
    """The view zoomed ``factor`` times towards ``centre`` (x, y): what is there grows."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(centre, 0.0, factor)
    out: np.ndarray = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return out


def flicker(image: np.ndarray, frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``frames`` frames in which the flame-coloured pixels flicker (brightness, a
    small upward lick), as flames do; sensor noise on every frame."""
    b, r = image[..., 0].astype(np.int16), image[..., 2].astype(np.int16)
    flame = (r > 170) & (r > b + 50)
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
    flame = ((r > 170) & (r > b + 50)) | ((grey > 200) & (r >= b))
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


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An MJPG .avi (decoded again by OpenCV/FFmpeg in the camera)."""
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not vw.isOpened():
        raise OSError(f"{path}: OpenCV cannot write MJPG video here")
    for f in frames:
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
