"""Expected flames (a kitchen's hobs, a lab's burners): a zone declares where
flames belong, with a size limit. Real OpenCV decoding of MJPG clips through the
real CameraWorker and the shipped model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from agent.events import VideoClass
from agent.siteconfig.models import CameraConfig
from tests.vision.test_vision_scene import (
    FIXTURES,
    FPS,
    alarms,
    camera,
    detections,
    flicker,
    lights_on,
    run_clip,
    still,
)
from vision import footage as ft
from vision.detector import Detector

# the fireplace at 640x480: the model's fire region at threshold 0.5 is
# (457, 69) 183x137, 8 % of the frame (flickering, up to 13 %); the mask covers it
HEARTH = ((430, 40), (640, 40), (640, 240), (430, 240))


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.load()


def sensitive(clip: Path, **kw: Any) -> CameraConfig:
    """A camera without the scene model, the steady rules or bursts, fire threshold
    0.5: the fireplace holds a fire detection in every frame, so only the mask acts."""
    return camera(
        clip,
        scene_model=False,
        small_flame_max_frac=0.0,
        steady_end_s=0.0,
        burst_s=0.0,
        fire_threshold=0.5,
        resolution=(640, 480),
        **kw,
    )


async def test_expected_flame_is_ignored_until_it_grows_past_its_limit(
    tmp_path: Path, detector: Detector, caplog: pytest.LogCaptureFixture
) -> None:
    room = ft.load(FIXTURES / "normal_fireplace.jpg")
    clip = ft.write_clip(tmp_path / "hearth.avi", lights_on(room, 1) + flicker(room, 40, 3), FPS)
    seen, w = await run_clip(detector, sensitive(clip))
    assert detections(seen, VideoClass.FIRE), "without the mask the hearth is a fire"

    masked = {"expected_flames": [{"polygon": HEARTH, "max_frac": 0.2}]}
    seen, w = await run_clip(detector, sensitive(clip, **masked))
    assert detections(seen, VideoClass.FIRE) == [], "inside its mask and under its limit"
    assert alarms(seen, w) == []

    # the same hearth, its flames growing: the view closes in 1x -> 3x over 15 s
    reg = max(
        detector.detect(
            room, region_thresholds={VideoClass.FIRE: 0.5, VideoClass.SMOKE: 1.0}
        ).regions_of(VideoClass.FIRE),
        key=lambda r: r.score,
    )
    centre = (reg.x + reg.w / 2, reg.y + reg.h / 2)
    grow = [
        ft.zoom(f, centre, 1.0 + 2.0 * min(1.0, i / (15 * FPS)))
        for i, f in enumerate(flicker(room, 35, 4))
    ]
    clip = ft.write_clip(tmp_path / "growing.avi", still(room, 2, 5) + grow, FPS)
    with caplog.at_level(logging.WARNING, logger="vision.camera"):
        seen, w = await run_clip(detector, sensitive(clip, **masked))
    fire = [o for o in detections(seen, VideoClass.FIRE) if o.active]
    assert fire, w.status()
    # it counts once it is past its limit: the filter says so, and it was detected
    # (which region size the vote then reports is the vote's: its window's median,
    # which may lag the frame the filter judged, and since 2026-12-06 a grown report
    # is held back while within the range of the first window: CI once saw every
    # report under the limit on a loaded machine)
    assert "grew past expected flame 0" in caplog.text


def test_expected_flames_config_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        CameraConfig(
            name="c", zone="z", source="rtsp://192.0.2.1/", expected_flames=[{"polygon": [(0, 0)]}]
        )
    with pytest.raises(ValueError, match="max_frac"):
        CameraConfig(
            name="c",
            zone="z",
            source="rtsp://192.0.2.1/",
            expected_flames=[{"polygon": HEARTH, "max_frac": 0.9}],
        )
    schema = CameraConfig.model_json_schema()["$defs"]["ExpectedFlame"]["properties"]
    assert schema["max_frac"]["title"] == "Largest expected flame"
    assert schema["max_frac"]["maximum"] == 0.5 and schema["max_frac"]["exclusiveMinimum"] == 0
