"""Per-camera ignore masks: polygons in frame pixels -> cells of the detector grid."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Polygon = Sequence[tuple[int, int]]


def ignore_cells(
    polygons: Sequence[Polygon],
    mask_size: tuple[int, int],
    grid: tuple[int, int],
    min_cover: float = 0.5,
) -> np.ndarray | None:
    """(rows, cols) bool: True where at least ``min_cover`` of a cell lies inside an
    ignore polygon. ``mask_size`` (width, height) is the resolution the polygons
    were drawn at (the camera's configured resolution). None when there is no mask."""
    if not polygons:
        return None
    w, h = mask_size
    rows, cols = grid
    canvas = np.zeros((h, w), np.uint8)
    for poly in polygons:
        cv2.fillPoly(canvas, [np.asarray(poly, np.int32).reshape(-1, 1, 2)], 255)
    cover = cv2.resize(
        canvas.astype(np.float32) / 255.0, (cols, rows), interpolation=cv2.INTER_AREA
    )
    out: np.ndarray = cover >= min_cover
    return out
