"""`firegate commission camera NAME`: learn what a camera's normal scene scores.

Watches the camera for ``--seconds`` (default 60), runs the detector on
``detect_fps`` frames a second, and adds every frame to the camera's scene
model (vision/scene.py) for the lighting state it is in; then writes the scene
to the state dir (``<state_dir>/scenes/NAME.npz``), prints what it learned per
lighting state, and writes a snapshot (``NAME.jpg`` beside it) with the cells
that the model's threshold alone would have called fire (red) or smoke (cyan):
the cells this scene model now keeps quiet. Run it once per lighting state
(lights on, lights off, night) with nothing burning in view; each run adds to
what is stored. ``--reset`` forgets the stored scene first (after moving the
camera or changing the model). A running agent picks up the new file within
seconds.

Exit codes: 0 learned and saved; 1 the camera or the model could not be used;
2 bad config or unknown camera.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.siteconfig import ConfigError, LoadedSite, load_site

if TYPE_CHECKING:
    import numpy as np

    from agent.commands.doctor import Context, Result
    from agent.siteconfig.models import CameraConfig
    from vision.detector import Detector
    from vision.scene import SceneModel

DEFAULT_CONFIG = Path("/etc/firegate/site.yaml")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "commission",
        help="learn a camera's normal scene (run on the ladder, nothing burning in view)",
        description="Watch a camera, learn what its normal scene scores cell by cell and per "
        "lighting state, store it in the state dir and show the cells it keeps quiet.",
    )
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    c = what.add_parser("camera", help="commission one camera")
    c.add_argument("name", help="the camera's name in the site config")
    c.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"site config (default {DEFAULT_CONFIG})",
    )
    c.add_argument(
        "--seconds", type=float, default=60.0, help="how long to watch (default 60; 0 with --reset)"
    )
    c.add_argument(
        "--reset",
        action="store_true",
        help="forget the stored scene first (camera moved, new model)",
    )
    c.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="where to write the snapshot (default: beside the scene)",
    )
    c.set_defaults(func=run)


def _fail(msg: str, code: int) -> int:
    print(f"firegate commission: {msg}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    try:
        site = load_site(args.config)
    except ConfigError as e:
        print(f"{args.config}: {len(e.problems)} problem(s) found", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    cams = {c.name: c for c in site.config.cameras}
    cam = cams.get(args.name)
    if cam is None:
        known = ", ".join(cams) or "none"
        return _fail(f"{args.config}: no camera named {args.name!r} (cameras: {known})", 2)
    if args.seconds < 0 or (args.seconds == 0 and not args.reset):
        return _fail("--seconds must be positive (or 0 together with --reset)", 2)

    from vision.detector import Detector, ModelError, model_path
    from vision.scene import SceneFileError, SceneModel, model_id, scene_path

    path = scene_path(site.config.storage.state_dir, cam.name)
    if args.reset:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            return _fail(f"cannot remove {path}: {e} (run as the service user or root)", 1)
        print(f"camera {cam.name}: stored scene forgotten ({path})")
        if args.seconds == 0:
            return 0
    try:
        det = Detector.load(model_path(site.config.vision.model), threads=1)
    except ModelError as e:
        return _fail(f"{e}; check vision.model in {args.config}", 1)
    mid = model_id(det.path)
    try:
        scene = SceneModel.load(path, det.grid, mid)
        print(
            f"camera {cam.name}: adding to the stored scene ({len(scene.states)} lighting states)"
        )
    except SceneFileError as e:
        if path.exists():
            print(f"camera {cam.name}: {e}; starting a new scene", file=sys.stderr)
        scene = SceneModel(grid=det.grid, model_id=mid)
    try:
        frame, noisy, analysed = watch(cam, det, scene, args.seconds)
    except OSError as e:
        return _fail(f"camera {cam.name} ({_src(cam)}): {e}; check the address and power", 1)
    if analysed == 0:
        return _fail(f"camera {cam.name} ({_src(cam)}): no frame could be analysed", 1)
    try:
        scene.save(path)
    except OSError as e:
        return _fail(f"cannot write {path}: {e} (run as the service user or root)", 1)
    snap = args.snapshot or path.with_suffix(".jpg")
    print(report(cam, det, scene, noisy, analysed, path))
    if frame is not None and write_snapshot(snap, frame, noisy):
        print(f"snapshot: {snap} (red: cells the threshold alone calls fire; cyan: smoke)")
    return 0


def _src(cam: CameraConfig) -> str:
    from agent.logs import redact_url

    return redact_url(cam.source)


def open_source(source: str) -> Any:
    import cv2

    if source.startswith("usb:"):
        cap = cv2.VideoCapture(int(source[4:]))
    else:
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise OSError("cannot open the source")
    return cap


def watch(
    cam: CameraConfig, det: Detector, scene: SceneModel, seconds: float
) -> tuple[np.ndarray | None, np.ndarray, int]:
    """Learn ``seconds`` of the camera (stream time for a file, wall time for a live
    source). Returns the last frame, the (2, rows, cols) cells the model's threshold
    alone would have counted in any frame, and the number of frames analysed."""
    import numpy as np

    from vision.masks import ignore_cells
    from vision.scene import lighting

    cap = open_source(cam.source)
    fps = float(cap.get(5) or 0.0)  # CAP_PROP_FPS; 0 for most live streams
    live = fps <= 0 or fps > 120 or not Path(cam.source).exists()
    period = 1.0 / cam.detect_fps
    rows, cols = det.grid
    noisy = np.zeros((2, rows, cols), bool)
    from agent.events import VideoClass

    thr = [
        cam.fire_threshold or det.thresholds[VideoClass.FIRE],
        cam.smoke_threshold or det.thresholds[VideoClass.SMOKE],
    ]
    last = None
    analysed = 0
    t0 = time.monotonic()
    next_t = 0.0
    index = 0
    ignore = None
    try:
        while True:
            t = time.monotonic() - t0 if live else index / fps
            if t >= seconds:
                break
            ok = cap.grab()
            if not ok:
                break
            index += 1
            if t < next_t:
                continue
            next_t += period
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                continue
            if cam.masks and ignore is None:
                h, w = frame.shape[:2]
                ignore = ignore_cells(cam.masks, cam.resolution or (w, h), det.grid)
            result = det.detect(frame, ignore_cells=ignore)
            scene.commission(result.cells, lighting(frame))
            for c in range(2):
                noisy[c] |= result.cells[c] >= thr[c] * cam.hold_ratio
            last = frame
            analysed += 1
    finally:
        cap.release()
    return last, noisy, analysed


def report(
    cam: CameraConfig,
    det: Detector,
    scene: SceneModel,
    noisy: np.ndarray,
    analysed: int,
    path: Path,
) -> str:
    rows, cols = det.grid
    out = [
        f"camera {cam.name}: {analysed} frames analysed; scene saved to {path}",
        f"lighting states ({len(scene.states)}), grid {rows}x{cols} cells:",
    ]
    for d in scene.describe():
        state = "learned" if d["learned"] else f"learning ({scene.learn_frames} frames needed)"
        out.append(
            f"  brightness {d['brightness']:5.1f} saturation {d['saturation']:5.1f}: "
            f"{d['frames']} frames, {state}; normal up to fire {d['fire_normal_max']:.2f}, "
            f"smoke {d['smoke_normal_max']:.2f}"
        )
    out.append(
        f"cells the model's threshold alone would have called fire: {int(noisy[0].sum())}, "
        f"smoke: {int(noisy[1].sum())} (of {rows * cols}); a detection there now needs the "
        f"score to rise {scene.margin:g} above the cell's normal"
    )
    return "\n".join(out)


def write_snapshot(path: Path, frame: np.ndarray, noisy: np.ndarray) -> bool:
    import cv2

    img = frame.copy()
    h, w = img.shape[:2]
    rows, cols = noisy.shape[1:]
    for c, colour in ((1, (255, 255, 0)), (0, (0, 0, 255))):
        for r in range(rows):
            for k in range(cols):
                if noisy[c, r, k]:
                    p0 = (k * w // cols, r * h // rows)
                    p1 = ((k + 1) * w // cols - 1, (r + 1) * h // rows - 1)
                    cv2.rectangle(img, p0, p1, colour, 2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return bool(cv2.imwrite(str(path), img))
    except OSError:
        return False


def check_scenes(ctx: Context) -> list[Result]:
    """Doctor: whether each camera has a learned scene for the configured model."""
    from agent.commands.doctor import Outcome, Result

    site: LoadedSite | None = ctx.site
    assert site is not None
    cams = [c for c in site.config.cameras if c.scene_model]
    if not cams:
        return [Result("scenes", Outcome.SKIP, "no camera uses a scene model")]
    from vision.detector import model_path
    from vision.scene import SceneFileError, SceneModel, grid_of, model_id, scene_path

    mpath = model_path(site.config.vision.model)
    try:
        mid = model_id(mpath)
    except OSError as e:
        return [Result("scenes", Outcome.SKIP, f"model {mpath} unreadable: {e}")]
    out = []
    for cam in cams:
        path = scene_path(site.config.storage.state_dir, cam.name)
        fix = f"run `firegate commission camera {cam.name}` with nothing burning in view"
        try:
            scene = SceneModel.load(path, grid_of(mpath), mid)
        except (SceneFileError, OSError, ValueError, KeyError) as e:
            out.append(
                Result(
                    f"scene {cam.name}",
                    Outcome.FAIL,
                    f"{e}: judged by the model's threshold alone until learned",
                    fix,
                )
            )
            continue
        learned = [s for s in scene.states if s.frames >= scene.learn_frames]
        if not learned:
            out.append(Result(f"scene {cam.name}", Outcome.FAIL, f"{path}: still learning", fix))
            continue
        states = ", ".join(f"brightness {s.brightness:.0f}" for s in learned)
        out.append(
            Result(
                f"scene {cam.name}",
                Outcome.PASS,
                f"{path}: {len(learned)} learned lighting state(s) ({states})",
            )
        )
    return out
