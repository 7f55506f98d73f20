"""Capture limits: an oversized stream is refused before decoding, a stream of
damaged JPEGs is a fault, OpenCV/FFmpeg do not write their own lines, and a
negative USB index is refused safely. Real OpenCV on a real HTTP MJPEG stream."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from agent.clock import SystemClock
from tests.helpers.mjpeg_server import MjpegServer, jpeg_of
from vision.capture import Capture, CaptureState, jpeg_complete, jpeg_size

ROOT = Path(__file__).resolve().parents[2]


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _wait(cap: Capture, pred: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not pred():  # type: ignore[operator]
        time.sleep(0.05)


def _big_jpeg(w: int, h: int) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    img[::9] = 180  # compresses well: a small file that decodes to w*h*3 bytes
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 30])
    assert ok
    return bytes(buf)


def test_jpeg_header_helpers() -> None:
    jpg = jpeg_of(320, 240)
    assert jpeg_size(jpg) == (320, 240)
    assert jpeg_complete(jpg) and not jpeg_complete(jpg[: len(jpg) // 2])
    assert jpeg_size(b"not a jpeg at all") is None


def test_an_8000x8000_stream_is_refused_before_decoding_with_its_size() -> None:
    jpg = _big_jpeg(8000, 8000)
    with MjpegServer(lambda i: jpg, fps=5) as srv:
        before = _rss_mb()
        cap = Capture(srv.url, SystemClock(), open_timeout_s=5, name="big")
        cap.start()
        try:
            _wait(cap, lambda: cap.state == CaptureState.OFFLINE and cap.opens == 0)
            grew = _rss_mb() - before
            st = cap.status()
        finally:
            cap.stop()
            assert cap.join(10)
    assert st["state"] == "offline", st
    assert "8000x8000" in st["last_error"] and "sub-stream" in st["last_error"], st
    assert st["decoded"] == 0 and cap.latest() is None
    # a decoded 8000x8000 picture alone is 192 MB; the whole agent may use 384 MB
    assert grew < 120, grew


def test_a_configured_resolution_is_the_limit() -> None:
    jpg = jpeg_of(1280, 720)
    with MjpegServer(lambda i: jpg, fps=10) as srv:
        cap = Capture(srv.url, SystemClock(), open_timeout_s=5, max_size=(640, 480))
        cap.start()
        try:
            _wait(cap, lambda: cap.state == CaptureState.OFFLINE)
            st = cap.status()
        finally:
            cap.stop()
            cap.join(10)
    assert "1280x720" in st["last_error"] and "640x480" in st["last_error"], st
    assert st["decoded"] == 0


def test_a_normal_mjpeg_stream_is_decoded() -> None:
    frames = [jpeg_of(320, 240, s) for s in range(4)]
    with MjpegServer(lambda i: frames[i % 4], fps=15) as srv:
        cap = Capture(srv.url, SystemClock(), open_timeout_s=5)
        cap.start()
        try:
            _wait(cap, lambda: cap.decoded >= 5)
            latest = cap.latest()
        finally:
            cap.stop()
            cap.join(10)
    assert latest is not None and latest.image.shape == (240, 320, 3)
    assert cap.state != CaptureState.OFFLINE and cap.bad_frames == 0


def test_a_stream_of_truncated_jpegs_is_a_fault_and_nothing_is_published() -> None:
    good = jpeg_of(320, 240)
    bad = good[: len(good) // 2]
    with MjpegServer(lambda i: bad, fps=25) as srv:
        cap = Capture(srv.url, SystemClock(), open_timeout_s=5, name="trunc")
        cap.start()
        try:
            _wait(cap, lambda: cap.state == CaptureState.OFFLINE and cap.opens >= 1)
            st = cap.status()
        finally:
            cap.stop()
            cap.join(10)
    assert st["state"] == "offline", st
    assert "damaged JPEG" in st["last_error"] and "truncated" in st["last_error"], st
    assert st["bad_frames"] >= 20 and cap.latest() is None


def test_negative_usb_index_is_refused_without_opening_anything() -> None:
    cap = Capture("usb:-1", SystemClock(), name="usb")
    cap.start()
    try:
        _wait(cap, lambda: cap.state == CaptureState.OFFLINE, 5)
    finally:
        cap.stop()
        cap.join(5)
    assert "index is 0 or more" in cap.last_error, cap.status()


CHILD = """
import sys, time
from agent.clock import SystemClock
from tests.helpers.mjpeg_server import MjpegServer, jpeg_of
from vision.capture import Capture, CaptureState
bad = jpeg_of(320, 240)[:900]
with MjpegServer(lambda i: bad, fps=25) as srv:
    caps = [Capture(srv.url, SystemClock(), open_timeout_s=2, reconnect_max_s=1),
            Capture("http://127.0.0.1:9/none.mjpg", SystemClock(), open_timeout_s=1, reconnect_max_s=1)]
    for c in caps:
        c.start()
    time.sleep(5)
    for c in caps:
        c.stop(); c.join(5)
    print("errors:", [c.last_error for c in caps])
"""


def test_opencv_and_ffmpeg_write_nothing_our_lines_say_why() -> None:
    p = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    raw = [ln for ln in p.stderr.splitlines() if ln.startswith(("[", " [")) or "@ 0x" in ln]
    assert not raw, p.stderr  # "[mjpeg @ 0x...] overread 8", "[ WARN:0@0.5] global cap.cpp"
    assert "damaged JPEG" in p.stdout, p.stdout
    assert "127.0.0.1:9: connection refused" in p.stdout, p.stdout


def test_an_answering_host_without_a_stream_is_told_apart_from_a_dead_one() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_error(404)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/wrong/path.mjpg"
        cap = Capture(url, SystemClock(), open_timeout_s=3, name="wrong-path")
        cap.start()
        try:
            _wait(cap, lambda: cap.state == CaptureState.OFFLINE, 10)
        finally:
            cap.stop()
            cap.join(5)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "host answers, but no stream" in cap.last_error, cap.status()
