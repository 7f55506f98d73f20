"""The optional video-confirmation fields of a camera in the site config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.siteconfig.models import CameraConfig


def cam(**kw: object) -> CameraConfig:
    return CameraConfig(name="cam1", zone="hall", source="rtsp://192.0.2.1/s", **kw)  # type: ignore[arg-type]


def test_defaults() -> None:
    c = cam()
    assert c.fire_threshold is None and c.smoke_threshold is None  # the model's operating points
    assert (c.vote_window_frames, c.vote_min_fraction, c.hold_ratio) == (6, 0.5, 0.7)
    assert c.min_region_area_px == 0 and c.update_interval_s == 5.0
    assert c.open_timeout_s == 10.0 and c.reconnect_max_s == 30.0
    assert c.min_change_grey == 2.0 and c.change_background_s == 30.0


@pytest.mark.parametrize(
    "field,value",
    [
        ("fire_threshold", 0.0),
        ("smoke_threshold", 1.5),
        ("hold_ratio", 0.0),
        ("vote_window_frames", 0),
        ("vote_min_fraction", 1.2),
        ("min_region_area_px", -1),
        ("update_interval_s", 0.1),
        ("open_timeout_s", 0),
        ("min_change_grey", -1),
        ("change_background_s", 0.5),
        ("vote_windw_frames", 6),  # a typo is an error, not a silent default
    ],
)
def test_bad_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        cam(**{field: value})
