"""The varied camera-days of bench/camera_day.py (``--days-per-room``): every
(room, day) is its own day, the same on every run; and the bench's bound and
event lookup (the figures themselves are the bench's)."""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from vision import footage as ft
from vision.indoor import ORDINARY_INDOOR

ROOT = Path(__file__).resolve().parents[2]
FPS = 2.0


def room() -> np.ndarray:
    """A small textured room (the footage functions take any size a person fits in)."""
    rng = np.random.default_rng(5)
    img = rng.integers(40, 220, (60, 160, 3), dtype=np.uint8)
    img[:10] = 254  # a white ceiling: clips under noise
    img[-6:] = 1  # a black floor: clips under noise
    return img


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("camera_day", ROOT / "bench/camera_day.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("camera_day", mod)  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_same_seed_gives_the_same_day() -> None:
    seed = ft.day_seed("office.jpg", 3)
    plan_a, frames_a = ft.varied_day(room(), seed, FPS)
    plan_b, frames_b = ft.varied_day(room(), seed, FPS)
    assert plan_a == plan_b
    assert len(frames_a) == len(frames_b)
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))


def test_days_of_one_room_differ() -> None:
    plans = [ft.varied_day(room(), ft.day_seed("office.jpg", k), FPS)[0] for k in range(5)]
    orders = {tuple(e.what for e in p) for p in plans}
    assert len(orders) == 5, "five days of a room: five different orders of scene changes"
    a, b = (ft.varied_day(room(), ft.day_seed("office.jpg", k), FPS)[1] for k in (0, 1))
    n = min(len(a), len(b))
    assert not all(np.array_equal(x, y) for x, y in zip(a[:n], b[:n], strict=True))


def test_every_room_and_day_has_its_own_seed() -> None:
    keys = list(itertools.product(sorted(ORDINARY_INDOOR), range(10)))
    seeds = {ft.day_seed(name, k) for name, k in keys}
    assert len(seeds) == len(keys)


def test_a_plan_is_a_day_of_known_changes() -> None:
    for k in range(40):
        plan = ft.plan_day(np.random.default_rng(ft.day_seed("room.jpg", k)), 160)
        kinds = [e.what for e in plan]
        assert kinds[0] == "normal" and kinds[-1] == "normal"
        assert {"lights_off", "walk"} <= set(kinds)
        assert set(kinds) <= {*ft.DAY_EVENTS, "normal"}
        changes = [k for k in kinds if k != "normal"]
        assert len(changes) == len(set(changes)), "each change at most once a day"
        assert all(5 <= e.seconds <= 25 for e in plan)
    frames = ft.varied_day(room(), ft.day_seed("room.jpg", 0), FPS)[1]
    assert all(f.shape == room().shape and f.dtype == np.uint8 for f in frames)


@pytest.mark.parametrize("amp", [2, 3, 5])
def test_quick_noise_is_sensor_noise_within_its_amplitude(amp: int) -> None:
    img = room()
    rng = np.random.default_rng(1)
    diffs = np.stack([ft.quick_noisy(img, rng, amp).astype(np.int16) - img for _ in range(200)])
    assert diffs.min() == -amp and diffs.max() == amp
    mid = (img > amp) & (img < 255 - amp)
    assert abs(float(diffs[:, mid].mean())) < 0.05
    # at the ends it clips as noisy() does: 254 becomes 255 whenever the noise is
    # positive (amp of 2 amp + 1 levels), 1 becomes 0 whenever it is negative
    outs = img[None] + diffs
    share = amp / (2 * amp + 1)
    assert float((outs[:, img == 254] == 255).mean()) == pytest.approx(share, abs=0.03)
    assert float((outs[:, img == 1] == 0).mean()) == pytest.approx(share, abs=0.03)


def test_poisson_upper_bound_and_event_lookup() -> None:
    b = bench()
    assert b.poisson_upper(0) == pytest.approx(-math.log(0.05), abs=1e-6)  # 2.996
    assert b.poisson_upper(1) == pytest.approx(4.7439, abs=1e-3)
    assert b.poisson_upper(3) == pytest.approx(7.7537, abs=1e-3)
    plan = [ft.DayEvent("normal", 10.0), ft.DayEvent("door", 8.0), ft.DayEvent("normal", 5.0)]
    assert b.event_at(plan, 3.0) == "normal@0s"
    assert b.event_at(plan, 12.5) == "door@10s"
    assert b.event_at(plan, 30.0) == "after the end"


def test_a_long_night_is_ir_with_a_walk_in_every_stretch_and_bins_its_confirmations() -> None:
    """``--night-min``: the room as commissioned, then IR night (no colour) with a
    person crossing in the last seconds of every stretch; confirmations are
    counted by the stretch of the night they came in."""
    b = bench()
    img = np.random.default_rng(2).integers(60, 200, (480, 640, 3), dtype=np.uint8)
    frames = list(b.night_frames(img, 4.0, seed=1))
    lead = int(b.NIGHT_LEAD_S * b.FPS)
    assert len(frames) == lead + int(4 * 60 * b.FPS)
    night = frames[lead:]
    # grey: IR has no colour (its channels differ by sensor noise only; the room's by ~40)
    assert all(f.std(axis=2).mean() < 3 for f in night[::50]) and img.std(axis=2).mean() > 20
    every, walk = int(b.NIGHT_WALK_EVERY_S * b.FPS), int(b.NIGHT_WALK_S * b.FPS)

    def columns(a: np.ndarray, b: np.ndarray) -> float:
        """The largest mean change of one column of the picture."""
        return float(np.abs(a.astype(int) - b.astype(int)).mean(axis=(0, 2)).max())

    assert columns(night[0], night[1]) < 5  # sensor noise only
    for k in range(2):  # each 2-minute stretch ends with a walk across
        assert columns(night[(k + 1) * every - walk // 2], night[k * every]) > 20

    class Start:
        def __init__(self, t: float) -> None:
            self.mono, self.active, self.snapshot_jpeg = t, True, b"jpeg"

    run = b.Run(started_mono=100.0)
    run.observations = [Start(100.0 + t) for t in (5.0, 12.0, 135.0, 250.0, 900.0)]
    run.detections = lambda: run.observations  # type: ignore[method-assign]
    # night time = time - the 10 s lead: -5 s is before the night (not counted);
    # 2 s the first stretch; 125 s the second; 240 s and 890 s (a clip's tail past
    # the 4-minute night) count in the last
    assert b.night_stretches(run, 4.0) == [1, 3]
