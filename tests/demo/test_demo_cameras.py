"""The demo's simulated IP cameras, read through OpenCV as the agent reads them."""

from __future__ import annotations

import cv2
import numpy as np

from firmware_mocks.demo.cameras import Picture, SimCameraServer, demo_feeds


def grab(url: str, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(
        url,
        cv2.CAP_FFMPEG,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000],
    )
    try:
        assert cap.isOpened(), url
        out = []
        for _ in range(n):
            ok, img = cap.read()
            assert ok and img is not None
            out.append(img)
        return out
    finally:
        cap.release()


def test_cameras_stream_quiet_fire_and_frozen_pictures() -> None:
    feeds = demo_feeds(("cam-a", "cam-b"))
    srv = SimCameraServer(feeds, fps=25).start()
    try:
        quiet = grab(srv.url("cam-a"), 4)
        assert quiet[0].shape == (240, 320, 3)
        assert float(np.abs(quiet[1].astype(int) - quiet[2].astype(int)).mean()) > 0.5  # live

        srv.show("cam-b", Picture.FIRE)
        fire = grab(srv.url("cam-b"), 2)
        assert float(np.abs(fire[0].astype(int) - quiet[0].astype(int)).mean()) > 20

        srv.show("cam-a", Picture.FROZEN)
        frozen = grab(srv.url("cam-a"), 4)
        assert all(np.array_equal(frozen[1], f) for f in frozen[2:])  # the very same picture

        srv.show("cam-a", Picture.OFFLINE)
        cap = cv2.VideoCapture(
            srv.url("cam-a"), cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 2000]
        )
        assert not cap.isOpened() or not cap.read()[0]
        cap.release()

        srv.show("cam-a", Picture.STALE)
        assert feeds["cam-a"].next_jpeg() is None  # connected readers get nothing
        srv.show("cam-a", Picture.QUIET)
        assert feeds["cam-a"].next_jpeg() is not None
    finally:
        srv.stop()
    assert srv.wait_idle(2.0)
