"""The change gate's background model."""

from __future__ import annotations

import numpy as np
import pytest

from agent.events import Region, VideoClass
from vision.change import ChangeMap


def region(x: int, y: int, w: int, h: int) -> Region:
    return Region(x=x, y=y, w=w, h=h, score=0.9, cls=VideoClass.SMOKE)


def test_still_scene_has_no_change_and_new_object_has() -> None:
    cm = ChangeMap(background_s=30.0)
    scene = np.full((36, 64), 100.0, np.float32)
    for i in range(20):
        cm.update(scene, i * 0.5)
    full = (1280, 720)
    assert cm.region_change(region(0, 0, 1280, 720), full) == pytest.approx(0.0)
    plume = scene.copy()
    plume[:18, 32:] = 180.0  # something bright appears in the top-right quarter
    cm.update(plume, 10.0)
    assert cm.region_change(region(640, 0, 640, 360), full) > 70
    assert cm.region_change(region(0, 360, 640, 360), full) == pytest.approx(0.0)


def test_background_absorbs_a_lasting_change() -> None:
    cm = ChangeMap(background_s=10.0)
    cm.update(np.zeros((36, 64), np.float32), 0.0)
    bright = np.full((36, 64), 100.0, np.float32)
    t = 0.0
    for _ in range(200):  # 100 s at 2 fps: ten time constants
        t += 0.5
        cm.update(bright, t)
    assert cm.region_change(region(0, 0, 640, 360), (640, 360)) < 1.0


def test_no_frame_yet_and_bad_arguments() -> None:
    assert ChangeMap().region_change(region(0, 0, 10, 10), (100, 100)) == 0.0
    with pytest.raises(ValueError):
        ChangeMap(background_s=0)
