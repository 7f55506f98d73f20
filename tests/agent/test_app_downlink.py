"""Downlink requests answered by the agent: state and a camera snapshot, as STATS."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import cv2
import numpy as np

from agent.app import LogSink, build_agent
from agent.clock import SystemClock
from agent.events import DecisionType
from agent.siteconfig import load_site
from vision.camera import CameraWorker


def _clip(path: Path) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(200):  # noisy frames: a live camera, not a frozen one
        w.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    w.release()


async def test_state_and_snapshot_requests(tmp_path: Path) -> None:
    _clip(tmp_path / "cam.avi")
    (tmp_path / "site.yaml").write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: hall}]\n"
        "cameras: [{name: cam-hall, zone: hall, source: cam.avi}]\n"
        f"storage: {{state_dir: {tmp_path / 'state'}}}\n"
    )
    sink = LogSink()
    agent = build_agent(load_site(tmp_path / "site.yaml"), SystemClock(), sink)
    stop = asyncio.Event()
    runner = asyncio.create_task(agent.supervisor().run(stop))
    try:
        cam = next(p for p in agent.parts if isinstance(p, CameraWorker))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if cam.capture.latest() is not None:
                break
        state = await agent.handle_request("state", {})
        snap = await agent.handle_request("snapshot", {"camera": "cam-hall"})
        assert await agent.handle_request("snapshot", {"camera": "no-such-camera"}) is None
    finally:
        stop.set()
        await runner
        await agent.close()
    assert state is not None and snap is not None
    # answers are returned to the uplink to publish once, never stored in the outbox
    assert not any(d.details.get("request") for d in sink.decisions)
    assert state.type is DecisionType.STATS and "engine" in state.details["state"]
    assert snap.type is DecisionType.STATS and snap.zone == "hall" and snap.cameras == ("cam-hall",)
    assert snap.snapshot_jpeg is not None and snap.snapshot_jpeg[:2] == b"\xff\xd8"


def test_vision_model_setting_picks_the_cameras_model(tmp_path: Path) -> None:
    from vision.detector import DEFAULT_MODEL

    def model_of(vision: str) -> Path:
        (tmp_path / "site.yaml").write_text(
            "site: {site_id: s, gateway_id: g}\n"
            "zones: [{id: hall}]\n"
            "cameras: [{name: cam-hall, zone: hall, source: 'rtsp://192.0.2.10/s'}]\n"
            f"storage: {{state_dir: {tmp_path / 'state'}}}\n" + vision
        )
        agent = build_agent(load_site(tmp_path / "site.yaml"), SystemClock(), LogSink())
        cam = next(p for p in agent.parts if isinstance(p, CameraWorker))
        return cam.detector.path

    assert model_of("") == DEFAULT_MODEL
    assert model_of("vision: {model: standard}\n") == DEFAULT_MODEL
    shutil.copy(DEFAULT_MODEL, tmp_path / "mine.onnx")
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), tmp_path / "mine.json")
    assert model_of("vision: {model: mine.onnx}\n") == tmp_path / "mine.onnx"  # beside the config
