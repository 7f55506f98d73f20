"""Rebuild the demo's two camera clips from the licensed image sets.

    python -m firmware_mocks.demo.build_clips [--datasets ../shared/datasets]

The clips are committed (firmware_mocks/demo/clips/), so the demo runs on a
machine without the data sets; this script documents exactly how they were
made and remakes them byte for byte (fixed seed, fixed JPEG quality).

* ``classroom.avi``: a classroom-like room (a conference room photo from
  cair/Fire-Detection-Image-Dataset, MIT) filmed by a slightly shaky camera
  with sensor noise, so that consecutive frames differ as a live camera's do.
* ``storeroom-fire.avi``: 25 consecutive CCTV frames of flames at a wall
  (img_375 ... img_399 of the Roboflow "fire - v8" set, CC BY 4.0).

Both images come from the **test** split of vision/data.py: the shipped model
never trained on them. See clips/ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import cv2
import numpy as np

CLIPS_DIR = Path(__file__).resolve().parent / "clips"
DEFAULT_DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
SIZE_PX = (320, 240)
FPS = 5.0
CLASSROOM_IMAGE = (
    "cair-fire-images/normal_images/pic_The-conference-room-Sits-up-to-35-people_577093_large.jpg"
)
CLASSROOM_FRAMES = 40
FIRE_FRAMES = range(375, 400)  # img_375 ... img_399: one clip of the CCTV set


def shaky(image: np.ndarray, n: int, seed: int = 1) -> list[np.ndarray]:
    """``image`` as ``n`` frames of a camera that shakes by a pixel, with sensor noise."""
    base = cv2.resize(image, SIZE_PX, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = np.array([[1, 0, (i % 3) - 1], [0, 1, (i % 2)]], dtype=np.float32)
        f = cv2.warpAffine(base, m, SIZE_PX, borderMode=cv2.BORDER_REFLECT)
        noise = rng.integers(-4, 5, f.shape, dtype=np.int16)
        out.append(np.clip(f.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return out


def fire_frames(datasets: Path) -> list[np.ndarray]:
    base = datasets / "cctv-fire-smoke-yolo"
    found: dict[int, Path] = {}
    for p in base.glob("*/images/img_*"):
        m = re.match(r"img_(\d+)_jpg\.rf\.", p.name)
        if m and int(m.group(1)) in FIRE_FRAMES:
            found.setdefault(int(m.group(1)), p)
    missing = [i for i in FIRE_FRAMES if i not in found]
    if missing:
        raise SystemExit(f"{base}: frames img_{missing[0]}... not found")
    out = []
    for i in FIRE_FRAMES:
        img = cv2.imread(str(found[i]))
        if img is None:
            raise SystemExit(f"{found[i]}: not a readable image")
        out.append(cv2.resize(img, SIZE_PX, interpolation=cv2.INTER_AREA))
    return out


def write_clip(path: Path, frames: list[np.ndarray]) -> int:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, SIZE_PX)
    if not vw.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot write MJPG video here")
    vw.set(cv2.VIDEOWRITER_PROP_QUALITY, 70)
    for f in frames:
        vw.write(f)
    vw.release()
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_mocks.demo.build_clips")
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    ap.add_argument("--out", type=Path, default=CLIPS_DIR)
    args = ap.parse_args(argv)
    room = cv2.imread(str(args.datasets / CLASSROOM_IMAGE))
    if room is None:
        print(f"{args.datasets / CLASSROOM_IMAGE}: not found", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    n1 = write_clip(args.out / "classroom.avi", shaky(room, CLASSROOM_FRAMES))
    n2 = write_clip(args.out / "storeroom-fire.avi", fire_frames(args.datasets))
    print(f"classroom.avi {n1 / 1024:.0f} KiB, storeroom-fire.avi {n2 / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
