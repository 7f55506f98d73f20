"""Scene change against a slow background: fire flickers and smoke drifts, a
white curtain that the model finds smoke-like does neither.

``ChangeMap`` keeps a running average of grey thumbnails (time constant
``background_s``); ``region_change`` is the mean absolute difference between
the latest thumbnail and that background inside a region. The camera counts a
region towards *starting* a detection only where the scene has changed
(``CameraConfig.min_change_grey``); an ongoing detection needs no change.
``burst_movement`` judges a burst of frames (vision/capture.py ``Burst``) taken
at the camera's own rate when a candidate appears: the share of a region's
pixels whose grey level varies over the burst above sensor noise. Flames
flicker and smoke drifts within a second; a white wall under new lights does
not, whatever the model scores it.

Pure numpy/OpenCV; times are passed in.
"""

from __future__ import annotations

import numpy as np

from agent.events import Region

# a pixel of a burst's crops moves when its grey level varies over the burst (its
# standard deviation) more than BURST_NOISE_TIMES the crop's sensor noise (read
# on its stillest quarter of pixels), at least BURST_MOTION_GREY, and in any case
# when it varies more than BURST_LOUD_GREY (a crop that flickers all over has no
# still quarter): +-3 sensor noise through MJPEG is 0.4 on a shrunk crop, under
# 2.4 on a full-size pixel; a flicker or a drifting edge is tens
BURST_MOTION_GREY = 2.0
BURST_NOISE_TIMES = 3.0
BURST_LOUD_GREY = 8.0
BURST_MIN_FRAMES = 3  # fewer crops say nothing (a stalled or a very slow camera)


def burst_movement(
    crops: tuple[np.ndarray, ...],
    box: tuple[int, int, int, int],
    region: Region,
    levels: tuple[float, ...] | None = None,
) -> float | None:
    """The share (0..1) of ``region``'s pixels (frame pixels) that move over a
    burst of grey ``crops`` of ``box`` (x, y, w, h, frame pixels), above the noise
    of the whole crop. Each crop's brightness is first matched to the first one's
    by the whole frame's mean ``levels`` (by the crop's own mean without them): a
    camera's exposure or a light switched is no movement, while a flame's glow
    pulsing in part of the picture is. None when there are too few crops or the
    region is outside the box."""
    shape = crops[0].shape if crops else None
    keep = [i for i, c in enumerate(crops) if c.shape == shape]
    if shape is None or len(keep) < BURST_MIN_FRAMES:
        return None
    ch, cw = shape
    bx, by, bw, bh = box
    x0 = max(0, int((region.x - bx) * cw / bw))
    y0 = max(0, int((region.y - by) * ch / bh))
    x1 = min(cw, int(np.ceil((region.x + region.w - bx) * cw / bw)))
    y1 = min(ch, int(np.ceil((region.y + region.h - by) * ch / bh)))
    if x1 <= x0 or y1 <= y0:
        return None
    stack = np.stack([crops[i] for i in keep]).astype(np.float32)
    if levels is not None and len(levels) == len(crops):
        means = np.array([levels[i] for i in keep], np.float32)
    else:
        means = stack.mean(axis=(1, 2))
    gain = np.where(means > 1.0, means[0] / np.maximum(means, 1.0), 1.0)
    stack *= gain[:, None, None].astype(np.float32)
    spread = stack.std(axis=0)
    noise = float(np.quantile(spread, 0.25))
    limit = min(BURST_LOUD_GREY, max(BURST_MOTION_GREY, BURST_NOISE_TIMES * noise))
    moving = spread[y0:y1, x0:x1] > limit
    return float(moving.mean())


class ChangeMap:
    def __init__(self, background_s: float = 30.0) -> None:
        if background_s <= 0:
            raise ValueError("background_s must be positive")
        self.background_s = background_s
        self.background: np.ndarray | None = None
        self.latest: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self._t_s: float | None = None

    def update(self, thumb: np.ndarray, t_s: float) -> None:
        """Feed the grey thumbnail (float32) of a new frame taken at ``t_s``."""
        thumb = thumb.astype(np.float32, copy=False)
        if self.background is None or self._t_s is None or self.background.shape != thumb.shape:
            self.background = thumb.copy()
        else:
            alpha = min(1.0, max(0.0, t_s - self._t_s) / self.background_s)
            self.background += alpha * (thumb - self.background)
        self.previous = self.latest
        self.latest = thumb
        self._t_s = t_s

    def region_change(
        self, region: Region, frame_size: tuple[int, int], *, since_previous: bool = False
    ) -> float:
        """Mean grey-level change inside ``region`` (frame pixels) against the slow
        background, or with ``since_previous`` against the previous thumbnail (a
        flame's flicker, smoke's drift); 0 before there is anything to compare."""
        ref = self.previous if since_previous else self.background
        if self.latest is None or ref is None or ref.shape != self.latest.shape:
            return 0.0
        th, tw = self.latest.shape
        w, h = frame_size
        x0 = min(tw - 1, max(0, int(region.x * tw / w)))
        y0 = min(th - 1, max(0, int(region.y * th / h)))
        x1 = max(x0 + 1, min(tw, int(np.ceil((region.x + region.w) * tw / w))))
        y1 = max(y0 + 1, min(th, int(np.ceil((region.y + region.h) * th / h))))
        diff = np.abs(self.latest[y0:y1, x0:x1] - ref[y0:y1, x0:x1])
        return float(diff.mean())
