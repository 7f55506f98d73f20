"""A damaged or missing vision model never stops the gateway: the cameras fall
back to the shipped model, or report themselves offline, and the rest runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.app import Agent, LogSink, build_agent
from agent.clock import SystemClock
from agent.events import Condition, DecisionType, DeviceKind, Observation, StateChange
from agent.siteconfig import load_site
from vision import detector
from vision.camera import CameraWithoutModel, CameraWorker


def _site(tmp_path: Path, vision: str) -> Path:
    clip = cv2.VideoWriter(str(tmp_path / "cam.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(20):
        clip.write(np.full((48, 64, 3), i * 10, np.uint8))
    clip.release()
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: hall}]\n"
        "cameras: [{name: cam-hall, zone: hall, source: cam.avi}]\n"
        f"storage: {{state_dir: {tmp_path / 'state'}}}\n" + vision
    )
    return path


async def _started_faults(agent: Agent, sink: LogSink) -> list[str]:
    stop = asyncio.Event()
    runner = asyncio.create_task(agent.supervisor().run(stop))
    try:
        for _ in range(100):
            await asyncio.sleep(0.02)
            if sink.decisions:
                break
    finally:
        stop.set()
        await runner
        await agent.close()
    return [d.reason for d in sink.decisions if d.type is DecisionType.FAULT]


async def test_damaged_model_falls_back_to_the_shipped_one(tmp_path: Path) -> None:
    broken = tmp_path / "mine.onnx"
    broken.write_bytes(b"half a model")
    broken.with_suffix(".json").write_text('{"input": {"size_px": [224, 224]}}')
    sink = LogSink()
    agent = build_agent(
        load_site(_site(tmp_path, "vision: {model: mine.onnx}\n")), SystemClock(), sink
    )
    (cam,) = [p for p in agent.parts if isinstance(p, CameraWorker)]
    assert cam.detector.path == detector.DEFAULT_MODEL
    (fault,) = await _started_faults(agent, sink)
    assert "mine.onnx unusable" in fault and "cameras run on firenet.onnx" in fault


async def test_no_usable_model_leaves_cameras_offline_not_the_gateway_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detector, "DEFAULT_MODEL", tmp_path / "gone.onnx")
    sink = LogSink()
    agent = build_agent(load_site(_site(tmp_path, "")), SystemClock(), sink)
    (cam,) = [p for p in agent.parts if isinstance(p, CameraWithoutModel)]
    assert not [p for p in agent.parts if isinstance(p, CameraWorker)]
    assert any(p.name == "engine" for p in agent.parts)  # the rest is built as usual
    (fault,) = await _started_faults(agent, sink)
    assert "no usable vision model" in fault

    q: asyncio.Queue[Observation] = asyncio.Queue()
    stand_in = CameraWithoutModel(cam.cam, "gone.onnx not found", q, SystemClock())
    task = asyncio.create_task(stand_in.run())
    try:
        change = await asyncio.wait_for(q.get(), 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert isinstance(change, StateChange)
    assert (change.kind, change.condition, change.active) == (
        DeviceKind.CAMERA,
        Condition.OFFLINE,
        True,
    )
    assert change.source == "cam-hall" and "no vision model" in change.detail
    assert stand_in.status()["faults"] == ["offline"]
