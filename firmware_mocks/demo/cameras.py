"""Simulated IP cameras: HTTP MJPEG streams served from the demo's short clips.

Each camera is ``http://127.0.0.1:PORT/<name>.mjpg`` (multipart/x-mixed-replace,
one JPEG per part, the way many IP cameras serve MJPEG), so the agent reads it
through OpenCV exactly as it reads a real camera. What a camera shows is set
while it streams: ``quiet`` (its normal picture, looping), ``fire`` (the fire
clip, looping) or ``frozen`` (the last picture sent, again and again, as a
hung encoder does).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

CLIPS_DIR = Path(__file__).resolve().parent / "clips"
JPEG_QUALITY = 80
BOUNDARY = b"firegateframe"


class Picture(enum.StrEnum):
    QUIET = "quiet"
    FIRE = "fire"
    FROZEN = "frozen"  # the same picture again and again
    STALE = "stale"  # connected, but no frames
    OFFLINE = "offline"  # connections dropped and refused


def read_clip(path: Path) -> list[np.ndarray]:
    """Every frame of a video file (BGR); raises FileNotFoundError/ValueError."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: clip not found")
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, img = cap.read()
            if not ok or img is None:
                break
            frames.append(img)
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"{path}: no frames could be decoded")
    return frames


def jpegs(frames: list[np.ndarray]) -> list[bytes]:
    out = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("cannot encode a frame as JPEG")
        out.append(buf.tobytes())
    return out


@dataclass
class Feed:
    """One camera's pictures and what it shows now (set from any thread)."""

    name: str
    quiet: list[bytes]
    fire: list[bytes]
    picture: Picture = Picture.QUIET
    frames_sent: int = 0
    clients: int = 0
    _index: int = 0
    _last: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_jpeg(self) -> bytes | None:
        """The next frame to send; None: send nothing now (stale)."""
        with self._lock:
            if self.picture is Picture.STALE:
                return None
            if self.picture is Picture.FROZEN and self._last:
                return self._last
            frames = self.fire if self.picture is Picture.FIRE else self.quiet
            self._index += 1
            self._last = frames[self._index % len(frames)]
            self.frames_sent += 1
            return self._last


def demo_feeds(names: tuple[str, str], clips_dir: Path = CLIPS_DIR) -> dict[str, Feed]:
    """The two demo cameras: (classroom camera, storeroom camera)."""
    room = read_clip(clips_dir / "classroom.avi")
    fire = jpegs(read_clip(clips_dir / "storeroom-fire.avi"))
    # the storeroom's quiet picture: the classroom clip mirrored and darker
    store = [cv2.convertScaleAbs(cv2.flip(f, 1), alpha=0.75, beta=0) for f in room]
    classroom, storeroom = names
    return {
        classroom: Feed(classroom, jpegs(room), fire),
        storeroom: Feed(storeroom, jpegs(store), fire),
    }


class SimCameraServer:
    """MJPEG streams of several feeds on one local port; ``start()``/``stop()`` never block long."""

    def __init__(self, feeds: dict[str, Feed], *, fps: float, host: str = "127.0.0.1") -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.feeds = feeds
        self.period_s = 1.0 / fps
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/").removesuffix(".mjpg")
                feed = server.feeds.get(name)
                if feed is None:
                    self.send_error(404, f"no camera {name!r}")
                    return
                if feed.picture is Picture.OFFLINE:
                    self.send_error(503, "camera offline")
                    return
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
                )
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                feed.clients += 1
                try:
                    # real-time pacing: this is the camera's own frame rate
                    while not server._stop.wait(server.period_s):
                        if feed.picture is Picture.OFFLINE:
                            return  # drop the connection, as a camera that loses power
                        jpg = feed.next_jpeg()
                        if jpg is None:
                            continue
                        self.wfile.write(
                            b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                            b"Content-Length: "
                            + str(len(jpg)).encode()
                            + b"\r\n\r\n"
                            + jpg
                            + b"\r\n"
                        )
                except (BrokenPipeError, ConnectionError, OSError):
                    pass  # the reader went away
                finally:
                    feed.clients -= 1

            def log_message(self, format: str, *args: object) -> None:
                log.debug("camera server: " + format, *args)

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}.mjpg"

    def show(self, name: str, picture: Picture) -> None:
        self.feeds[name].picture = picture

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no reader is connected (a reader that leaves first ends its
        stream cleanly); True if none is left."""
        deadline = time.monotonic() + timeout_s
        while any(f.clients for f in self.feeds.values()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def start(self) -> SimCameraServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._httpd.server_close()
