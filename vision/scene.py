"""A camera's own scene: what its normal picture scores, cell by cell.

A fixed camera sees the same room all day. ``SceneModel`` keeps, for every
cell of the detector's output grid and each class (fire, smoke), a running
mean and spread of that camera's scores on its normal scene, per *lighting
state*: frames are grouped by their mean brightness and colour saturation
(lights on, lights off, daylight, IR night has no colour), not by the clock.

A cell counts towards a detection only when its score is at least
``mean + spread_k * std + margin`` of the current lighting state, on top of the
model's global threshold (which the caller applies). A white wall that scores
0.99 "smoke" every day, a fire poster, a lamp that is always there: their cells
never rise above their own normal. A fire in a room learned as normal does:
its cells go from the room's normal (near 0) to the fire's score.

Learning:

* ``commission`` (the installer's ``firegate commission camera``): every cell,
  plain average over the frames watched; the installer vouches for the scene.
* ``learn`` (the running camera, only while no detection is active): a
  lighting state's first ``learn_frames`` frames are averaged plainly, then
  the normal drifts with time constant ``adapt_s`` (hours). Cells that stand
  out right now (above their normal by the margin) only ever drift at that
  slow rate, so a fire never teaches itself to be normal within its vote.

Unlearned: a camera with no learned lighting state judges by the global
threshold alone (as without a scene model) and learns while nothing is
alarmed. A new lighting state on a learned camera is judged, until it has its
own ``learn_frames``, against the highest normal any learned state has for
each cell (the quietest known view of that cell) and its own estimate so far.

Persisted with ``save()`` (atomic write, mode 0600) and ``load()``; a
damaged or foreign file gives ``SceneFileError`` and the caller starts a
fresh model (learning), never a silent camera.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

SCENE_FORMAT = "firegate-scene-v1"
LIGHT_THUMB = (64, 36)  # colour thumbnail the lighting statistics come from
# two frames are in the same lighting state when both differences are within these
BRIGHTNESS_STEP = 30.0  # mean grey level, 0..255
SATURATION_STEP = 25.0  # mean HSV saturation, 0..255 (IR night: about 0)
MAX_STATES = 6
MIN_STD = 0.01  # a cell's spread is never taken as less than this (score units)


class SceneFileError(Exception):
    """The scene file is missing, unreadable or belongs to another model or grid."""


def lighting(image: np.ndarray) -> tuple[float, float]:
    """(mean brightness, mean colour saturation) of a BGR frame (or of its 64x36
    thumbnail), both 0..255."""
    small = image
    if image.shape[1::-1] != LIGHT_THUMB:
        small = cv2.resize(image, LIGHT_THUMB, interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        return float(small.mean()), 0.0
    hsv = cv2.cvtColor(small[..., :3], cv2.COLOR_BGR2HSV)
    return float(hsv[..., 2].mean()), float(hsv[..., 1].mean())


@dataclass(slots=True)
class LightingState:
    """One lighting state: its centre and per-cell running statistics."""

    brightness: float
    saturation: float
    mean: np.ndarray  # (2, rows, cols) float32
    var: np.ndarray  # (2, rows, cols) float32
    frames: int = 0
    seconds: float = 0.0  # time of the frames learned (running learning only)

    def distance(self, light: tuple[float, float]) -> float:
        return max(
            abs(light[0] - self.brightness) / BRIGHTNESS_STEP,
            abs(light[1] - self.saturation) / SATURATION_STEP,
        )

    def upper(self, spread_k: float) -> np.ndarray:
        out: np.ndarray = self.mean + spread_k * np.sqrt(np.maximum(self.var, MIN_STD**2))
        return out


@dataclass(slots=True)
class SceneModel:
    grid: tuple[int, int]  # (rows, cols) of the detector's output
    model_id: str = ""  # the detector model the scores come from (a scene is per model)
    margin: float = 0.15
    spread_k: float = 3.0
    learn_frames: int = 60
    adapt_s: float = 7200.0
    states: list[LightingState] = field(default_factory=list)

    # ----------------------------------------------------------- lighting states

    @property
    def learned(self) -> bool:
        """True once at least one lighting state has its ``learn_frames``."""
        return any(s.frames >= self.learn_frames for s in self.states)

    def nearest(self, light: tuple[float, float]) -> LightingState | None:
        if not self.states:
            return None
        return min(self.states, key=lambda s: s.distance(light))

    def state_for(self, light: tuple[float, float], *, create: bool) -> LightingState | None:
        """The lighting state of a frame; with ``create``, a new one when none is
        close enough (the nearest one when ``MAX_STATES`` are kept)."""
        near = self.nearest(light)
        if near is not None and near.distance(light) <= 1.0:
            return near
        if not create:
            return None
        if len(self.states) >= MAX_STATES:
            return near
        rows, cols = self.grid
        st = LightingState(
            brightness=light[0],
            saturation=light[1],
            mean=np.zeros((2, rows, cols), np.float32),
            var=np.zeros((2, rows, cols), np.float32),
        )
        self.states.append(st)
        return st

    def _prior(self) -> np.ndarray | None:
        """Per cell, the highest normal of the learned states (None: none learned)."""
        ups = [s.upper(self.spread_k) for s in self.states if s.frames >= self.learn_frames]
        if not ups:
            return None
        out: np.ndarray = np.max(np.stack(ups), axis=0)
        return out

    def normal(self, light: tuple[float, float]) -> np.ndarray | None:
        """(2, rows, cols): the score each cell reaches on the normal scene in this
        light (mean + spread_k * std); None when the camera has learned nothing."""
        prior = self._prior()
        if prior is None:
            return None
        st = self.state_for(light, create=False)
        if st is not None and st.frames >= self.learn_frames:
            return st.upper(self.spread_k)
        if st is not None and st.frames > 0:
            own: np.ndarray = np.maximum(prior, st.upper(self.spread_k))
            return own
        return prior

    # ----------------------------------------------------------------- judging

    def gate(
        self,
        cells: np.ndarray,
        light: tuple[float, float],
        normal: np.ndarray | None = None,
    ) -> np.ndarray:
        """``cells`` with every cell that does not rise ``margin`` above its normal
        set to 0 (unchanged when the camera has learned nothing). ``normal``: this
        light's ``normal(light)`` when the caller has it already."""
        if normal is None:
            normal = self.normal(light)
        if normal is None:
            return cells
        out: np.ndarray = np.where(cells >= normal + self.margin, cells, 0.0).astype(np.float32)
        return out

    # ---------------------------------------------------------------- learning

    def commission(self, cells: np.ndarray, light: tuple[float, float]) -> LightingState:
        """Learn one frame of a scene the installer vouches for: every cell, plain average."""
        st = self.state_for(light, create=True)
        assert st is not None
        self._update(st, cells, np.full(cells.shape, 1.0 / (st.frames + 1), np.float32))
        self._move_centre(st, light)
        st.frames += 1
        return st

    def learn(self, cells: np.ndarray, light: tuple[float, float], dt_s: float) -> None:
        """Learn one analysed frame of the running camera (call only while no
        detection is active). ``dt_s``: time since the previous learned frame."""
        dt_s = max(0.0, min(dt_s, 60.0))
        normal = self.normal(light)
        st = self.state_for(light, create=True)
        assert st is not None
        slow = min(1.0, dt_s / self.adapt_s)
        fast = 1.0 / (st.frames + 1) if st.frames < self.learn_frames else slow
        alpha = np.full(cells.shape, max(fast, slow), np.float32)
        if normal is not None:
            # cells standing out now drift only slowly: a fire never learns itself normal
            alpha[cells >= normal + self.margin] = slow
        self._update(st, cells, alpha)
        if st.frames < self.learn_frames:
            self._move_centre(st, light)
        st.frames += 1
        st.seconds += dt_s

    @staticmethod
    def _update(st: LightingState, cells: np.ndarray, alpha: np.ndarray) -> None:
        x = cells.astype(np.float32, copy=False)
        d = x - st.mean
        st.mean += alpha * d
        # exponentially weighted variance (West's update); plain variance when alpha = 1/n
        st.var = (1.0 - alpha) * (st.var + alpha * d * d)

    @staticmethod
    def _move_centre(st: LightingState, light: tuple[float, float]) -> None:
        a = 1.0 / (st.frames + 1)
        st.brightness += a * (light[0] - st.brightness)
        st.saturation += a * (light[1] - st.saturation)

    def noisy_cells(self, threshold: float, cls_index: int) -> np.ndarray:
        """(rows, cols) bool: cells whose normal (any state) reaches ``threshold``,
        i.e. cells the global threshold alone would call fire or smoke."""
        rows, cols = self.grid
        out = np.zeros((rows, cols), bool)
        for st in self.states:
            out |= st.upper(self.spread_k)[cls_index] >= threshold
        return out

    def describe(self) -> list[dict[str, Any]]:
        """Per lighting state: its centre, frames learned and score levels per class."""
        out = []
        for st in self.states:
            up = st.upper(self.spread_k)
            out.append(
                {
                    "brightness": round(st.brightness, 1),
                    "saturation": round(st.saturation, 1),
                    "frames": st.frames,
                    "learned": st.frames >= self.learn_frames,
                    "fire_normal_max": round(float(up[0].max()), 3),
                    "smoke_normal_max": round(float(up[1].max()), 3),
                }
            )
        return out

    # -------------------------------------------------------------- persistence

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, fsync, rename), readable by the owner only."""
        meta = {
            "format": SCENE_FORMAT,
            "grid": list(self.grid),
            "model_id": self.model_id,
            "states": [
                {
                    "brightness": s.brightness,
                    "saturation": s.saturation,
                    "frames": s.frames,
                    "seconds": s.seconds,
                }
                for s in self.states
            ],
        }
        arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        for i, s in enumerate(self.states):
            arrays[f"mean{i}"] = s.mean
            arrays[f"var{i}"] = s.var
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, grid: tuple[int, int], model_id: str, **params: Any) -> SceneModel:
        """The scene stored at ``path`` for this grid and model; ``SceneFileError``
        when it is missing, damaged, or made for another model or grid."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if meta.get("format") != SCENE_FORMAT:
                    raise SceneFileError(f"{path}: not a firegate scene file")
                if tuple(meta["grid"]) != tuple(grid):
                    raise SceneFileError(f"{path}: made for grid {meta['grid']}, not {list(grid)}")
                if model_id and meta.get("model_id") != model_id:
                    raise SceneFileError(f"{path}: learned with another vision model")
                states = []
                for i, s in enumerate(meta["states"]):
                    mean = np.asarray(z[f"mean{i}"], np.float32)
                    var = np.asarray(z[f"var{i}"], np.float32)
                    if mean.shape != (2, *grid) or var.shape != mean.shape:
                        raise SceneFileError(f"{path}: state {i} has the wrong shape")
                    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
                        raise SceneFileError(f"{path}: state {i} holds non-numbers")
                    states.append(
                        LightingState(
                            brightness=float(s["brightness"]),
                            saturation=float(s["saturation"]),
                            mean=mean,
                            var=np.maximum(var, 0.0),
                            frames=int(s["frames"]),
                            seconds=float(s.get("seconds", 0.0)),
                        )
                    )
        except SceneFileError:
            raise
        except FileNotFoundError as e:
            raise SceneFileError(f"{path}: no scene file") from e
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as e:
            raise SceneFileError(f"{path}: unreadable scene file ({e})") from e
        return cls(grid=grid, model_id=model_id, states=states, **params)


def model_id(model_path: Path) -> str:
    """A short identity of a model file (its size and a hash of its bytes)."""
    import hashlib

    data = model_path.read_bytes()
    return f"{len(data)}-{hashlib.sha256(data).hexdigest()[:16]}"


def grid_of(model_path: Path) -> tuple[int, int]:
    """(rows, cols) of a model's output grid, from its .json metadata (no onnxruntime)."""
    meta = json.loads(model_path.with_suffix(".json").read_text())
    w, h = meta["input"]["size_px"]
    stride = int(meta.get("stride_px", 16))
    return int(h) // stride, int(w) // stride


def scene_path(state_dir: Path, camera: str) -> Path:
    return state_dir / "scenes" / f"{camera}.npz"
