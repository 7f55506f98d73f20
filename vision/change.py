"""Scene change against a slow background: fire flickers and smoke drifts, a
white curtain that the model finds smoke-like does neither.

``ChangeMap`` keeps a running average of grey thumbnails (time constant
``background_s``); ``region_change`` is the mean absolute difference between
the latest thumbnail and that background inside a region. The camera counts a
region towards *starting* a detection only where the scene has changed
(``CameraConfig.min_change_grey``); an ongoing detection needs no change.
Pure numpy/OpenCV; times are passed in.
"""

from __future__ import annotations

import numpy as np

from agent.events import Region


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
