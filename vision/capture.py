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

A picture is decoded into one of ``FRAME_BUFFERS`` buffers that nobody refers
to any more (no ``Frame``, no view of it: CPython's reference count says so),
so a held frame is never overwritten; when each is still held a fresh one is
allocated and takes the oldest one's place in the set.

A burst (``request_burst``): the consumer asks for the next frames of a short
time (``seconds``, at most ``max_frames``) at the camera's own rate, cropped to
a box of the frame; each is retrieved, cut to the box, turned grey and shrunk
by a whole factor (at least 2) to at most ``BURST_CROP_PX`` a side in this
thread (with the whole frame's mean level, for exposure), and ``take_burst()``
hands the crops over once the time is up. Only the crops are kept (a few KB
each), never the frames; what they say is the consumer's to judge. A burst
frame costs its retrieval (the colour conversion a grab skips) and ~0.1 ms.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# FFmpeg's and OpenCV's own lines ("[tcp @ 0x...] Connection refused", "[mjpeg @ 0x...]
# overread 8", "[ WARN:0@0.5] global cap.cpp ...") flood the journal on every retry and
# mean nothing to a maintainer: silenced, our own log lines say what happened. FFmpeg
# reads its level once, at the first capture; set FIREGATE_OPENCV_LOGS=1 to see them.
if not os.environ.get("FIREGATE_OPENCV_LOGS"):
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # after the log levels above
import numpy as np

from agent.clock import Clock
from agent.logs import redact_url
from agent.siteconfig.models import camera_source_is_file

log = logging.getLogger(__name__)
if not os.environ.get("FIREGATE_OPENCV_LOGS"):
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # cv2 imported earlier

DEFAULT_FILE_FPS = 25.0
# the largest picture decoded when the camera has no ``resolution``: 4K UHD (a
# decoded 8000x8000 picture took 762 MB, twice the unit's MemoryMax)
MAX_FRAME_SIZE = (3840, 2160)
BAD_FRAMES_FAULT = 20  # damaged pictures in a row that make the stream a fault
BURST_CROP_PX = 64  # a burst's crops are shrunk to at most this many pixels a side
# BGR pictures a capture decodes into and reuses once nobody holds them: the published
# one (which the camera analyses) and the next. A fresh ~2.8 MB allocation per picture
# at 1280x720 cost ~700 page faults each and left the allocator's heaps fragmented
# (bench/footprint.py --scenario cameras4: RSS max ~188 -> ~179 MB with this)
FRAME_BUFFERS = 2

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


@dataclass(frozen=True, slots=True)
class Burst:
    """The crops of a burst: grey uint8 pictures of ``box`` (x, y, w, h in the
    pixels of a ``frame_size`` frame) shrunk to at most ``BURST_CROP_PX`` a side,
    in capture order, with their capture times."""

    box: tuple[int, int, int, int]
    frame_size: tuple[int, int]
    crops: tuple[np.ndarray, ...]
    monos: tuple[float, ...]
    levels: tuple[float, ...]  # each whole frame's mean level (exposure, lights)
    requested_mono: float


@dataclass(slots=True)
class _BurstRequest:
    box: tuple[int, int, int, int]
    seconds: float
    max_frames: int
    requested_mono: float
    frame_size: tuple[int, int] | None = None
    crops: list[np.ndarray] = field(default_factory=list)
    monos: list[float] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)


def crop_grey(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``box`` (x, y, w, h; clamped to the frame) of a BGR frame, grey, shrunk by a
    whole factor (at least 2) to at most ``BURST_CROP_PX`` a side: pixel averaging,
    so sensor noise and compression's ripples average out (a whole factor is ~6x
    cheaper than any other; the last few rows and columns may be left out)."""
    h, w = image.shape[:2]
    x0, y0 = min(max(0, box[0]), w - 1), min(max(0, box[1]), h - 1)
    x1, y1 = max(x0 + 1, min(w, box[0] + box[2])), max(y0 + 1, min(h, box[1] + box[3]))
    k = max(2, math.ceil(max(x1 - x0, y1 - y0) / BURST_CROP_PX))
    cw, ch = max(1, (x1 - x0) // k), max(1, (y1 - y0) // k)
    roi = image[y0 : y0 + min(y1 - y0, ch * k), x0 : x0 + min(x1 - x0, cw * k)]
    grey = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
    small: np.ndarray = cv2.resize(grey, (cw, ch), interpolation=cv2.INTER_AREA)
    return small


def frame_level(image: np.ndarray) -> float:
    """The frame's mean level, on a sparse grid of its pixels (exposure, lights)."""
    return float(cv2.resize(image, (64, 36), interpolation=cv2.INTER_NEAREST).mean())


def open_capture(source: str, timeout_s: float) -> cv2.VideoCapture:
    """An OpenCV capture for a configured source (may be not ``isOpened()``)."""
    ms = int(timeout_s * 1000)
    if source.startswith("usb:"):
        index = int(source[4:])
        if index < 0:  # VideoCapture(-1) means "any camera" and has crashed the process
            raise ValueError(f"{source}: a USB camera index is 0 or more (usb:0 is the first)")
        return cv2.VideoCapture(index)
    if source.startswith("/dev/video"):
        return cv2.VideoCapture(source, cv2.CAP_V4L2)
    # one decoder thread per camera: FFmpeg's default (one per core, frame threading)
    # holds extra decoded pictures per thread in memory and buys nothing at 2 looks/s
    one = [cv2.CAP_PROP_N_THREADS, 1]
    if camera_source_is_file(source):
        return cv2.VideoCapture(source, cv2.CAP_ANY, one)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms, *one]
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


def why_unreachable(source: str, timeout_s: float = 2.0) -> str:
    """For a network source OpenCV could not open: what a plain TCP connection to its
    host says ("connection refused", "timed out"), or "" when it connects (the
    stream itself was not understood) or the source is not a network address."""
    parts = urlsplit(source)
    if parts.scheme not in ("rtsp", "rtsps", "http", "https") or not parts.hostname:
        return ""
    default = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port or default
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return ""
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        return f"{parts.hostname}:{parts.port or default}: {why.lower()}"


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's frame header (SOF), without decoding; None if
    no header is found."""
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        seg = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(data[i + 5 : i + 7], "big")
            w = int.from_bytes(data[i + 7 : i + 9], "big")
            return w, h
        i += 2 + seg
    return None


def jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG ends with its end-of-image marker (a truncated one does not)."""
    return data[:2] == b"\xff\xd8" and data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"


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
        max_size: tuple[int, int] | None = None,
    ) -> None:
        """``decode_fps``: frames are retrieved (and published by ``latest()``) at
        this rate in clock time, plus the first frame grabbed after the consumer
        took the latest one and the first frame after each open; None retrieves
        every frame.

        ``max_size`` (width, height; default ``MAX_FRAME_SIZE``): a source with
        more pixels than that is refused before any picture is decoded where the
        stream says its size on opening (FFmpeg does for MJPEG, H.264, files), or
        from each JPEG's header in an MJPEG stream, which is read undecoded and
        decoded here; it is OFFLINE with its size and the fix in ``last_error``,
        and retried with backoff (the camera may be set to a smaller stream).
        An MJPEG stream whose pictures are damaged (truncated) is OFFLINE after
        ``BAD_FRAMES_FAULT`` of them in a row; none of them is published."""
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
        self.max_size = max_size or MAX_FRAME_SIZE
        self.bad_frames = 0  # damaged pictures (MJPEG streams), never published
        self._read_error = ""  # why the last read loop ended, when it was the stream's fault
        self._burst: _BurstRequest | None = None  # asked for, not yet taken
        self.bursts = 0  # completed
        self.burst_frames = 0  # retrieved for bursts (counted once more if also published)
        self._buffers: list[np.ndarray] = []  # see FRAME_BUFFERS; only this thread uses it

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

    def request_burst(
        self, box: tuple[int, int, int, int], seconds: float, max_frames: int
    ) -> bool:
        """Ask for the frames grabbed in the next ``seconds`` (clock time; at most
        ``max_frames``), each cropped to ``box`` (x, y, w, h, frame pixels). False
        (nothing asked) while another burst has not been taken yet."""
        if seconds <= 0 or max_frames < 1:
            raise ValueError(f"a burst needs a time and frames, got {seconds} s, {max_frames}")
        with self._lock:
            if self._burst is not None:
                return False
            self._burst = _BurstRequest(box, seconds, max_frames, self.clock.monotonic())
            return True

    def take_burst(self, *, early_s: float = 0.0) -> Burst | None:
        """The burst asked for, once its time is up (``early_s`` before it is enough)
        or its frames are in (None before, or when none was asked for). A camera
        that stalled meanwhile gives fewer crops, possibly none."""
        with self._lock:
            req = self._burst
            if req is None:
                return None
            elapsed_s = self.clock.monotonic() - req.requested_mono
            if elapsed_s < req.seconds - early_s and len(req.crops) < req.max_frames:
                return None
            self._burst = None
            self.bursts += 1
            return self._finished(req)

    @staticmethod
    def _finished(req: _BurstRequest) -> Burst:
        return Burst(
            box=req.box,
            frame_size=req.frame_size or (0, 0),
            crops=tuple(req.crops),
            monos=tuple(req.monos),
            levels=tuple(req.levels),
            requested_mono=req.requested_mono,
        )

    def _burst_wants(self, now_mono: float) -> _BurstRequest | None:
        """The burst this grabbed frame belongs to, if any."""
        with self._lock:
            req = self._burst
            if req is None or now_mono - req.requested_mono > req.seconds:
                return None
            return None if len(req.crops) >= req.max_frames else req

    def _add_to_burst(self, req: _BurstRequest, image: np.ndarray, mono: float) -> None:
        crop = crop_grey(image, req.box)
        level = frame_level(image)
        with self._lock:
            if self._burst is not req:  # handed over meanwhile
                return
            size = (image.shape[1], image.shape[0])
            if req.frame_size is not None and req.frame_size != size:
                return  # the stream changed size: its crops would not compare
            req.frame_size = size
            req.crops.append(crop)
            req.monos.append(mono)
            req.levels.append(level)
            self.burst_frames += 1

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "frames": self.frames,
            "decoded": self.decoded,
            "bursts": self.bursts,
            "burst_frames": self.burst_frames,
            "opens": self.opens,
            "bad_frames": self.bad_frames,
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
        logged = ""
        while not stop.is_set():
            self._set_state(CaptureState.OPENING)
            try:
                cap = open_capture(self.source, self.open_timeout_s)
            except Exception as e:  # OpenCV raises cv2.error on bad arguments
                cap = None
                self.last_error = f"{type(e).__name__}: {e}"
            problem = ""
            if cap is not None and cap.isOpened():
                problem = self._size_problem(cap)
            if cap is None or not cap.isOpened() or problem:
                if cap is not None:
                    cap.release()
                if not problem and cap is not None:
                    why = why_unreachable(self.source)
                    if why:
                        problem = f"cannot open the source ({why})"
                    elif not self.is_file and not self.source.startswith(("usb:", "/dev/")):
                        problem = (
                            "cannot open the source (its host answers, but no stream could be "
                            "read: check the URL's path, user and password)"
                        )
                    else:
                        problem = "cannot open the source"
                self._set_state(
                    CaptureState.OFFLINE, problem or self.last_error or "cannot open the source"
                )
                log.log(
                    logging.INFO if self.last_error == logged else logging.WARNING,
                    "camera %s: %s: %s; retrying in %.0f s",
                    self.name,
                    redact_url(self.source),
                    self.last_error,
                    backoff_s,
                )
                logged = self.last_error  # the same again is no news: INFO
                if stop.wait(backoff_s / self.clock.speed):
                    break
                backoff_s = min(self.reconnect_max_s, backoff_s * 2)
                continue
            self.opens += 1
            self._read_error = ""
            got = self._read_loop(cap, stop, raw=self._read_raw(cap))
            cap.release()
            if stop.is_set():
                break
            if self.is_file:
                self._set_state(CaptureState.ENDED, "end of file")
                log.info("camera %s: %s ended after %d frames", self.name, self.source, self.frames)
                return
            if got and not self._read_error:
                backoff_s = 1.0  # it worked for a while: reconnect promptly
            self._set_state(CaptureState.OFFLINE, self._read_error or "stream lost")
            log.warning(
                "camera %s: %s; reconnecting in %.0f s", self.name, self.last_error, backoff_s
            )
            if stop.wait(backoff_s / self.clock.speed):
                break
            backoff_s = min(self.reconnect_max_s, backoff_s * 2)
        if stop is self._stop:  # not superseded by a fresh thread after a restart
            self._set_state(CaptureState.STOPPED)

    def _limit_text(self, w: int, h: int) -> str:
        lw, lh = self.max_size
        return (
            f"the stream is {w}x{h} pixels, more than the {lw}x{lh} a camera may send "
            f"here: set the camera to a smaller stream (its sub-stream, {lw}x{lh} or less)"
        )

    def _too_big(self, w: int, h: int) -> bool:
        return w * h > self.max_size[0] * self.max_size[1]

    def _size_problem(self, cap: cv2.VideoCapture) -> str:
        """The size the source announces on opening, if above the limit (nothing is
        decoded yet)."""
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return self._limit_text(w, h) if self._too_big(w, h) else ""

    def _read_raw(self, cap: cv2.VideoCapture) -> bool:
        """Read an MJPEG network stream undecoded (each packet is one JPEG): its size
        and completeness are checked before decoding, and a grabbed picture nobody
        looks at is never decoded."""
        if self.is_file or self.source.startswith(("usb:", "/dev/")):
            return False
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").upper()
        return fourcc == b"MJPG" and bool(cap.set(cv2.CAP_PROP_FORMAT, -1))

    def _decode_jpeg(self, packet: np.ndarray | None) -> tuple[np.ndarray | None, str]:
        """A picture from one raw MJPEG packet, or (None, why) for a damaged one."""
        data = b"" if packet is None else packet.tobytes()
        size = jpeg_size(data)
        if size is None or not jpeg_complete(data):
            return None, f"damaged JPEG pictures ({len(data)} bytes, truncated or not a JPEG)"
        if self._too_big(*size):
            return None, self._limit_text(*size)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            return None, "damaged JPEG pictures (cannot be decoded)"
        return image, ""

    def _free_buffer(self) -> np.ndarray | None:
        """A picture buffer of this capture that nobody refers to any more, to decode the
        next picture into; None when each is still held (published, under analysis)."""
        for buf in self._buffers:
            # held by the list, this loop and getrefcount's argument only: no Frame, view
            # (a view keeps its base alive) or caller has it, so overwriting it is safe
            if sys.getrefcount(buf) <= 3:
                return buf
        return None

    def _keep_buffer(self, got: np.ndarray, into: np.ndarray | None) -> None:
        """Keep a picture OpenCV allocated (none was free, or the stream's size changed)
        as one of the buffers to reuse, in place of the oldest when there are enough:
        one a caller keeps for long is then left to it, not waited for."""
        if into is not None:
            self._buffers.remove(into)  # the wrong size: the stream changed
        if len(self._buffers) >= FRAME_BUFFERS:
            del self._buffers[0]
        self._buffers.append(got)

    def _read_loop(self, cap: cv2.VideoCapture, stop: threading.Event, *, raw: bool = False) -> int:
        """Read until the source ends, fails or ``stop``; returns the frames read. An
        error of the stream itself (too big, damaged pictures) is left in
        ``_read_error``."""
        period_s = 0.0
        if self.is_file:
            fps = cap.get(cv2.CAP_PROP_FPS)
            fps = fps if 0 < fps <= 240 else DEFAULT_FILE_FPS
            period_s = 1.0 / (fps * self.clock.speed)
        n = 0
        bad = 0  # damaged pictures in a row
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
            publish = (
                n == 1
                or bad
                or self._taken
                or now_mono - last_decode_mono >= self.decode_interval_s
            )
            burst = self._burst_wants(now_mono)
            if publish or burst is not None:
                into = None if raw else self._free_buffer()
                ok, got = cap.retrieve() if into is None else cap.retrieve(into)
                if not ok or got is None or got.size == 0:
                    return n
                if not raw and got is not into:
                    self._keep_buffer(got, into)
                image: np.ndarray = got
                if raw:
                    pic, why = self._decode_jpeg(got)
                    if pic is None:
                        self.bad_frames += 1
                        bad += 1
                        if why.startswith("the stream is") or bad >= BAD_FRAMES_FAULT:
                            self._read_error = (
                                why if bad == 1 else f"{why}; {bad} in a row, none analysed"
                            )
                            return n
                        continue
                    bad, image = 0, pic
                elif self._too_big(image.shape[1], image.shape[0]):
                    # the source did not say its size on opening: refused at the first one
                    self._read_error = self._limit_text(image.shape[1], image.shape[0])
                    return n
                if burst is not None:
                    self._add_to_burst(burst, image, now_mono)
                if publish:
                    last_decode_mono = now_mono
                    self.decoded += 1
                    if self.state != CaptureState.OPEN:
                        self._set_state(CaptureState.OPEN)
                    frame = Frame(image, self.frames, self.clock.wall(), now_mono)
                    with self._lock:
                        self._latest = frame
                        self._taken = False
                    del frame
                # held by the Frame (if published) alone: freed or reusable once it goes
                del got, image
            if period_s:
                # files are paced like a live camera; real time here, it is I/O pacing
                next_t += period_s
                delay = next_t - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return n
                if delay < -1.0:
                    next_t = time.monotonic()
        return n
