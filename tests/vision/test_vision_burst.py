"""A burst of frames on a candidate (CameraConfig.burst_s): through the real
CameraWorker, real OpenCV decoding of MJPG clips and the shipped model.

A white room the model calls smoke (0.79, tests/fixtures/vision/ATTRIBUTION.md)
filmed by a fixed camera is the same picture frame after frame, sensor noise
aside; when the lights come on, the change gate opens and the vote confirms
smoke, which the steady rule ends only after ``steady_end_s`` (15 s). Over a
1 s burst at the camera's own rate nothing in it moves: never confirmed. A
flickering flame and drifting smoke move within the burst: confirmed as fast
as without bursts."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.events import VideoClass
from tests.vision.test_vision_scene import (
    FIXTURES,
    FPS,
    camera,
    commissioned,
    detections,
    flicker,
    lights_on,
    run_clip,
    started_after_s,
    still,
)
from vision import footage as ft
from vision.change import burst_movement
from vision.detector import Detector

OFF = {"burst_s": 0.0}  # the camera without bursts (the steady rule alone)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.load()


def held_s(seen: list, cls: VideoClass) -> float:
    """How long the first detection of ``cls`` was held (START to END; to the
    last observation when it never ended)."""
    mine = detections(seen, cls)
    start = next((o.mono for o in mine if o.active), None)
    if start is None:
        return 0.0
    end = next((o.mono for o in mine if not o.active and o.mono >= start), None)
    return (end if end is not None else max(o.mono for o in seen)) - start


async def test_still_white_wall_is_not_confirmed(tmp_path: Path, detector: Detector) -> None:
    room = ft.load(FIXTURES / "normal_white_room.jpg")
    clip = ft.write_clip(tmp_path / "room.avi", lights_on(room, 24), FPS)
    # without bursts (no scene model: the room was never learned) the lights coming
    # on confirm smoke, and the steady rule ends it only after its 15 s hold
    seen, w = await run_clip(detector, camera(clip, scene_model=False, **OFF))
    assert [o.cls for o in detections(seen) if o.active][:1] == [VideoClass.SMOKE], w.status()
    assert held_s(seen, VideoClass.SMOKE) >= 14.0
    # with a burst: the wall does not move over it, so nothing is confirmed at all
    seen, w = await run_clip(detector, camera(clip, scene_model=False))
    assert detections(seen) == [], [(o.cls, o.active, o.mono) for o in detections(seen)]
    assert w.bursts_still >= 1, w.status()
    # and it stays quiet: the still place is looked at again every 10 s (twice in
    # the 24 s the lights are on), still
    assert w.capture.bursts >= 3, w.status()
    assert w.status()["bursts"]["still_not_confirmed"] == w.bursts_still


@pytest.mark.parametrize(
    ("image", "cls", "move"),
    [("fire_cctv.jpg", VideoClass.FIRE, "flicker"), ("smoke_cctv.jpg", VideoClass.SMOKE, "drift")],
)
async def test_flickering_flame_and_drifting_smoke_confirm_as_fast_as_before(
    tmp_path: Path, detector: Detector, image: str, cls: VideoClass, move: str
) -> None:
    room = ft.load(FIXTURES / "normal_office.jpg")
    scene = ft.load(FIXTURES / image)
    rng = np.random.default_rng(2)
    moving = (
        ft.flicker(scene, int(12 * FPS), rng)
        if move == "flicker"
        else ft.drift(scene, int(12 * FPS), rng)
    )
    clip = ft.write_clip(tmp_path / "clip.avi", still(room, 4, 1) + moving, FPS)
    times = {}
    for name, kw in (("off", OFF), ("on", {})):
        seen, w = await run_clip(detector, camera(clip, scene_model=False, **kw))
        times[name] = started_after_s(seen, w, cls)
        assert times[name] is not None, (name, w.status())
        if name == "on":
            # the burst saw it move (the feature at work, not merely out of the way)
            assert w.bursts_moving >= 1 and w.bursts_still == 0, w.status()
            assert held_s(seen, cls) >= 6.0  # and it goes on as before
    on, off = times["on"], times["off"]
    assert on is not None and off is not None
    assert on <= off + 0.6, times


async def test_fire_in_a_learned_room_is_found_with_bursts(
    tmp_path: Path, detector: Detector
) -> None:
    """The lamp room (its lamp scores 0.98 fire every day) learned as normal, then a
    fire: its cells rise above the room's normal and its flames flicker over the
    burst: found as fast as without bursts."""
    room = ft.load(FIXTURES / "normal_lamp_room.jpg")
    fire = ft.load(FIXTURES / "fire_cctv.jpg")
    scene_file = tmp_path / "cam1.npz"
    commissioned(detector, still(room, 6, 7), scene_file)
    clip = ft.write_clip(tmp_path / "fire.avi", still(room, 4, 1) + flicker(fire, 10, 2), FPS)
    times = {}
    for name, kw in (("off", OFF), ("on", {})):
        seen, w = await run_clip(detector, camera(clip, **kw), scene_file)
        times[name] = started_after_s(seen, w, VideoClass.FIRE)
        assert times[name] is not None, (name, w.status())
        if name == "on":
            assert w.bursts_moving >= 1, w.status()
    on, off = times["on"], times["off"]
    assert on is not None and off is not None
    assert 4.0 <= on <= off + 0.6, times


def test_burst_movement_is_flicker_not_sensor_noise_or_exposure() -> None:
    """The measure alone, on crops such as the capture makes: noise and a change of
    exposure are no movement; a flicker in a small part of the region is."""
    from agent.events import Region

    rng = np.random.default_rng(0)
    wall = np.full((48, 64), 200, np.uint8)
    region = Region(x=100, y=100, w=200, h=150, score=0.9, cls=VideoClass.SMOKE)
    box = (100, 100, 200, 150)
    noise = tuple(ft.noisy(wall, rng) for _ in range(10))
    assert burst_movement(noise, box, region) == 0.0
    exposure = tuple(ft.noisy(ft.light(wall, g), rng) for g in np.linspace(0.7, 1.0, 10))
    assert burst_movement(exposure, box, region) == 0.0
    flames = []
    for _ in range(10):
        f = wall.copy()
        f[20:28, 30:38] = rng.integers(80, 255)
        flames.append(ft.noisy(f, rng))
    share = burst_movement(tuple(flames), box, region)
    assert share is not None and share >= 0.02
    # a glow flickering in patches all over the crop (no still pixels to read the
    # noise on) moves; the same brightness change over the whole frame (the
    # frame's levels say so: exposure) does not
    glow = []
    for _ in range(10):
        patches = rng.uniform(0.5, 1.0, (6, 8)).astype(np.float32)
        f = wall * cv2.resize(patches, (64, 48), interpolation=cv2.INTER_NEAREST)
        glow.append(ft.noisy(f.astype(np.uint8), rng))
    share = burst_movement(tuple(glow), box, region)
    assert share is not None and share >= 0.5
    gains = np.linspace(0.6, 1.0, 10)
    dimmed = tuple(ft.noisy(ft.light(wall, g), rng) for g in gains)
    assert burst_movement(dimmed, box, region, tuple(200.0 * g for g in gains)) == 0.0
    assert burst_movement(noise[:2], box, region) is None  # too few frames say nothing


def test_capture_burst_is_bounded_cropped_and_shrunk(tmp_path: Path) -> None:
    """The capture hands over at most ``max_frames`` crops of the box, grey, at most
    64 pixels a side, taken at the clip's own rate (10 fps here, 1 s: ~10), not
    the 2 looks a second; nothing before the burst's time is up."""
    from agent.clock import ScaledClock
    from vision.capture import BURST_CROP_PX, Capture

    rng = np.random.default_rng(1)
    room = ft.load(FIXTURES / "normal_office.jpg")
    clip = ft.write_clip(tmp_path / "c.avi", [ft.noisy(room, rng) for _ in range(100)], FPS)
    cap = Capture(str(clip), ScaledClock(5.0), decode_fps=4.0)
    cap.start()
    try:
        deadline = time.monotonic() + 10
        while cap.latest() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cap.request_burst((100, 50, 400, 300), 1.0, 30)
        assert not cap.request_burst((0, 0, 10, 10), 1.0, 30)  # one at a time
        assert cap.take_burst() is None  # its time is not up
        time.sleep(0.25)  # 1.25 s of clock time
        burst = cap.take_burst()
        assert burst is not None
        assert 6 <= len(burst.crops) <= 12, len(burst.crops)
        # 400x300 shrunk 7x (a whole factor): 57x42, grey
        assert all(c.shape == (42, 57) and c.dtype == np.uint8 for c in burst.crops)
        assert max(burst.crops[0].shape) <= BURST_CROP_PX
        assert len(burst.levels) == len(burst.crops) == len(burst.monos)
        assert burst.frame_size == (640, 480) and burst.box == (100, 50, 400, 300)
        assert cap.request_burst((100, 50, 400, 300), 5.0, 3)
        time.sleep(0.2)
        burst = cap.take_burst()  # 3 frames in: handed over before its 5 s
        assert burst is not None and len(burst.crops) == 3
    finally:
        cap.stop()
        cap.join(2.0)
