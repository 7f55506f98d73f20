"""`firegate commission camera NAME` and doctor's scene check, with a real
decoded clip of a room the shipped model calls smoke (0.79)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.cli import main
from agent.clock import ScaledClock
from agent.commands import doctor
from agent.commands.commission import check_scenes
from agent.events import Observation
from agent.siteconfig import load_site
from vision import footage as ft
from vision.camera import CameraWorker
from vision.detector import Detector
from vision.scene import SceneModel, lighting, model_id, scene_path

FIXTURES = Path(__file__).parents[1] / "fixtures" / "vision"


def site(tmp: Path, clip: Path) -> Path:
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    text = f"""version: 1
site: {{site_id: school-1, gateway_id: gw-1}}
zones:
  - id: hall
cameras:
  - {{name: cam-1, zone: hall, source: {clip}, detect_fps: 2}}
storage:
  state_dir: {state}
"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


def room_clip(tmp: Path, name: str = "room.avi", seconds: float = 40) -> Path:
    room = ft.load(FIXTURES / "normal_white_room.jpg")
    rng = np.random.default_rng(2)
    frames = [ft.noisy(room, rng) for _ in range(int(seconds * 10))]
    return ft.write_clip(tmp / name, frames, 10.0)


def test_commission_learns_saves_and_shows_the_noisy_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = site(tmp_path, room_clip(tmp_path))
    path = scene_path(tmp_path / "state", "cam-1")
    ctx = doctor.Context(config_path=cfg, site=load_site(cfg))
    [before] = check_scenes(ctx)
    assert before.outcome is doctor.Outcome.FAIL and "commission camera cam-1" in before.fix

    assert main(["commission", "camera", "cam-1", "--config", str(cfg), "--seconds", "35"]) == 0
    out = capsys.readouterr().out
    assert "70 frames analysed" in out and "lighting states (1)" in out and "learned" in out
    assert "would have called fire: 0, smoke:" in out
    smoke_cells = int(out.split("smoke: ")[-1].split(" ")[0])
    assert smoke_cells >= 20  # the white room: most of the picture
    assert path.is_file() and (path.stat().st_mode & 0o777) == 0o600
    snap = cv2.imread(str(path.with_suffix(".jpg")))
    assert snap is not None and snap.shape[:2] == (480, 640)
    det = Detector.load()
    scene = SceneModel.load(path, det.grid, model_id(det.path))
    assert scene.learned and scene.states[0].frames == 70
    [after] = check_scenes(ctx)
    assert after.outcome is doctor.Outcome.PASS and "1 learned lighting state" in after.detail

    # a second run adds to the stored scene; --reset forgets it first
    assert main(["commission", "camera", "cam-1", "--config", str(cfg), "--seconds", "5"]) == 0
    assert "adding to the stored scene" in capsys.readouterr().out
    assert SceneModel.load(path, det.grid, model_id(det.path)).states[0].frames == 80
    argv = ["commission", "camera", "cam-1", "--config", str(cfg), "--reset", "--seconds", "0"]
    assert main(argv) == 0
    assert not path.exists() and "forgotten" in capsys.readouterr().out
    [reset] = check_scenes(ctx)
    assert reset.outcome is doctor.Outcome.FAIL


def test_commission_errors_name_the_file_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(bytes(range(256)) * 8)
    cfg = site(tmp_path, garbage)
    assert main(["commission", "camera", "cam-9", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "no camera named 'cam-9'" in err and "cam-1" in err and str(cfg) in err
    assert main(["commission", "camera", "cam-1", "--config", str(cfg), "--seconds", "2"]) == 1
    err = capsys.readouterr().err
    assert "camera cam-1" in err and "check the address" in err and "Traceback" not in err


async def test_running_camera_adopts_a_commissioning_and_a_reset(tmp_path: Path) -> None:
    """The agent runs while the installer commissions: the worker takes the new
    file instead of overwriting it with what it learned itself."""
    det = Detector.load()
    clip = room_clip(tmp_path, seconds=60)
    loaded = load_site(site(tmp_path, clip))
    cam = loaded.config.cameras[0]
    path = scene_path(loaded.config.storage.state_dir, cam.name)
    q: asyncio.Queue[Observation] = asyncio.Queue()
    w = CameraWorker(cam, det, q, ScaledClock(5.0), scene_file=path)
    assert w.scene is not None and not w.scene.learned
    task = asyncio.create_task(w.run())
    try:
        await asyncio.sleep(0.5)
        learned = SceneModel(grid=det.grid, model_id=model_id(det.path))
        room = ft.load(FIXTURES / "normal_white_room.jpg")
        cells = det.detect(room).cells
        for _ in range(cam.scene_learn_frames):
            learned.commission(cells, lighting(room))
        learned.save(path)
        for _ in range(50):
            await asyncio.sleep(0.1)
            if w.scene is not None and w.scene.learned:
                break
        assert w.scene is not None and w.scene.learned and "loaded" in w.scene_note
        path.unlink()
        for _ in range(50):
            await asyncio.sleep(0.1)
            if w.scene is not None and not w.scene.learned:
                break
        assert w.scene is not None and not w.scene.learned
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
