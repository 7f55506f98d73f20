"""Frame capture through OpenCV, in a daemon thread.

OpenCV's reads block (a network stream can hang inside FFmpeg for a long
time), so each source gets its own daemon thread that keeps only the latest
frame. The event loop never waits on it: it reads ``latest()`` and judges
staleness by the frame's age, so a stuck capture cannot block the loop.

A capture thread must still have left OpenCV before the interpreter exits: a
daemon thread that comes back from ``grab()`` while Python finalizes is ended
by a forced unwind through OpenCV's C++ frames, which aborts the process
("terminate called without an active exception", SIGABRT, a core dump and a
failed unit). So whoever ends the process calls ``join_all()`` once the parts
have stopped: every thread is asked to stop and joined, bounded; a network
read ends within ``open_timeout_s`` (FFmpeg's read timeout), a file or a USB
camera within a frame. ``join_all()`` names the threads it could not join; the
caller must then leave without finalizing (``os._exit``, see
agent/commands/run.py), never with a thread still inside OpenCV.

Sources: a video file, an image sequence (``frames/%04d.jpg``), ``rtsp://``,
``http(s)://`` (FFmpeg, with open and read timeouts), ``usb:N`` or
``/dev/videoN``. Files are read at their own frame rate (times the clock's
speed) and are not reopened once they end; streams and cameras reconnect with
exponential backoff.

Every frame is grabbed (a live stream must be drained, or it lags and its
buffers fill), but with ``decode_fps`` set a frame is retrieved, i.e. converted
to a BGR picture, only when ``1 / decode_fps`` has passed since the last one or
the consumer has taken the last one (``latest(consume=True)``), so that the
next look always finds a fresh picture: nobody looks at the others. (For
compressed streams OpenCV's FFmpeg backend still decodes every packet in
``grab()``, since later frames depend on earlier ones; what is saved is the
colour conversion and copy of each picture nobody analyses.)
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from agent.clock import Clock
from agent.logs import redact_url
from agent.siteconfig.models import camera_source_is_file

log = logging.getLogger(__name__)

DEFAULT_FILE_FPS = 25.0

# every capture thread not yet ended, whatever Capture started it (join_all)
_live_lock = threading.Lock()
_live: dict[threading.Thread, threading.Event] = {}


def join_all(timeout_s: float) -> list[str]:
    """Ask every capture thread of the process to stop and wait, at most
    ``timeout_s`` in all, for each to leave OpenCV. Returns the names of the
    threads still running (stuck in a read); empty when all have ended."""
    with _live_lock:
        live = list(_live.items())
    for _, stop in live:
        stop.set()
    deadline = time.monotonic() + timeout_s
    for thread, _ in live:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t, _ in live if t.is_alive()]


class CaptureState(enum.StrEnum):
    OPENING = "opening"
    OPEN = "open"
    OFFLINE = "offline"  # cannot be opened, or the stream was lost; retrying
    ENDED = "ended"  # a file or image sequence has no more frames
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray  # BGR uint8
    seq: int  # 1, 2, ... in capture order
    wall: float  # capture time
    mono: float


def open_capture(source: str, timeout_s: float) -> cv2.VideoCapture:
    """An OpenCV capture for a configured source (may be not ``isOpened()``)."""
    ms = int(timeout_s * 1000)
    if source.startswith("usb:"):
        return cv2.VideoCapture(int(source[4:]))
    if source.startswith("/dev/video"):
        return cv2.VideoCapture(source, cv2.CAP_V4L2)
    # one decoder thread per camera: FFmpeg's default (one per core, frame threading)
    # holds extra decoded pictures per thread in memory and buys nothing at 2 looks/s
    one = [cv2.CAP_PROP_N_THREADS, 1]
    if camera_source_is_file(source):
        return cv2.VideoCapture(source, cv2.CAP_ANY, one)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms, *one]
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


class Capture:
    """The capture thread of one source. ``start`` and ``stop`` never block."""

    def __init__(
        self,
        source: str,
        clock: Clock,
        *,
        open_timeout_s: float = 10.0,
        reconnect_max_s: float = 30.0,
        name: str = "",
        decode_fps: float | None = None,
    ) -> None:
        """``decode_fps``: frames are retrieved (and published by ``latest()``) at
        this rate in clock time, plus the first frame grabbed after the consumer
        took the latest one and the first frame after each open; None retrieves
        every frame."""
        self.source = source
        self.clock = clock
        self.open_timeout_s = open_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.name = name or redact_url(source)
        if decode_fps is not None and decode_fps <= 0:
            raise ValueError(f"decode_fps must be positive, got {decode_fps}")
        self.decode_interval_s = 0.0 if decode_fps is None else 1.0 / decode_fps
        self.is_file = camera_source_is_file(source) and not source.startswith("/dev/")
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._taken = True  # the consumer has the latest frame: decode the next one
        self.last_grab_mono: float | None = None  # any frame, decoded or not (liveness)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = CaptureState.STOPPED
        self.state_since_mono = clock.monotonic()
        self.last_error = ""
        self.frames = 0  # grabbed
        self.decoded = 0  # retrieved and published
        self.opens = 0

    def start(self) -> None:
        """Start capturing (again). A previous thread that was asked to stop but is
        still stuck in a read is left to end on its own; a fresh one takes over."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._set_state(CaptureState.OPENING)
        self._thread = threading.Thread(
            target=self._run_tracked, args=(self._stop,), name=f"capture:{self.name}", daemon=True
        )
        with _live_lock:
            _live[self._thread] = self._stop
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; a thread stuck in a read ends when the read returns."""
        self._stop.set()

    def join(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the thread to end (after ``stop``);
        True when no thread of this capture is running any more."""
        t = self._thread
        if t is not None:
            t.join(timeout_s)
        return t is None or not t.is_alive()

    def latest(self, *, consume: bool = False) -> Frame | None:
        """The latest decoded frame. ``consume=True`` says the caller will analyse
        it, so the capture decodes the next frame it grabs."""
        with self._lock:
            if consume and self._latest is not None:
                self._taken = True
            return self._latest

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "frames": self.frames,
            "decoded": self.decoded,
            "opens": self.opens,
            "last_error": self.last_error,
        }

    # ----------------------------------------------------------------- thread

    def _set_state(self, state: CaptureState, error: str = "") -> None:
        if state != self.state:
            self.state_since_mono = self.clock.monotonic()
        self.state = state
        if error:
            self.last_error = error

    def _run_tracked(self, stop: threading.Event) -> None:
        try:
            self._run(stop)
        except Exception as e:  # the thread must always leave _live
            log.error("camera %s: capture stopped by %s: %s", self.name, type(e).__name__, e)
            self._set_state(CaptureState.OFFLINE, f"{type(e).__name__}: {e}")
        finally:
            with _live_lock:
                _live.pop(threading.current_thread(), None)

    def _run(self, stop: threading.Event) -> None:
        backoff_s = 1.0
        while not stop.is_set():
            self._set_state(CaptureState.OPENING)
            try:
                cap = open_capture(self.source, self.open_timeout_s)
            except Exception as e:  # OpenCV raises cv2.error on bad arguments
                cap = None
                self.last_error = f"{type(e).__name__}: {e}"
            if cap is None or not cap.isOpened():
                if cap is not None:
                    cap.release()
                self._set_state(CaptureState.OFFLINE, self.last_error or "cannot open the source")
                log.warning(
                    "camera %s: cannot open %s; retrying in %.0f s",
                    self.name,
                    redact_url(self.source),
                    backoff_s,
                )
                if stop.wait(backoff_s / self.clock.speed):
                    break
                backoff_s = min(self.reconnect_max_s, backoff_s * 2)
                continue
            self.opens += 1
            got = self._read_loop(cap, stop)
            cap.release()
            if stop.is_set():
                break
            if self.is_file:
                self._set_state(CaptureState.ENDED, "end of file")
                log.info("camera %s: %s ended after %d frames", self.name, self.source, self.frames)
                return
            if got:
                backoff_s = 1.0  # it worked for a while: reconnect promptly
            self._set_state(CaptureState.OFFLINE, "stream lost")
            log.warning("camera %s: stream lost; reconnecting in %.0f s", self.name, backoff_s)
            if stop.wait(backoff_s / self.clock.speed):
                break
            backoff_s = min(self.reconnect_max_s, backoff_s * 2)
        if stop is self._stop:  # not superseded by a fresh thread after a restart
            self._set_state(CaptureState.STOPPED)

    def _read_loop(self, cap: cv2.VideoCapture, stop: threading.Event) -> int:
        """Read until the source ends, fails or ``stop``; returns the frames read."""
        period_s = 0.0
        if self.is_file:
            fps = cap.get(cv2.CAP_PROP_FPS)
            fps = fps if 0 < fps <= 240 else DEFAULT_FILE_FPS
            period_s = 1.0 / (fps * self.clock.speed)
        n = 0
        next_t = time.monotonic()
        last_decode_mono = -math.inf
        while not stop.is_set():
            if not cap.grab():
                return n
            if stop.is_set():  # stopped while the read blocked: publish nothing more
                return n
            n += 1
            self.frames += 1
            now_mono = self.clock.monotonic()
            self.last_grab_mono = now_mono
            # the first frame of an open is always decoded (it proves the source works)
            if n == 1 or self._taken or now_mono - last_decode_mono >= self.decode_interval_s:
                ok, image = cap.retrieve()
                if not ok or image is None or image.size == 0:
                    return n
                last_decode_mono = now_mono
                self.decoded += 1
                if self.state != CaptureState.OPEN:
                    self._set_state(CaptureState.OPEN)
                frame = Frame(image, self.frames, self.clock.wall(), now_mono)
                with self._lock:
                    self._latest = frame
                    self._taken = False
            if period_s:
                # files are paced like a live camera; real time here, it is I/O pacing
                next_t += period_s
                delay = next_t - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return n
                if delay < -1.0:
                    next_t = time.monotonic()
        return n
