"""Capture decodes only the frames someone will look at: every frame of a real
video file is grabbed, but only ``decode_fps`` of them a second are retrieved."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import vision.capture as capture_mod
from agent.clock import ScaledClock
from agent.events import Observation
from agent.siteconfig.models import CameraConfig
from vision.camera import CameraWorker
from vision.capture import FRAME_BUFFERS, Capture, CaptureState, Frame
from vision.detector import Detector

FPS = 25.0
SPEED = 5.0  # simulated seconds per real second


class CountingCapture:
    """A real cv2.VideoCapture that counts grab, retrieve and read calls."""

    def __init__(self, cap: cv2.VideoCapture) -> None:
        self._cap = cap
        self.grabs = 0
        self.retrieves = 0
        self.retrieves_into = 0  # into a picture buffer given by the caller
        self.reads = 0

    def grab(self) -> bool:
        self.grabs += 1
        return bool(self._cap.grab())

    def retrieve(self, *a: Any) -> tuple[bool, np.ndarray | None]:
        self.retrieves += 1
        self.retrieves_into += bool(a and a[0] is not None)
        return self._cap.retrieve(*a)  # type: ignore[no-any-return]

    def read(self, *a: Any) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        return self._cap.read(*a)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cap, name)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[CountingCapture]:
    opened: list[CountingCapture] = []
    real_open = capture_mod.open_capture

    def open_counting(source: str, timeout_s: float) -> Any:
        c = CountingCapture(real_open(source, timeout_s))
        opened.append(c)
        return c

    monkeypatch.setattr(capture_mod, "open_capture", open_counting)
    return opened


def write_clip(
    path: Path, n: int, size: tuple[int, int] = (320, 240), fourcc: str = "MJPG"
) -> Path:
    """``n`` frames at 25 fps, each different (a bright bar moving over noise)."""
    rng = np.random.default_rng(3)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, size)
    assert vw.isOpened()
    for i in range(n):
        img = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        x = (i * 9) % (size[0] - 20)
        img[:, x : x + 20] = 220
        vw.write(img)
    vw.release()
    return path


def run_to_end(cap: Capture, timeout_s: float = 10.0) -> None:
    cap.start()
    deadline = time.monotonic() + timeout_s
    while cap.state != CaptureState.ENDED and time.monotonic() < deadline:
        time.sleep(0.02)
    cap.stop()
    assert cap.state == CaptureState.ENDED, cap.status()


def test_unwatched_frames_are_grabbed_not_decoded(
    tmp_path: Path, counted: list[CountingCapture]
) -> None:
    path = write_clip(tmp_path / "clip.avi", 100)  # 4 s of video at 25 fps
    cap = Capture(str(path), ScaledClock(SPEED), decode_fps=2.0)
    run_to_end(cap)
    (c,) = counted
    assert c.reads == 0
    assert c.grabs == 101  # every frame, then the one that finds the end
    assert cap.frames == 100
    # 4 s of clock time at 2 decodes a second: about 8 (+1 for the first frame),
    # where decoding everything would be 100
    assert 5 <= c.retrieves <= 12, c.retrieves
    assert cap.decoded == c.retrieves
    latest = cap.latest()
    assert latest is not None and latest.image.shape == (240, 320, 3)
    assert latest.seq <= 100


def test_without_decode_fps_every_frame_is_decoded(
    tmp_path: Path, counted: list[CountingCapture]
) -> None:
    path = write_clip(tmp_path / "clip.avi", 30)
    cap = Capture(str(path), ScaledClock(SPEED))
    run_to_end(cap)
    (c,) = counted
    assert c.retrieves == cap.decoded == 30
    latest = cap.latest()
    assert latest is not None and latest.seq == 30


def test_decode_fps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="decode_fps"):
        Capture("x.avi", ScaledClock(1.0), decode_fps=0.0)


async def test_camera_worker_decodes_about_twice_its_detection_rate(
    tmp_path: Path, counted: list[CountingCapture]
) -> None:
    path = write_clip(tmp_path / "clip.avi", 150)  # 6 s at 25 fps
    # without bursts (burst_s: 0): a burst on a candidate retrieves ~1 s of frames more
    cam = CameraConfig(
        name="cam1", zone="hall", source=str(path), detect_fps=1.0, stale_after_s=60.0, burst_s=0.0
    )
    q: asyncio.Queue[Observation] = asyncio.Queue()
    w = CameraWorker(cam, Detector.load(), q, ScaledClock(SPEED))
    task = asyncio.create_task(w.run())
    deadline = time.monotonic() + 10.0
    while w.capture.state != CaptureState.ENDED and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # polls a thread's state: no event to wait on
    await asyncio.sleep(0.3)  # a last look at the last decoded frame
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    (c,) = counted
    assert c.grabs == 151
    # one after each look (1 a second) and one half-way: about 2 a second of 6 s, not 150
    assert 8 <= c.retrieves <= 20, c.retrieves
    # every look found a fresh decoded frame: about one seen per clock second
    assert 4 <= w.frames_seen <= c.retrieves, (w.frames_seen, c.retrieves)
    assert w.status()["capture"]["decoded"] == c.retrieves
    # the worker lets each frame go once analysed, so the capture decodes into the same
    # few pictures again (the first ones are allocated)
    assert c.retrieves_into >= c.retrieves - 2 * FRAME_BUFFERS, (c.retrieves_into, c.retrieves)


def test_pictures_are_decoded_into_reused_buffers_never_into_one_still_held(
    tmp_path: Path, counted: list[CountingCapture]
) -> None:
    """Every picture is retrieved (no ``decode_fps``) from a real mp4v clip through
    FFmpeg while a consumer keeps some of the frames it takes and drops the others:
    the capture decodes into a few buffers it reuses, never into one a kept frame
    (or a view of it) still holds, and every frame it published is the clip's
    picture of that number."""
    path = write_clip(tmp_path / "clip.mp4", 80, fourcc="mp4v")
    reference = []
    plain = cv2.VideoCapture(str(path))
    while True:
        ok, img = plain.read()
        if not ok:
            break
        reference.append(img)
    plain.release()
    assert len(reference) == 80

    cap = Capture(str(path), ScaledClock(SPEED))
    kept: list[Frame] = []
    views: list[np.ndarray] = []
    seen = 0
    cap.start()
    deadline = time.monotonic() + 15.0
    last_seq = 0
    while cap.state != CaptureState.ENDED and time.monotonic() < deadline:
        frame = cap.latest(consume=True)
        if frame is not None and frame.seq != last_seq:
            last_seq = frame.seq
            seen += 1
            # a frame in hand is the clip's picture of that number
            assert np.array_equal(frame.image, reference[frame.seq - 1]), frame.seq
            if seen % 4 == 0:
                kept.append(frame)  # held across many later decodes
            elif seen % 4 == 1:
                views.append(frame.image[10:50, 20:80])  # a view keeps its picture too
            del frame
        time.sleep(0.003)
    cap.stop()
    assert cap.state == CaptureState.ENDED, cap.status()
    (c,) = counted
    assert c.retrieves == 80 and seen >= 10, (c.retrieves, seen)
    # a frame kept long after, or cut by a view, was never decoded over
    for f in kept:
        assert np.array_equal(f.image, reference[f.seq - 1]), f.seq
    assert len(kept) >= 2 and len(views) >= 2
    # most pictures went into a reused buffer, not a fresh ~2.8 MB allocation each
    assert c.retrieves_into >= 80 // 3, (c.retrieves_into, len(kept), len(views))
