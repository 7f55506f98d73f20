"""A tiny HTTP MJPEG camera (multipart/x-mixed-replace), served from a thread.

Real enough for OpenCV's FFmpeg backend: it is what cheap IP cameras serve on
``/video.mjpg``. Tests point a camera's ``source`` at ``server.url``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = b"firegateframe"


def jpeg_of(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return bytes(buf)


class MjpegServer:
    """Serves ``frame_fn(i)`` as the i-th JPEG at ``fps`` to every client until
    ``close()``. ``frame_fn`` may return bytes that are not a valid JPEG. With
    ``stall_after`` the stream stops sending after that many frames but keeps the
    connection open (a camera hung mid-stream)."""

    def __init__(
        self,
        frame_fn: Callable[[int], bytes],
        fps: float = 10.0,
        *,
        stall_after: int | None = None,
    ) -> None:
        self.frame_fn = frame_fn
        self.fps = fps
        self.stall_after = stall_after
        self.clients = 0
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                server.clients += 1
                self.send_response(200)
                ctype = f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
                self.send_header("Content-Type", ctype)
                self.end_headers()
                i = 0
                try:
                    while not server._closing.is_set():
                        if server.stall_after is not None and i >= server.stall_after:
                            server._closing.wait()
                            break
                        jpg = server.frame_fn(i)
                        self.wfile.write(
                            b"--"
                            + BOUNDARY
                            + b"\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(jpg)}\r\n\r\n".encode()
                            + jpg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                        i += 1
                        time.sleep(1.0 / server.fps)
                except (TimeoutError, BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/video.mjpg"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> MjpegServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_forever(width: int = 320, height: int = 240, fps: float = 10.0) -> None:
    """``python -m tests.helpers.mjpeg_server``: a camera for trying things by hand."""
    frames = [jpeg_of(width, height, s) for s in range(8)]
    with MjpegServer(lambda i: frames[i % len(frames)], fps) as srv:
        print(srv.url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    import sys

    serve_forever(*(int(a) for a in sys.argv[1:3]))
