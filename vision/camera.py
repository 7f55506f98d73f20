"""One camera as a Part: capture, scheduled detection, the vote, camera faults.

``CameraWorker(cam, detector, out, clock)`` puts on ``out`` only:

* ``VideoDetection(confirmed=True, active=True)`` when the vote for fire or
  smoke passes (with a JPEG snapshot of that frame, the region drawn on it),
  then updates while ongoing at most every ``update_interval_s`` when the
  score or the region grows, and ``confirmed=True, active=False`` when it ends.
  Raw per-frame scores never leave the worker (see ``status()``).
* ``StateChange(kind=CAMERA)`` for OFFLINE (the source cannot be opened or is
  lost), STALE (no new frame for ``stale_after_s``) and FROZEN (identical
  frames for ``frozen_after_s``): a camera fault, never "no fire". The current
  OFFLINE state is sent once when the camera first delivers a frame.

A region counts towards *starting* a detection only where the scene differs
from a slow background (``min_change_grey`` over ``change_background_s``,
vision/change.py): a fire flickers and smoke drifts, while a smoke-like white
wall stays put. An ongoing detection needs no change.

With the scene model (``CameraConfig.scene_model``, vision/scene.py) a cell
counts only where its score rises ``scene_margin`` above what this camera's
normal scene scores there in the same lighting; regions are cut from those
cells only, and a region's size (hence growth) is measured on its largest
connected group of core cells: well above the model's threshold and, once
learned, twice the margin above the scene's normal (cells hovering at either
never make a region grow, nor bridge two cores into one). The scene is learned while
no detection is active and kept in ``scene_file`` (the state dir): loaded at
start, saved every ``SCENE_SAVE_S`` and when the worker stops. A missing or
damaged file means learning again (with a warning), never a silent camera;
until a lighting state is learned the model's threshold alone judges.

A burst on a candidate (``burst_s``, 0: off): when a region of a class that is
not active becomes a candidate, the capture takes the frames of the next
``burst_s`` at the camera's own rate, cropped around it (vision/capture.py),
and the worker measures how much of the region moves over them
(vision/change.py ``burst_movement``; pixel differences, no inference). When
the vote would start a detection there, a region found moving starts it as
before; a region found still is not confirmed: nothing is sent, and its place
is quiet (vision/vote.py) as after a steady end. A START waiting for its burst
is held (at most ``burst_s`` + ``BURST_GRACE_S``, then sent: a camera that
stalls meanwhile is judged as without bursts). A quiet place with a region in
it is looked at again every ``BURST_RECHECK_S``: movement there ends the quiet.

Scheduling: the latest frame is looked at ``detect_fps`` times a second; a frame
that has not changed since the last analysed one is not analysed again (its
last result counts in the vote) unless ``max_gap_s`` has passed. While a
camera is stale or frozen its frames do not count in the vote, and an ongoing
detection is not ended by the fault (the fault is reported instead).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.clock import Clock
from agent.events import (
    Condition,
    DeviceKind,
    Observation,
    Region,
    StateChange,
    VideoClass,
    VideoDetection,
)
from agent.logs import redact_url
from agent.siteconfig.models import CameraConfig
from vision.capture import MAX_FRAME_SIZE, Capture, CaptureState, Frame
from vision.change import ChangeMap, burst_movement
from vision.detector import CLASSES, Detector, FrameError, FrameResult, cell_regions
from vision.masks import ignore_cells
from vision.scene import SceneFileError, SceneModel, lighting, model_id
from vision.vote import Vote, VoteEvent, VoteEventKind, VoteParams, around, overlaps

log = logging.getLogger(__name__)

THUMB_SIZE = (64, 36)  # grey thumbnail for change and freeze checks
UNCHANGED_DIFF = 1.0  # mean grey-level change below which a frame is "unchanged"
IDENTICAL_DIFF = 0.05  # ... and below which it is the very same picture (frozen camera)
SNAPSHOT_MAX_WIDTH_PX = 640
SNAPSHOT_QUALITY = 75
DECODE_PER_LOOK = 2.0  # frames decoded per look of the loop (see Capture's decode_fps)
MAX_WAIT_S = 1.0  # bound on every wait of the loop, so progress_mono stays fresh
SCENE_SAVE_S = 600.0  # the learned scene is written at most this often (and at stop)
STEADY_MIN_MOVES = 3  # looks with movement in a region that make it not steady (noise: ~0)
# ... and one of them must be in this last share of its hold: a region that moved only
# while a person walked through it, then stood still (a long IR night), is steady
STEADY_LATE_SHARE = 1.0 / 3.0
# the steady rule keeps at most this many of a detection's latest region sizes (at 2
# looks a second, 10 minutes): its trend then compares thirds of that stretch
STEADY_MAX_LOOKS = 1200
# a small region restarted where one was ended as steady grew across the two holds
# when at most this share of the earlier hold's looks were small_growth_ratio over
# its median size, and at least ACROSS_LAST_MIN of the last third of this hold's are
ACROSS_BEFORE_MAX = 0.25
ACROSS_LAST_MIN = 0.75
# the save at stop waits at most this long: a stalled disk never holds a stop
SCENE_STOP_SAVE_S = 2.0
SCENE_CHECK_S = 5.0  # how often the scene file is checked for a commissioning or a reset
BURST_GRACE_S = 2.0  # a START held for its burst longer than burst_s + this is sent anyway
BURST_RECHECK_S = 10.0  # a still (quiet) place with a region in it is looked at again this often
BURST_MARGIN = 0.25  # a burst's crop: the candidates' box and this much of its size around


@dataclasses.dataclass
class _Steady:
    """What the steady rule knows of one active detection."""

    start_mono: float
    moves: int = 0  # looks with movement in the region
    last_move_mono: float = -math.inf  # the latest of them
    # its region's size at each look, the latest STEADY_MAX_LOOKS (a detection can
    # last hours, a kitchen's smoke that never confirms); 0 where the vote had none
    # (a region in a quiet place that has not outgrown it)
    looks: collections.deque[int] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=STEADY_MAX_LOOKS)
    )
    # ``looks`` of the hold before it in the same place, when that one was ended as a
    # small region that moved but did not grow (empty: none; ``Vote.sizes_at``)
    before: tuple[int, ...] = ()
    grown_across: bool = False  # it grew across holds and was kept (logged once)

    @property
    def areas(self) -> list[int]:
        """Its region's sizes, at the looks that had one."""
        return [a for a in self.looks if a > 0]

    def grew_across(self, ratio: float) -> tuple[bool, float]:
        """Whether its region outgrew the hold before it in the same place: at most
        ``ACROSS_BEFORE_MAX`` of that hold's looks were ``ratio`` over its median
        size, and at least ``ACROSS_LAST_MIN`` of this one's last third are. A fire
        first seen late in its growth grows less than ``ratio`` within one hold; a
        fireplace hopping between its flames puts as many looks over that size in
        every hold. Also the growth (median over median)."""
        base = _median([a for a in self.before if a > 0])
        k = len(self.looks) // 3
        if base == 0 or k == 0:
            return False, 1.0
        cut = ratio * base
        last = list(self.looks)[-k:]
        share_before = sum(a >= cut for a in self.before) / len(self.before)
        share_last = sum(a >= cut for a in last) / len(last)
        grown = share_before <= ACROSS_BEFORE_MAX and share_last >= ACROSS_LAST_MIN
        return grown, _median(last) / base

    def grew(self, ratio: float) -> bool:
        """Its region's size trended up: over the last third of its looks against
        the first third, the median by ``ratio`` and the lower quartile above the
        upper quartile (the sizes moved up as a whole). A fireplace's region hops
        between its flames from look to look (1 to 12 cells), a stationary spread
        that one look, or one window's median, can read as growth either way; a
        fire's region grows."""
        areas = self.areas
        k = len(areas) // 3
        if k == 0:
            return False
        return _trended_up(sorted(areas[:k]), sorted(areas[-k:]), ratio)


def _median(xs: list[int]) -> int:
    """The upper median (0: none)."""
    return sorted(xs)[len(xs) // 2] if xs else 0


def _trended_up(first: list[int], last: list[int], ratio: float) -> bool:
    """Sorted sizes ``last`` are ``ratio`` over ``first`` by their medians, and moved
    up as a whole (their lower quartile above first's upper)."""

    def q(xs: list[int], f: float) -> int:
        return xs[min(len(xs) - 1, int(f * len(xs)))]

    return q(last, 0.5) >= ratio * max(1, q(first, 0.5)) and q(last, 0.25) >= q(first, 0.75)


def configured_limit(resolution: tuple[int, int] | None) -> tuple[int, int] | None:
    """The frame-size limit of a camera: its configured ``resolution`` when it is
    within the hard cap (vision.capture.MAX_FRAME_SIZE), else the cap (None)."""
    if resolution is None:
        return None
    cap_w, cap_h = MAX_FRAME_SIZE
    return resolution if resolution[0] * resolution[1] <= cap_w * cap_h else None


def thumbnail(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small: np.ndarray = cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)


def small_colour(image: np.ndarray) -> np.ndarray:
    """The frame at THUMB_SIZE, colour kept (one downscale serves change, freeze and
    lighting checks); ``image`` may be the detector's reduced frame (stretched: the
    thumbnail's geometry is the frame's either way)."""
    out: np.ndarray = cv2.resize(image, THUMB_SIZE, interpolation=cv2.INTER_AREA)
    return out


def open_scene(
    cam: CameraConfig, detector: Detector, scene_file: Path | None
) -> tuple[SceneModel, str]:
    """The camera's stored scene, or a fresh one to learn; and what happened, in words."""
    params: dict[str, Any] = {
        "margin": cam.scene_margin,
        "learn_frames": cam.scene_learn_frames,
        "adapt_s": cam.scene_adapt_s,
    }
    mid = model_id(detector.path)
    if scene_file is None:
        return SceneModel(grid=detector.grid, model_id=mid, **params), "not stored"
    if not scene_file.exists():
        return (
            SceneModel(grid=detector.grid, model_id=mid, **params),
            f"no learned scene yet ({scene_file}): learning while quiet",
        )
    try:
        scene = SceneModel.load(scene_file, detector.grid, mid, **params)
    except SceneFileError as e:
        log.warning(
            "camera %s: %s; learning the scene again (until learned, the model's threshold "
            "alone judges; run `firegate commission camera %s` to learn it now)",
            cam.name,
            e,
            cam.name,
        )
        return SceneModel(grid=detector.grid, model_id=mid, **params), f"relearning: {e}"
    states = sum(1 for s in scene.states if s.frames >= scene.learn_frames)
    return scene, f"loaded from {scene_file} ({states} learned lighting states)"


def snapshot_jpeg(image: np.ndarray, region: Region | None) -> bytes | None:
    """The frame as a small JPEG (at most 640 px wide), the region outlined."""
    img = image
    scale = min(1.0, SNAPSHOT_MAX_WIDTH_PX / img.shape[1])
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        img = img.copy()
    if region is not None:
        p0 = (int(region.x * scale), int(region.y * scale))
        p1 = (int((region.x + region.w) * scale) - 1, int((region.y + region.h) * scale) - 1)
        colour = (0, 0, 255) if region.cls is VideoClass.FIRE else (255, 255, 0)
        cv2.rectangle(img, p0, p1, colour, 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
    return bytes(buf.tobytes()) if ok else None


class CameraWorker:
    """A Part: ``name`` (the camera's), ``run()``, ``progress_mono``, ``status()``."""

    def __init__(
        self,
        cam: CameraConfig,
        detector: Detector,
        out: asyncio.Queue[Observation],
        clock: Clock,
        *,
        scene_file: Path | None = None,
    ) -> None:
        self.cam = cam
        self.detector = detector
        self.out = out
        self.clock = clock
        self.name = cam.name
        self.progress_mono = clock.monotonic()
        thresholds = {
            VideoClass.FIRE: cam.fire_threshold or detector.thresholds[VideoClass.FIRE],
            VideoClass.SMOKE: cam.smoke_threshold or detector.thresholds[VideoClass.SMOKE],
        }
        self.votes = {
            cls: Vote(
                cls,
                VoteParams(
                    threshold=thresholds[cls],
                    window_frames=cam.vote_window_frames,
                    min_fraction=cam.vote_min_fraction,
                    hold_ratio=cam.hold_ratio,
                    min_region_area_px=cam.min_region_area_px,
                    update_interval_s=cam.update_interval_s,
                ),
            )
            for cls in CLASSES
        }
        self.start_thresholds = [self.votes[cls].p.threshold for cls in CLASSES]
        # regions are cut at the lower (ongoing) threshold; the vote applies its own
        self.region_thresholds = {cls: self.votes[cls].p.low for cls in CLASSES}
        self.change = ChangeMap(cam.change_background_s)
        self.scene_file = scene_file
        self.scene: SceneModel | None = None
        self.scene_note = "off"
        if cam.scene_model:
            self.scene, self.scene_note = open_scene(cam, detector, scene_file)
            log.info("camera %s: scene %s", cam.name, self.scene_note)
        self._scene_saved_mono = clock.monotonic()
        self._scene_saving: threading.Event | None = None
        self._scene_checked_mono = clock.monotonic()
        self._scene_mtime = self._file_mtime()
        self._scene_learned_mono: float | None = None
        self._scene_dirty = False
        self._frame_area_px = 0
        # per class while active: what the steady rule knows of the detection
        self._steady: dict[VideoClass, _Steady] = {}
        # bursts: the regions of the burst asked for, per class; the last verdict per
        # class (region, mono, moving or None: too few frames); a START held for one
        self._burst_regions: dict[VideoClass, Region] = {}
        self._verdicts: dict[VideoClass, tuple[Region, float, bool | None]] = {}
        self._held: dict[VideoClass, tuple[VoteEvent, float]] = {}
        self._rechecked_mono: dict[VideoClass, float] = {}
        # the classes whose burst under way looks again at a place found still
        self._rechecking: set[VideoClass] = set()
        self._still: dict[VideoClass, list[Region]] = {}  # places a burst found still (quiet)
        self.grown_across_holds = 0  # small detections kept: grown since the hold before
        self.bursts_still = 0  # detections not confirmed: still over their burst
        self.bursts_moving = 0
        # grown reports held back: the region had not moved, or had not left its range
        self.growth_held_back = {"unmoved": 0, "in_range": 0, "elsewhere": 0}
        self.steady_ended = 0  # detections ended as steady (neither moved nor grew)
        # ... of which: small ones that moved and did not grow; ones that moved only
        # early in the hold
        self.steady_ended_by = {"small": 0, "stopped": 0}
        self._ignore: np.ndarray | None = None
        self._flame_cells: list[np.ndarray | None] | None = None
        self.flame_note: str | None = None  # a flame grown past its expected-flame mask
        self.capture = Capture(
            cam.source,
            clock,
            open_timeout_s=cam.open_timeout_s,
            reconnect_max_s=cam.reconnect_max_s,
            name=cam.name,
            # the loop looks detect_fps times a second; a frame is decoded right after
            # each look and once more half-way, so a look finds a fresh picture (at
            # most half a period old); the rest are only grabbed
            decode_fps=DECODE_PER_LOOK * cam.detect_fps,
            # the configured resolution is the limit (a camera switched to its main
            # stream is a fault naming its size), never above the hard cap
            max_size=configured_limit(cam.resolution),
        )
        # fault state as last reported (None: not reported yet)
        self.reported: dict[Condition, bool | None] = {
            Condition.OFFLINE: None,
            Condition.STALE: False,
            Condition.FROZEN: False,
        }
        self._started_mono = clock.monotonic()
        self._last_seq = 0
        self._last_frame_mono: float | None = None
        self._prev_thumb: np.ndarray | None = None
        self._identical_since_mono: float | None = None
        self._analysed_thumb: np.ndarray | None = None
        self._analysed_mono = -math.inf
        self._last_result: FrameResult | None = None
        self.frames_seen = 0
        self.frames_analysed = 0
        self.frames_skipped = 0
        self.frames_bad = 0
        self.detections_sent = 0

    # ------------------------------------------------------------------- part

    async def run(self) -> None:
        self._started_mono = self.clock.monotonic()
        self.capture.start()
        period_s = 1.0 / self.cam.detect_fps
        next_look_mono = self.clock.monotonic()
        try:
            while True:
                wait_s = min(MAX_WAIT_S, max(0.0, next_look_mono - self.clock.monotonic()))
                await self.clock.sleep(wait_s)
                now = self.clock.monotonic()
                if now >= next_look_mono:
                    # detect_fps bounds the analysis rate, not the loop (which also checks faults)
                    next_look_mono = max(next_look_mono + period_s, now)
                    frame = self.capture.latest(consume=True)
                    if frame is not None and frame.seq != self._last_seq:
                        self._last_seq = frame.seq
                        await self._on_frame(frame, now)
                    # not held until the next look: the capture decodes into its picture
                    # again once nobody has it (vision/capture.py, FRAME_BUFFERS)
                    frame = None
                await self._check_faults(now)
                if now - self._scene_checked_mono >= SCENE_CHECK_S:
                    self._scene_checked_mono = now
                    self._adopt_scene_file()
                if self._scene_dirty and now - self._scene_saved_mono >= SCENE_SAVE_S:
                    self._scene_saved_mono = now
                    self._save_scene_in_thread()  # never waited for: the disk may stall
                self.progress_mono = now
        finally:
            self.capture.stop()
            await self._save_scene_at_stop()

    def _save_scene_in_thread(self) -> threading.Event | None:
        """Save the scene in a daemon thread of its own (not the loop's executor,
        whose threads the interpreter joins at exit: a save stuck on a stalled
        disk would then hold the process). None if a save is still running."""
        if self._scene_saving is not None and not self._scene_saving.is_set():
            log.warning(
                "camera %s: the last scene save has not finished (stalled disk?); "
                "not starting another",
                self.name,
            )
            return None
        done = threading.Event()
        self._scene_saving = done

        def work() -> None:
            try:
                self.save_scene()
            except Exception:
                log.exception("camera %s: saving the scene failed", self.name)
            finally:
                done.set()

        threading.Thread(target=work, name=f"scene-save-{self.name}", daemon=True).start()
        return done

    async def _save_scene_at_stop(self) -> None:
        """The last save, at stop: waited for at most ``SCENE_STOP_SAVE_S``. The
        file is replaced atomically, so a save cut short leaves the last one."""
        if self.scene is None or self.scene_file is None or not self._scene_dirty:
            return
        done = self._save_scene_in_thread()
        if done is None:
            return
        deadline = time.monotonic() + SCENE_STOP_SAVE_S  # real seconds: a real disk
        while not done.is_set():
            if time.monotonic() >= deadline:
                log.warning(
                    "camera %s: the scene's save did not finish within %g s (stalled "
                    "disk?); stopping without it (the last saved scene stays)",
                    self.name,
                    SCENE_STOP_SAVE_S,
                )
                return
            await asyncio.sleep(0.05)

    def _file_mtime(self) -> int | None:
        try:
            return None if self.scene_file is None else self.scene_file.stat().st_mtime_ns
        except OSError:
            return None

    def _adopt_scene_file(self) -> None:
        """Take the scene file when someone else wrote or removed it (``firegate
        commission camera``, ``--reset``): theirs is newer than what we learned."""
        if self.scene is None or self.scene_file is None:
            return
        mtime = self._file_mtime()
        if mtime == self._scene_mtime:
            return
        self._scene_mtime = mtime
        self.scene, self.scene_note = open_scene(self.cam, self.detector, self.scene_file)
        self._scene_dirty = False
        self._scene_learned_mono = None
        log.info("camera %s: scene file changed: %s", self.cam.name, self.scene_note)

    def save_scene(self) -> None:
        """Write the learned scene to ``scene_file`` (if any and if it changed)."""
        self._scene_saved_mono = self.clock.monotonic()
        if self.scene is None or self.scene_file is None or not self._scene_dirty:
            return
        if self._file_mtime() != self._scene_mtime:
            self._adopt_scene_file()  # commissioned or reset meanwhile: theirs wins
            return
        self._scene_dirty = False
        try:
            self.scene.save(self.scene_file)
            self._scene_mtime = self._file_mtime()
        except OSError as e:
            log.warning("camera %s: cannot save the scene to %s: %s", self.name, self.scene_file, e)

    def status(self) -> dict[str, Any]:
        age = (
            None
            if self._last_frame_mono is None
            else round(self.clock.monotonic() - self._last_frame_mono, 1)
        )
        r = self._last_result
        faults = [c.value for c, on in self.reported.items() if on]
        return {
            # the camera's line in `firegate status` (its section, like a bus's devices)
            "cameras": {
                self.name: {
                    "state": "+".join(faults)
                    if faults
                    else ("ok" if self.frames_seen else "waiting"),
                    "zone": self.cam.zone,
                    "last_frame_age_s": age,
                    "faults": faults,
                }
            },
            "source": redact_url(self.cam.source),
            "zone": self.cam.zone,
            "capture": self.capture.status(),
            "last_frame_age_s": age,
            "faults": [c.value for c, on in self.reported.items() if on],
            "frames_seen": self.frames_seen,
            "frames_analysed": self.frames_analysed,
            "frames_skipped_unchanged": self.frames_skipped,
            "frames_bad": self.frames_bad,
            "expected_flame": self.flame_note,
            "fire": None if r is None else round(r.fire, 3),
            "smoke": None if r is None else round(r.smoke, 3),
            "inference_ms": None if r is None else round(r.inference_ms, 2),
            "active": [cls.value for cls, v in self.votes.items() if v.active],
            "detections_sent": self.detections_sent,
            "growth_held_back_unmoved": self.growth_held_back["unmoved"],
            "growth_held_back_in_range": self.growth_held_back["in_range"],
            "growth_held_back_elsewhere": self.growth_held_back["elsewhere"],
            "steady_ended": self.steady_ended,
            "steady_ended_small": self.steady_ended_by["small"],
            "steady_ended_stopped": self.steady_ended_by["stopped"],
            "steady_kept_grown_across_holds": self.grown_across_holds,
            "bursts": {
                "taken": self.capture.bursts,
                "moving": self.bursts_moving,
                "still_not_confirmed": self.bursts_still,
            },
            "scene": self.scene_status(),
        }

    def scene_status(self) -> dict[str, Any]:
        if self.scene is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "learned": self.scene.learned,
            "lighting_states": len(self.scene.states),
            "note": self.scene_note,
        }

    # ----------------------------------------------------------------- frames

    async def _on_frame(self, frame: Frame, now: float) -> None:
        self.frames_seen += 1
        self._last_frame_mono = frame.mono
        try:
            # one cheap reduction serves the model input and the thumbnails
            reduced = self.detector.reduce(frame.image)
        except FrameError as e:  # a garbled frame from the decoder: skip it, keep going
            self.frames_bad += 1
            log.warning("camera %s: frame %d unusable: %s", self.cam.name, frame.seq, e)
            return
        small = small_colour(reduced)
        thumb = thumbnail(small)
        if self.reported[Condition.OFFLINE] is not False:
            await self._report(Condition.OFFLINE, False, frame.mono, "frames arriving")
        if self.reported[Condition.STALE]:
            await self._report(Condition.STALE, False, frame.mono, "frames arriving again")
        identical = (
            self._prev_thumb is not None
            and float(np.abs(thumb - self._prev_thumb).mean()) < IDENTICAL_DIFF
        )
        self._prev_thumb = thumb
        if identical:
            if self._identical_since_mono is None:
                self._identical_since_mono = frame.mono
        else:
            self._identical_since_mono = None
            if self.reported[Condition.FROZEN]:
                await self._report(Condition.FROZEN, False, frame.mono, "picture changing again")
        if self.reported[Condition.FROZEN]:
            return  # a frozen picture says nothing about the room
        self.change.update(thumb, frame.mono)
        unchanged = (
            self._analysed_thumb is not None
            and self._last_result is not None
            and float(np.abs(thumb - self._analysed_thumb).mean()) < UNCHANGED_DIFF
            and now - self._analysed_mono < self.cam.max_gap_s
        )
        fresh = not (unchanged and self._last_result is not None)
        light = lighting(small)
        if not fresh and self._last_result is not None:
            self.frames_skipped += 1
            result = self._last_result
        else:
            try:
                result = await asyncio.to_thread(
                    self.detector.detect,
                    frame.image,
                    ignore_cells=self._ignore_mask(frame.image.shape[1], frame.image.shape[0]),
                    region_thresholds=self.region_thresholds,
                    reduced=reduced,
                )
            except FrameError as e:  # a garbled frame from the decoder: skip it, keep going
                self.frames_bad += 1
                log.warning("camera %s: frame %d unusable: %s", self.cam.name, frame.seq, e)
                return
            self.frames_analysed += 1
            self._analysed_thumb = thumb
            self._analysed_mono = now
            self._last_result = result
        raw = result
        result = self.judge(result, light)
        size = (frame.image.shape[1], frame.image.shape[0])
        if self.cam.expected_flames:
            result = self._expected_flames(result, size)
        if self._frame_area_px != size[0] * size[1]:
            self._frame_area_px = size[0] * size[1]
            small_px = int(self.cam.small_flame_max_frac * self._frame_area_px)
            fire = self.votes[VideoClass.FIRE]
            fire.p = dataclasses.replace(fire.p, small_area_px=small_px)
        if self.cam.burst_s > 0:
            self._take_burst()
        want: dict[VideoClass, Region] = {}
        for vote in self.votes.values():
            region = await self._vote_step(vote, frame, result, size)
            if region is not None:
                want[vote.cls] = region
        if want:
            self._ask_burst(want, size)
        if fresh and self.scene is not None and not any(v.active for v in self.votes.values()):
            # learn only while nothing is alarmed, and only from frames really analysed
            last = self._scene_learned_mono
            self.scene.learn(raw.cells, light, 0.0 if last is None else frame.mono - last)
            self._scene_learned_mono = frame.mono
            self._scene_dirty = True

    async def _vote_step(
        self, vote: Vote, frame: Frame, result: FrameResult, size: tuple[int, int]
    ) -> Region | None:
        """One analysed frame for one class's vote: its event gated (burst, growth)
        and sent, its steady rule checked. Returns the region a burst should look at
        (None: none)."""
        bursting = self.cam.burst_s > 0
        regions = result.regions
        if not vote.active and self.cam.min_change_grey > 0:
            # to start, a region must differ from the slow background: flames
            # flicker and smoke drifts; a smoke-like white wall does neither
            regions = tuple(
                r
                for r in regions
                if r.cls is vote.cls
                and self.change.region_change(r, size) >= self.cam.min_change_grey
            )
        ev = vote.update(frame.mono, regions)
        if bursting and (ev is not None or vote.cls in self._held):
            ev = self._burst_gate(vote, ev, frame.mono)
        doubt = None if ev is None else self._growth_doubtful(vote, ev)
        if doubt is not None:
            self.growth_held_back[doubt] += 1
            ev = None  # not sent; the vote reports the region again next interval
        if ev is not None:
            if ev.kind is VoteEventKind.START:
                before = () if ev.region is None else vote.sizes_at(ev.region)
                self._steady[vote.cls] = _Steady(frame.mono, before=before)
            elif ev.kind is VoteEventKind.END:
                self._steady.pop(vote.cls, None)
            await self._send(ev, frame, result)
        elif vote.active and vote.cls not in self._held:
            await self._check_steady(vote, frame, result, size)
        if bursting and (not vote.active or vote.cls in self._held):
            return self._burst_wanted(vote, regions, frame.mono)
        return None

    # ----------------------------------------------------------------- bursts

    def _take_burst(self) -> None:
        """Judge the burst asked for, once the capture hands it over."""
        # a look a burst's time after the one that asked for it takes it (that look
        # came a moment later than the request: the inference ran in between)
        burst = self.capture.take_burst(early_s=0.25 / self.cam.detect_fps)
        if burst is None:
            return
        for cls, region in self._burst_regions.items():
            share = burst_movement(burst.crops, burst.box, region, burst.levels)
            moving = None if share is None else share >= self.cam.burst_moving_frac
            end = burst.monos[-1] if burst.monos else self.clock.monotonic()
            self._verdicts[cls] = (region, end, moving)
            if cls in self._rechecking and moving:
                # a place found still moves now: it is judged afresh
                self.votes[cls].wake(region)
                self._still[cls] = [p for p in self._still.get(cls, []) if not overlaps(p, region)]
                log.info(
                    "camera %s: the %s region%s found still before moves now: looked at again",
                    self.cam.name,
                    cls.value,
                    _where(region),
                )
            log.debug(
                "camera %s: burst of %d frames on the %s region%s: %s moving",
                self.cam.name,
                len(burst.crops),
                cls.value,
                _where(region),
                "?" if share is None else f"{share:.1%}",
            )
        self._burst_regions = {}
        self._rechecking = set()

    def _verdict(
        self, cls: VideoClass, region: Region | None, now: float, fresh_s: float | None = None
    ) -> bool | None:
        """What the last burst said of ``region``: True moving, False still, None no
        burst of the last ``fresh_s`` (default: a vote window and a burst) covers it;
        a burst with too few frames counts as moving."""
        v = self._verdicts.get(cls)
        if v is None or region is None:
            return None
        where, mono, moving = v
        if fresh_s is None:
            fresh_s = self.cam.vote_window_frames / self.cam.detect_fps + self.cam.burst_s
        if now - mono > fresh_s or not overlaps(where, region):
            return None
        return True if moving is None else moving

    def _burst_wanted(self, vote: Vote, regions: tuple[Region, ...], now: float) -> Region | None:
        """The candidate of ``vote`` that a burst should look at now, if any: the held
        START's region without a fresh verdict; else the best candidate at the start
        threshold that no burst looked at in ``BURST_RECHECK_S``; else one in a place
        a burst found still, at most every ``BURST_RECHECK_S``."""
        if vote.cls in self._held:
            region = self._held[vote.cls][0].region
            if region is None or self._verdict(vote.cls, region, now) is not None:
                return None
            return None if vote.cls in self._burst_regions else region
        if vote.cls in self._burst_regions:
            return None
        # ahead of the vote, so that a START finds its burst done: a candidate scoring
        # what starts a detection, not looked at for BURST_RECHECK_S
        fresh = [
            r
            for r in vote.candidates(regions)
            if r.score >= vote.p.threshold
            and self._verdict(vote.cls, r, now, BURST_RECHECK_S) is None
        ]
        if fresh:
            return max(fresh, key=lambda r: r.score)
        # a place found still by a burst is forgotten with its quiet place (vision/vote.py)
        still = [
            p
            for p in self._still.get(vote.cls, [])
            if any(overlaps(p, q.where) for q in vote.quiet)
        ]
        self._still[vote.cls] = still
        hushed = [
            r for r in vote.candidates(regions, quiet=False) if any(overlaps(r, p) for p in still)
        ]
        if hushed and now - self._rechecked_mono.get(vote.cls, -math.inf) >= BURST_RECHECK_S:
            self._rechecked_mono[vote.cls] = now
            self._rechecking.add(vote.cls)
            return max(hushed, key=lambda r: r.area)
        return None

    def _ask_burst(self, want: dict[VideoClass, Region], size: tuple[int, int]) -> None:
        """Ask the capture for a burst around the wanted regions (one burst at a time;
        a class whose region is not in the one under way waits for the next)."""
        if self._burst_regions:
            return
        x0 = min(r.x for r in want.values())
        y0 = min(r.y for r in want.values())
        x1 = max(r.x + r.w for r in want.values())
        y1 = max(r.y + r.h for r in want.values())
        mx, my = int(BURST_MARGIN * (x1 - x0)), int(BURST_MARGIN * (y1 - y0))
        x0, y0 = max(0, x0 - mx), max(0, y0 - my)
        x1, y1 = min(size[0], x1 + mx), min(size[1], y1 + my)
        box = (x0, y0, max(1, x1 - x0), max(1, y1 - y0))
        if self.capture.request_burst(box, self.cam.burst_s, self.cam.burst_max_frames):
            self._burst_regions = dict(want)

    def _burst_gate(self, vote: Vote, ev: VoteEvent | None, now: float) -> VoteEvent | None:
        """A START goes out only once its region's burst saw movement; while it is
        held, nothing of that detection goes out. Returns the event to send."""
        if ev is not None and ev.kind is VoteEventKind.START:
            self._held[vote.cls] = (ev, now)
        held = self._held.get(vote.cls)
        if held is None:
            return ev
        if ev is not None and ev.kind is VoteEventKind.END:
            del self._held[vote.cls]  # ended while held: it never went out
            return None
        start, since = held
        verdict = self._verdict(vote.cls, start.region, now)
        if verdict is None and now - since < self.cam.burst_s + BURST_GRACE_S:
            return None  # its burst is under way
        del self._held[vote.cls]
        if verdict is False:
            vote.end_steady(now)  # never sent: the START was not
            if start.region is not None:
                self._still.setdefault(vote.cls, []).append(start.region)
            self._rechecked_mono[vote.cls] = now  # looked at just now
            self.bursts_still += 1
            log.info(
                "camera %s: %s region%s still over a %.1f s burst (no flicker, no drift): "
                "not confirmed",
                self.cam.name,
                vote.cls.value,
                _where(start.region),
                self.cam.burst_s,
            )
            return None
        if verdict:
            self.bursts_moving += 1
        return dataclasses.replace(start, t_s=now)

    def _growth_doubtful(self, vote: Vote, ev: VoteEvent) -> str | None:
        """Why an UPDATE whose region grew over START's is not reported (None: it
        is). With the steady rules only (``steady_end_s`` > 0):

        * ``unmoved``: the region has not yet moved. A region's size in a picture
          that does not change moves only with cells at the thresholds (a lighting
          switch, a noisier night, a door left open); a growing fire flickers and
          smoke drifts as it grows.
        * ``in_range``: it is not ``small_growth_ratio`` over the largest the region
          was in its first window (``Vote.growth_base``): a fireplace's region
          hops between its flames from look to look (1 to 12 cells), and a START
          that fell low makes any later look "grown".
        * ``elsewhere``: it does not reach the place the detection started (its
          START region and as much again around, ``vote.around``): a fire spreads
          from where it started and smoke from its source; a larger region
          somewhere else in the picture is something else (a patch of sunlight
          lighting a curtain across the room from the chair it started on)."""
        if ev.kind is not VoteEventKind.UPDATE or self.cam.steady_end_s <= 0:
            return None
        st = self._steady.get(vote.cls)
        if st is None or ev.region is None:
            return None
        if ev.region.area < vote.p.growth_ratio * max(1, vote.start_area):
            return None  # not grown: a score report
        if vote.start_region is not None and not overlaps(ev.region, around(vote.start_region)):
            return "elsewhere"
        if st.moves < STEADY_MIN_MOVES:
            return "unmoved"
        if ev.region.area < vote.p.small_growth_ratio * max(1, vote.growth_base()):
            return "in_range"
        return None

    def _steady_limit_px(self, cls: VideoClass) -> float:
        """The largest region of ``cls`` that must grow over its hold (in pixels)."""
        frac = (
            self.cam.steady_flame_max_frac
            if cls is VideoClass.FIRE
            else self.cam.steady_smoke_max_frac
        )
        return frac * self._frame_area_px

    async def _check_steady(
        self, vote: Vote, frame: Frame, result: FrameResult, size: tuple[int, int]
    ) -> None:
        """A region that does not move within its hold is not fire or smoke: end it
        as steady before the engine's camera-alone hold. Movement is change from one
        analysed frame to the next inside the region (smoke drifts, flames flicker),
        in ``STEADY_MIN_MOVES`` looks, the latest within the last ``STEADY_LATE_SHARE``
        of the hold: smoke goes on drifting, flames go on flickering; a region a
        person walked through and left does not.
        A small region that moved must also grow over the hold: a fire region up to
        ``steady_flame_max_frac`` of the frame (a candle or a fireplace flickers as
        much as a fire and stays its size), a smoke region up to
        ``steady_smoke_max_frac`` (a wisp that neither spreads nor thickens: a patch
        of sunlight, a person's shadow, steam from a kettle; a fire's smoke spreads).
        A region that grew without moving is steady too: only thresholds moved it."""
        if self.cam.steady_end_s <= 0 or vote.cls not in self._steady:
            return
        st = self._steady[vote.cls]
        # the detection's own region, not the frame's best of its class: that may
        # be a place already ended as steady, which a person walking by changes
        # and "grows" (a long IR night's camera-alone alarm, bench --night-min)
        box = vote.latest_region()
        st.looks.append(0 if box is None else box.area)
        if (
            box is not None
            and self.change.region_change(box, size, since_previous=True) >= self.cam.motion_grey
        ):
            st.moves += 1
            st.last_move_mono = frame.mono
        if frame.mono - st.start_mono < self.cam.steady_end_s:
            return
        moved = st.moves >= STEADY_MIN_MOVES
        # it must still be moving: in the last share of the hold, not only once early
        # in it (a person walking through a large IR-night region, then gone)
        late = st.last_move_mono >= frame.mono - STEADY_LATE_SHARE * self.cam.steady_end_s
        if moved and late:
            area = max(vote.typical_area(), vote.start_area)
            if area > self._steady_limit_px(vote.cls):
                return  # smoke that drifts over a large area, a large fire that flickers
            if st.grew(vote.p.small_growth_ratio):
                return  # a small region that moved and grew over its hold
            grown, by = st.grew_across(vote.p.small_growth_ratio)
            if grown:
                # ... or that grew since the hold before it in the same place
                if not st.grown_across:
                    st.grown_across = True
                    self.grown_across_holds += 1
                    log.info(
                        "camera %s: %s region grew %.1fx since it was last ended as steady: held",
                        self.cam.name,
                        vote.cls.value,
                        by,
                    )
                return
        still = [
            r
            for r in result.regions
            if r.cls is vote.cls
            and self.change.region_change(r, size, since_previous=True) < self.cam.motion_grey
        ]
        # a small region that moved and did not grow: if it restarts here, larger (a
        # quiet place needs that), it is also judged against this hold's sizes
        sizes = tuple(st.looks) if moved and late else ()
        ev = vote.end_steady(frame.mono, still, sizes)
        del self._steady[vote.cls]
        if ev is not None:
            self.steady_ended += 1
            if not moved:
                why = "no movement, no growth"
            elif late:
                self.steady_ended_by["small"] += 1
                why = "small, moved but did not grow"
            else:
                self.steady_ended_by["stopped"] += 1
                why = (
                    f"moved, but not in its last {STEADY_LATE_SHARE * self.cam.steady_end_s:.0f} s"
                )
            log.info(
                "camera %s: %s region steady for %.0f s (%s): not fire or smoke",
                self.cam.name,
                vote.cls.value,
                frame.mono - st.start_mono,
                why,
            )
            await self._send(ev, frame, result)

    def judge(self, result: FrameResult, light: tuple[float, float]) -> FrameResult:
        """The frame's result with only the cells above this camera's normal scene
        (unchanged without a scene model or before anything is learned)."""
        if self.scene is None:
            return result
        normal = self.scene.normal(light)
        gated = self.scene.gate(result.cells, light, normal)
        # a region starts as the gate says, but its size (hence growth) is measured
        # only on its core: cells well above the model's threshold and, once the
        # scene is learned, well above this scene's normal too (twice the margin):
        # cells hovering at either come and go with noise, a person walking by or
        # a patch of sunlight, and must never make a region "grow"
        m = self.scene.margin
        core = np.stack(
            [result.cells[c] >= t + m * (1.0 - t) for c, t in enumerate(self.start_thresholds)]
        )
        if normal is not None:
            core &= result.cells >= normal + 2.0 * m
        regions: list[Region] = []
        for c, cls in enumerate(CLASSES):
            regions.extend(
                cell_regions(
                    gated[c],
                    self.region_thresholds[cls],
                    cls,
                    result.frame_size,
                    core[c],
                )
            )
        regions.sort(key=lambda r: -r.score)
        return FrameResult(
            fire=float(gated[0].max()),
            smoke=float(gated[1].max()),
            regions=tuple(regions),
            cells=gated,
            frame_size=result.frame_size,
            inference_ms=result.inference_ms,
        )

    def _expected_flames(self, result: FrameResult, size: tuple[int, int]) -> FrameResult:
        """Fire regions centred in an expected-flame polygon (a hob, a burner) are
        dropped while at most that polygon's ``max_frac`` of the frame; a larger one
        is kept, with a note (logged once per growth, shown in status)."""
        if self._flame_cells is None:
            mask_size = self.cam.resolution or size
            self._flame_cells = [
                ignore_cells([f.polygon], mask_size, self.detector.grid, min_cover=0.25)
                for f in self.cam.expected_flames
            ]
        rows, cols = self.detector.grid
        frame_px = size[0] * size[1]
        keep = []
        note = None
        for r in result.regions:
            if r.cls is VideoClass.FIRE:
                cx = min(cols - 1, int((r.x + r.w / 2) * cols / size[0]))
                cy = min(rows - 1, int((r.y + r.h / 2) * rows / size[1]))
                flames = zip(self.cam.expected_flames, self._flame_cells, strict=True)
                inside = [
                    (i, f)
                    for i, (f, cells) in enumerate(flames)
                    if cells is not None and cells[cy, cx]
                ]
                if inside:
                    limit = max(f.max_frac for _, f in inside)
                    if r.area <= limit * frame_px:
                        continue
                    note = (
                        f"fire region {r.area / frame_px:.1%} of the frame grew past expected "
                        f"flame {inside[0][0]} (limit {limit:.1%}): counted"
                    )
            keep.append(r)
        if note is not None and self.flame_note is None:
            log.warning("camera %s: %s", self.cam.name, note)
        self.flame_note = note
        if len(keep) == len(result.regions):
            return result
        return dataclasses.replace(result, regions=tuple(keep))

    def _ignore_mask(self, width: int, height: int) -> np.ndarray | None:
        if not self.cam.masks:
            return None
        if self._ignore is None:
            # masks are drawn at the configured resolution; the grid maps proportionally
            size = self.cam.resolution or (width, height)
            self._ignore = ignore_cells(self.cam.masks, size, self.detector.grid)
        return self._ignore

    async def _send(self, ev: VoteEvent, frame: Frame, result: FrameResult) -> None:
        h, w = frame.image.shape[:2]
        snap = snapshot_jpeg(frame.image, ev.region) if ev.kind is VoteEventKind.START else None
        obs = VideoDetection(
            source=self.cam.name,
            zone=self.cam.zone,
            wall=frame.wall,
            mono=frame.mono,
            cls=ev.cls,
            score=round(ev.score, 4),
            confirmed=True,
            active=ev.kind is not VoteEventKind.END,
            regions=() if ev.region is None else (ev.region,),
            frame_size=(w, h),
            snapshot_jpeg=snap,
        )
        log.info(
            "camera %s: %s %s score %.2f%s",
            self.cam.name,
            ev.cls.value,
            ev.kind.value,
            ev.score,
            _where(ev.region),
        )
        self.detections_sent += 1
        await self.out.put(obs)

    # ----------------------------------------------------------------- faults

    async def _check_faults(self, now: float) -> None:
        cap = self.capture
        opening_too_long = (
            cap.state == CaptureState.OPENING
            and self._last_frame_mono is None
            and now - cap.state_since_mono > self.cam.open_timeout_s
        )
        if (cap.state == CaptureState.OFFLINE or opening_too_long) and not self.reported[
            Condition.OFFLINE
        ]:
            detail = cap.last_error or "cannot open the source"
            await self._report(Condition.OFFLINE, True, now, detail)
        # liveness is any frame grabbed, analysed or not (most are never decoded)
        last = [t for t in (self._last_frame_mono, cap.last_grab_mono) if t is not None]
        since = max(last) if last else self._started_mono
        stale = now - since >= self.cam.stale_after_s
        if not stale and self.reported[Condition.STALE]:
            await self._report(Condition.STALE, False, now, "frames arriving again")
        if stale and not self.reported[Condition.STALE] and not self.reported[Condition.OFFLINE]:
            await self._report(
                Condition.STALE, True, now, f"no frame for {now - since:.0f} s ({cap.state.value})"
            )
        frozen = (
            self._identical_since_mono is not None
            and (self._last_frame_mono or now) - self._identical_since_mono
            >= self.cam.frozen_after_s
        )
        if frozen and not self.reported[Condition.FROZEN]:
            await self._report(
                Condition.FROZEN,
                True,
                now,
                f"identical frames for {now - (self._identical_since_mono or now):.0f} s",
            )

    async def _report(self, cond: Condition, active: bool, mono: float, detail: str) -> None:
        self.reported[cond] = active
        wall = self.clock.wall() - (self.clock.monotonic() - mono)
        log.log(
            logging.WARNING if active else logging.INFO,
            "camera %s: %s %s (%s)",
            self.cam.name,
            cond.value,
            "active" if active else "cleared",
            detail,
        )
        await self.out.put(
            StateChange(
                source=self.cam.name,
                zone=self.cam.zone,
                wall=wall,
                mono=mono,
                kind=DeviceKind.CAMERA,
                condition=cond,
                active=active,
                detail=detail,
            )
        )


class CameraWithoutModel:
    """Stands in for a CameraWorker when no vision model could be loaded: reports
    the camera OFFLINE once (a camera fault, forwarded like any other, so the
    centre knows video confirmation is gone) and keeps the watchdog fed. The
    rest of the gateway runs on: detectors matter more than any camera."""

    IDLE_S = 5.0

    def __init__(
        self, cam: CameraConfig, problem: str, out: asyncio.Queue[Observation], clock: Clock
    ) -> None:
        self.cam = cam
        self.problem = problem
        self.out = out
        self.clock = clock
        self.name = cam.name
        self.progress_mono = clock.monotonic()

    async def run(self) -> None:
        now = self.clock.monotonic()
        await self.out.put(
            StateChange(
                source=self.cam.name,
                zone=self.cam.zone,
                wall=self.clock.wall(),
                mono=now,
                kind=DeviceKind.CAMERA,
                condition=Condition.OFFLINE,
                active=True,
                detail=f"no vision model: {self.problem}",
            )
        )
        while True:
            self.progress_mono = self.clock.monotonic()
            await self.clock.sleep(self.IDLE_S)

    def status(self) -> dict[str, Any]:
        return {
            "cameras": {
                self.name: {
                    "state": Condition.OFFLINE.value,
                    "zone": self.cam.zone,
                    "faults": [Condition.OFFLINE.value],
                    "problem": "no vision model",
                }
            },
            "source": redact_url(self.cam.source),
            "zone": self.cam.zone,
            "faults": [Condition.OFFLINE.value],
            "frames_analysed": 0,
            "problem": f"no vision model: {self.problem}",
        }


def _where(region: Region | None) -> str:
    """A region in a log line, in words (a dataclass repr means nothing to a maintainer)."""
    if region is None:
        return ""
    return f", region {region.w}x{region.h} px at ({region.x}, {region.y})"
