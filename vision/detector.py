"""The smoke/fire detector at run time: onnxruntime, numpy and OpenCV only.

``Detector.load()`` opens the shipped model (vision/models/firenet.onnx and its
.json metadata); ``detect(frame_bgr)`` gives image-level fire and smoke scores
and the regions where they are, in the frame's own pixel coordinates.

The network sees the whole frame stretched to its square input (no letterbox,
as in training) and scores a coarse grid of cells (one per 16 input pixels).
A region is a connected group of cells at or above the region threshold;
its box is the group's cells mapped back to the frame.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from agent.events import Region, VideoClass

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = MODELS_DIR / "firenet.onnx"


def model_path(choice: str | Path) -> Path:
    """The model file for a site config's ``vision.model``: standard or a path."""
    if choice == "standard":
        return DEFAULT_MODEL
    return Path(choice)


CLASSES = (VideoClass.FIRE, VideoClass.SMOKE)  # the order of the model's output channels


class ModelError(Exception):
    """The model file or its metadata is missing or unusable."""


class FrameError(ValueError):
    """The frame is not a usable image (empty, wrong shape or type)."""


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What the detector saw in one frame.

    ``fire``/``smoke`` are image-level scores in 0..1 (the highest cell not
    ignored); ``regions`` holds every region of either class, highest score
    first; ``cells`` is the (2, rows, cols) grid of probabilities [fire, smoke]
    with ignored cells set to 0; ``frame_size`` is (width, height).
    """

    fire: float
    smoke: float
    regions: tuple[Region, ...]
    cells: np.ndarray
    frame_size: tuple[int, int]
    inference_ms: float

    def score(self, cls: VideoClass) -> float:
        return self.fire if cls is VideoClass.FIRE else self.smoke

    def regions_of(self, cls: VideoClass) -> tuple[Region, ...]:
        return tuple(r for r in self.regions if r.cls is cls)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fire": round(self.fire, 4),
            "smoke": round(self.smoke, 4),
            "regions": [
                {
                    "cls": r.cls.value,
                    "x": r.x,
                    "y": r.y,
                    "w": r.w,
                    "h": r.h,
                    "score": round(r.score, 4),
                }
                for r in self.regions
            ],
        }


class Detector:
    """A loaded model. ``detect`` is thread-safe; the inference itself runs one at a
    time: onnxruntime gives each concurrent run its own activation buffers, kept in
    its arena for good (four cameras with a two-network candidate model: 218 MB of
    RSS against 190 MB with one run at a time, bench/footprint.py on 2026-11-29), and a
    gateway's few cores gain nothing from running them side by side."""

    def __init__(self, session: ort.InferenceSession, meta: dict[str, Any], path: Path) -> None:
        self.session = session
        self._run_lock = threading.Lock()
        self.meta = meta
        self.path = path
        w, h = meta["input"]["size_px"]
        self.input_size: tuple[int, int] = (int(w), int(h))
        self.input_name: str = meta["input"].get("name", "image")
        # operating points chosen on the validation split (the share of negatives
        # flagged is "operating_max_fpr"); older models named them "..._fpr5"
        thr = meta.get("thresholds_val") or meta.get("thresholds_val_fpr5", {})
        self.thresholds: dict[VideoClass, float] = {
            VideoClass.FIRE: float(thr.get("fire", 0.5)),
            VideoClass.SMOKE: float(thr.get("smoke", 0.5)),
        }

    @classmethod
    def load(cls, path: Path | None = None, threads: int = 1) -> Detector:
        """Open a model (None: the shipped one). ``threads`` bounds onnxruntime's
        intra-op threads (1 suits a small gateway CPU running several cameras)."""
        path = Path(path) if path is not None else DEFAULT_MODEL
        meta_path = path.with_suffix(".json")
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        if not meta_path.is_file():
            raise ModelError(f"{meta_path}: model metadata not found (it ships next to the .onnx)")
        try:
            meta = json.loads(meta_path.read_text())
            meta["input"]["size_px"]
        except (ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{meta_path}: unreadable model metadata: {e}") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: onnxruntime cannot load the model: {e}") from e
        return cls(session, meta, path)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the output grid."""
        stride = int(self.meta.get("stride_px", 16))
        return self.input_size[1] // stride, self.input_size[0] // stride

    def reduce(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The frame checked and stretched to the input size, BGR uint8: halved by
        pixel averaging while it is at least 4x the input, INTER_LINEAR to twice the
        input, then INTER_AREA (an exact 2x average) to the input. On a 1280x720 frame this costs ~0.5 ms against
        ~3.6 ms for one INTER_AREA straight to 224x224 (bench/camera_day.py --cost),
        and moves the cell probabilities by at most 0.08, mean 0.001, on the held-back
        images (bench/preprocess_diff.py). Frames already small are returned as is."""
        img = checked(frame_bgr)
        w, h = self.input_size
        while img.shape[1] >= 4 * w and img.shape[0] >= 4 * h:
            img = cv2.resize(
                img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA
            )
        if img.shape[1] > 2 * w or img.shape[0] > 2 * h:
            img = cv2.resize(img, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
        out: np.ndarray = cv2.resize(img, self.input_size, interpolation=cv2.INTER_AREA)
        return out

    @staticmethod
    def to_input(small: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 BGR 0..255 from a ``reduce``d frame."""
        return np.ascontiguousarray(small.transpose(2, 0, 1)[None], dtype=np.float32)

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 BGR 0..255, the frame stretched to the input size."""
        return self.to_input(self.reduce(frame_bgr))

    def preprocess_exact(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The reference preprocessing: one INTER_AREA from the full frame, as in
        training (slower on large frames; kept to measure ``preprocess`` against)."""
        small = cv2.resize(checked(frame_bgr), self.input_size, interpolation=cv2.INTER_AREA)
        return self.to_input(small)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The raw (2, rows, cols) cell probabilities for a preprocessed input."""
        with self._run_lock:
            cells = self.session.run(["cells"], {self.input_name: x})[0]
        out: np.ndarray = cells[0]
        return out

    def detect(
        self,
        frame_bgr: np.ndarray,
        *,
        ignore_cells: np.ndarray | None = None,
        region_thresholds: dict[VideoClass, float] | None = None,
        reduced: np.ndarray | None = None,
    ) -> FrameResult:
        """Score one frame. ``ignore_cells`` (rows, cols) bool marks masked cells
        (see vision.masks); ``region_thresholds`` overrides the model's operating
        points for grouping cells into regions; ``reduced`` is ``reduce(frame_bgr)``
        when the caller has it already (the camera makes its thumbnails from it)."""
        h, w = frame_bgr.shape[:2]
        x = self.to_input(reduced if reduced is not None else self.reduce(frame_bgr))
        t0 = time.perf_counter()
        cells = self.infer(x).astype(np.float32, copy=True)
        ms = (time.perf_counter() - t0) * 1000
        if ignore_cells is not None:
            if ignore_cells.shape != cells.shape[1:]:
                raise ValueError(f"ignore mask {ignore_cells.shape} != grid {cells.shape[1:]}")
            cells[:, ignore_cells] = 0.0
        thresholds = region_thresholds or self.thresholds
        regions: list[Region] = []
        for c, cls in enumerate(CLASSES):
            regions.extend(cell_regions(cells[c], thresholds[cls], cls, (w, h)))
        regions.sort(key=lambda r: -r.score)
        return FrameResult(
            fire=float(cells[0].max()),
            smoke=float(cells[1].max()),
            regions=tuple(regions),
            cells=cells,
            frame_size=(w, h),
            inference_ms=ms,
        )


def checked(frame_bgr: np.ndarray) -> np.ndarray:
    """The frame as BGR uint8, or FrameError."""
    if not isinstance(frame_bgr, np.ndarray) or frame_bgr.size == 0:
        raise FrameError("empty frame")
    if frame_bgr.ndim == 2:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    elif frame_bgr.ndim != 3 or frame_bgr.shape[2] not in (3, 4):
        raise FrameError(f"frame shape {frame_bgr.shape} is not an image")
    if frame_bgr.shape[2] == 4:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_BGRA2BGR)
    if frame_bgr.dtype != np.uint8:
        raise FrameError(f"frame dtype {frame_bgr.dtype} is not uint8")
    return frame_bgr


def _largest_group(cells: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """The largest 8-connected group of ``cells`` (bool), the one holding the
    highest ``prob`` among groups of equal size."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cells.astype(np.uint8), connectivity=8)
    if n <= 2:
        return cells
    best = max(
        range(1, n),
        key=lambda g: (int(stats[g, cv2.CC_STAT_AREA]), float(prob[labels == g].max())),
    )
    out: np.ndarray = labels == best
    return out


def cell_regions(
    prob: np.ndarray,
    threshold: float,
    cls: VideoClass,
    frame_size: tuple[int, int],
    core: np.ndarray | None = None,
) -> list[Region]:
    """Connected groups (8-neighbour) of cells with ``prob >= threshold``, as boxes in
    frame pixels; a region's score is its highest cell. With ``core`` (rows, cols)
    bool, a region's box covers only its largest connected group of core cells
    (the one with its highest cell among equals; that cell alone when it has no
    core): the size of a region is then measured on cells well above normal, and a
    cell hovering at the threshold never decides it, not even by bridging two
    separate cores into one group."""
    rows, cols = prob.shape
    w, h = frame_size
    on = (prob >= threshold).astype(np.uint8)
    if not on.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(on, connectivity=8)
    out = []
    for k in range(1, n):
        cx, cy, cw, ch = (int(v) for v in stats[k, :4])
        if core is not None:
            member = labels == k
            keep = member & core
            if keep.any():
                keep = _largest_group(keep, prob)
            else:  # every cell hovers near the threshold: its peak cell only
                keep = member & (prob == prob[member].max())
            ys, xs = np.nonzero(keep)
            cx, cy = int(xs.min()), int(ys.min())
            cw, ch = int(xs.max()) - cx + 1, int(ys.max()) - cy + 1
        x0 = round(cx * w / cols)
        y0 = round(cy * h / rows)
        x1 = round((cx + cw) * w / cols)
        y1 = round((cy + ch) * h / rows)
        out.append(
            Region(
                x=x0,
                y=y0,
                w=x1 - x0,
                h=y1 - y0,
                score=float(prob[labels == k].max()),
                cls=cls,
            )
        )
    return out
