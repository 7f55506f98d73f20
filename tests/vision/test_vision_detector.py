"""The shipped ONNX model through onnxruntime on real (held-back) images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.cli import main as cli_main
from agent.events import VideoClass
from vision.detector import (
    DEFAULT_MODEL,
    Detector,
    FrameError,
    ModelError,
    cell_regions,
)
from vision.masks import ignore_cells

FIXTURES = Path(__file__).parents[1] / "fixtures" / "vision"
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector.load()


def img(name: str) -> np.ndarray:
    im = cv2.imread(str(FIXTURES / name))
    assert im is not None
    return im


def test_shipped_model_is_small_and_described() -> None:
    assert DEFAULT_MODEL.stat().st_size <= 2 * 1024 * 1024
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert meta["classes"] == ["fire", "smoke"]
    for cls in ("fire", "smoke"):
        assert 0 < meta["thresholds_val"][cls] < 1
    assert 0 < meta["operating_max_fpr"] <= 0.05


def test_fire_images_score_above_normal_images(det: Detector) -> None:
    fire = [det.detect(img(n)).fire for n in ("fire_cctv.jpg", "fire_house_night.jpg")]
    normal = [
        det.detect(img(n)).fire for n in ("normal_hotel_room.jpg", "normal_christmas_street.jpg")
    ]
    assert min(fire) > max(normal), (fire, normal)
    thr = det.thresholds[VideoClass.FIRE]
    assert all(f >= thr for f in fire), (fire, thr)
    assert all(n < thr for n in normal), (normal, thr)


def test_smoke_image_scores_smoke(det: Detector) -> None:
    smoke = det.detect(img("smoke_cctv.jpg"))
    thr = det.thresholds[VideoClass.SMOKE]
    assert smoke.smoke >= thr
    for n in ("normal_hotel_room.jpg", "normal_christmas_street.jpg"):
        assert det.detect(img(n)).smoke < smoke.smoke


def test_fire_region_is_in_frame_pixels_and_near_the_flames(det: Detector) -> None:
    frame = img("fire_cctv.jpg")  # flames on the right-hand wall, in the middle third
    big = cv2.resize(frame, (1280, 720))
    r = det.detect(big)
    fire = r.regions_of(VideoClass.FIRE)
    assert fire and r.frame_size == (1280, 720)
    top = fire[0]
    assert top.score == pytest.approx(r.fire)
    assert top.x >= 0 and top.x + top.w <= 1280 and top.y >= 0 and top.y + top.h <= 720
    cx, cy = top.x + top.w / 2, top.y + top.h / 2
    assert cx > 1280 * 0.5 and 720 * 0.2 < cy < 720 * 0.9, top


def test_grey_and_bgra_frames_are_accepted_and_bad_ones_rejected(det: Detector) -> None:
    frame = img("fire_cctv.jpg")
    grey = det.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    assert 0 <= grey.fire <= 1
    bgra = det.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    assert bgra.fire == pytest.approx(det.detect(frame).fire, abs=1e-5)
    with pytest.raises(FrameError):
        det.detect(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(FrameError):
        det.detect(frame.astype(np.float32))


def test_ignore_mask_removes_masked_cells(det: Detector) -> None:
    frame = img("fire_cctv.jpg")
    h, w = frame.shape[:2]
    right_half = (((w // 2, 0), (w, 0), (w, h), (w // 2, h)),)
    mask = ignore_cells(right_half, (w, h), det.grid)
    assert mask is not None and mask.shape == det.grid
    assert mask[:, -1].all() and not mask[:, 0].any()
    r = det.detect(frame, ignore_cells=mask)
    assert (r.cells[:, mask] == 0).all()
    assert r.fire < det.detect(frame).fire
    assert all(reg.x + reg.w <= w // 2 + w // det.grid[1] for reg in r.regions)


def test_cell_regions_groups_neighbours() -> None:
    p = np.zeros((4, 6), np.float32)
    p[0, 0] = 0.9
    p[0, 1] = 0.7
    p[3, 5] = 0.8
    regions = cell_regions(p, 0.5, VideoClass.FIRE, (600, 400))
    boxes = sorted((r.x, r.y, r.w, r.h, r.score) for r in regions)
    assert boxes == [(0, 0, 200, 100, pytest.approx(0.9)), (500, 300, 100, 100, pytest.approx(0.8))]


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        Detector.load(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    bad.with_suffix(".json").write_text(json.dumps({"input": {"size_px": [224, 224]}}))
    with pytest.raises(ModelError, match="cannot load"):
        Detector.load(bad)


def test_runtime_never_imports_torch() -> None:
    code = (
        "import sys, cv2, numpy as np\n"
        "from vision.detector import Detector\n"
        "from vision.camera import CameraWorker\n"
        "from agent.commands import detect\n"
        "Detector.load().detect(np.zeros((120, 160, 3), np.uint8))\n"
        "assert 'torch' not in sys.modules, 'torch imported at run time'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# ------------------------------------------------------------------ firegate detect


def test_detect_command_images_video_and_a_corrupt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    video = tmp_path / "clip.avi"
    frame = cv2.resize(img("fire_cctv.jpg"), (320, 240))
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(25):  # 2.5 s at 10 fps
        vw.write(frame)
    vw.release()
    paths = [FIXTURES / "fire_cctv.jpg", corrupt, FIXTURES / "normal_hotel_room.jpg", video]
    code = cli_main(["detect", *map(str, paths), "--fps", "2", "--threshold", "0.5"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "broken.jpg: cannot decode the image" in err
    lines = [json.loads(x) for x in out.splitlines()]
    assert [(Path(d["path"]).name, d["frame"]) for d in lines] == [
        ("fire_cctv.jpg", 0),
        ("normal_hotel_room.jpg", 0),
        ("clip.avi", 0),
        ("clip.avi", 5),
        ("clip.avi", 10),
        ("clip.avi", 15),
        ("clip.avi", 20),
    ]
    first = lines[0]
    assert set(first) >= {
        "path",
        "frame",
        "fire",
        "smoke",
        "regions",
        "fire_yes",
        "smoke_yes",
        "yes",
    }
    assert first["fire_yes"] is (first["fire"] >= 0.5)
    assert lines[0]["fire"] > lines[1]["fire"]
    assert lines[3]["time_s"] == pytest.approx(0.5)
    assert all(r["cls"] in ("fire", "smoke") for r in first["regions"])


def test_detect_command_all_good_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["detect", str(FIXTURES / "smoke_cctv.jpg")]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "yes" not in json.loads(line)


@pytest.mark.parametrize("noise", [3.0, 0.0])
@pytest.mark.parametrize("level", [0, 25, 70, 128, 180, 230, 255])
def test_featureless_frames_are_neither_smoke_nor_fire(
    det: Detector, level: int, noise: float
) -> None:
    """A covered lens, a black night picture or a bare wall is a camera matter
    (frozen/stale checks), never smoke: the model was taught so. Without noise
    too: compression flattens a dark picture, and an encoder's "no video" screen
    is one exact colour (a candidate model once called every such frame smoke)."""
    rng = np.random.default_rng(level)
    frame = np.clip(level + rng.normal(0, noise, (360, 640, 3)), 0, 255).astype(np.uint8)
    r = det.detect(frame)
    assert r.smoke < det.thresholds[VideoClass.SMOKE], r.smoke
    assert r.fire < det.thresholds[VideoClass.FIRE], r.fire


def test_detect_command_takes_the_model_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    image = str(FIXTURES / "fire_cctv.jpg")
    scores = {}
    for name in ("standard", str(DEFAULT_MODEL)):
        assert cli_main(["detect", image, "--model", name]) == 0
        scores[name] = json.loads(capsys.readouterr().out)["fire"]
    assert scores["standard"] == scores[str(DEFAULT_MODEL)]
    assert cli_main(["detect", image, "--model", "heavy"]) == 2  # neither a name nor a file
    assert "not found" in capsys.readouterr().err


def test_inference_runs_one_at_a_time(det: Detector) -> None:
    """Cameras call detect from several threads; onnxruntime would keep activation
    buffers for every concurrent run (memory), so runs are serialised."""
    import threading
    import time

    real = det.session
    live, most = 0, 0
    guard = threading.Lock()

    class Probe:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            nonlocal live, most
            with guard:
                live += 1
                most = max(most, live)
            time.sleep(0.01)
            try:
                return real.run(names, feeds)
            finally:
                with guard:
                    live -= 1

    det.session = Probe()  # type: ignore[assignment]
    try:
        frame = img("fire_cctv.jpg")
        threads = [threading.Thread(target=det.detect, args=(frame,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        det.session = real
    assert most == 1


FAST_PATH_MAX_CELL = 0.10  # bench/preprocess_diff.py: at most 0.078 on 478 held-back images
FAST_PATH_MEAN_CELL = 0.005  # there: mean 0.0012


@pytest.mark.parametrize("size", [(1280, 720), (640, 480), (1920, 1080)])
def test_fast_preprocessing_scores_stay_near_the_calibrated_ones(
    det: Detector, size: tuple[int, int]
) -> None:
    """The camera's cheap reduction (INTER_LINEAR to twice the input, then a 2x
    INTER_AREA) against the one full-frame INTER_AREA the model was calibrated with,
    on real pictures stretched to camera frame sizes: cell probabilities within the
    stated tolerance, and the same fire/smoke calls at the shipped thresholds."""
    diffs = []
    for name in sorted(p.name for p in FIXTURES.glob("*.jpg")):
        frame = cv2.resize(img(name), size, interpolation=cv2.INTER_CUBIC)
        exact = det.infer(det.preprocess_exact(frame))
        fast = det.detect(frame).cells
        reduced = det.reduce(frame)
        assert reduced.shape == (det.input_size[1], det.input_size[0], 3)
        assert np.array_equal(det.detect(frame, reduced=reduced).cells, fast)
        diffs.append(np.abs(exact - fast))
        for c, cls in enumerate((VideoClass.FIRE, VideoClass.SMOKE)):
            thr = det.thresholds[cls]
            assert (exact[c].max() >= thr) == (fast[c].max() >= thr), (name, cls)
    d = np.stack(diffs)
    assert d.max() <= FAST_PATH_MAX_CELL
    assert d.mean() <= FAST_PATH_MEAN_CELL
