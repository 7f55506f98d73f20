"""The training and evaluation data: which image is which, and how it is split.

Torch-free (numpy and OpenCV only), so that the evaluation script can use the
same split as training without torch installed.

Labels per image and class (fire, smoke): 1 present, 0 absent, -1 unknown.

* cctv-fire-smoke-yolo: boxes for class 0 (Fire) and 2 (smoke). Class 1
  ("default") is an unlabelled whole-frame box on CCTV frames, several of them
  showing security fog generators or firefighters in foam/smoke: those images
  count as fire-negative but smoke-*unknown* (neither taught nor scored as
  smoke negatives).
* cair-fire-images: image-level labels only. fire_images are fire-positive with
  smoke unknown; normal_images are negative for both.

The split is by group, never by image: a CCTV clip (``fire2_mp4-26_jpg...``)
is one group; the numbered ``img_N`` frames are grouped in blocks of 25
consecutive numbers because neighbouring numbers are often frames of the same
scene, and Roboflow's augmented copies share a number. Whole clips are assigned
by hand (below) so that every split holds both fire and smoke video; the rest
is assigned by a hash of the group name, so the split is reproducible.

Two split schemes (``scheme``):

* "v1" (the shipped FireNet of 2026-11-29 was trained with it): train / val /
  test as above.
* "v2" (issue 16, 2026-12-05): everything v1 held back (its val and test) plus
  the lit fireplaces and candle tables of v1's training pool
  (``MOVED_TO_HELD_BACK``) is the held-back split, called "test"; it holds the
  held-back indoor set (vision/indoor.py) and the footage of
  bench/camera_day.py, and a model trained with v2 never sees it. v2's
  validation is carved out of v1's training pool: two whole clips by hand
  (``VAL2_CLIPS``: one fire, one smoke and fire) and 15 % of the other groups by
  a salted hash. So a v1 model and a v2 model can be compared on v2's "test":
  neither trained on it (the v1 model's thresholds were chosen on v1's val, a
  part of it).
* "v3" (issue 16, 2026-12-06): v2's held-back split stays held back (the "old"
  indoor set, now looked at: a secondary report), and a *fresh* held-back indoor
  set is taken out of v2's training pool by file name and by eye, never by a
  model's score (vision/indoor.py: a third of the pool's ordinary rooms, half of
  its photos of fires in rooms, four indoor fire clips whole). A further 30 %
  of the pool's rooms go to validation, so that it holds enough ordinary rooms
  to place a 2 % operating point (vision/evaluate.py ``calibrate``). Everything
  else keeps its v2 split. The shipped v1 model trained on the fresh set: its
  figures there are training figures.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

DEFAULT_ROOT = Path("/work/shared/datasets")
CACHE_SIZE_PX = 256  # images are cached stretched to this square size

# Whole video clips: held back for test / validation by hand, the rest train.
TEST_CLIPS = frozenset({"test1_mp4", "smoke2_mp4", "pexels-alan-w-8365989_mp4"})
VAL_CLIPS = frozenset({"fire1_mp4", "smoke1_mp4"})
SPLITS = ("train", "val", "test")
SCHEMES = ("v1", "v2", "v3")
# v3 is opt-in: its fresh held-back set costs training data (the model card, C3)
DEFAULT_SCHEME = "v2"
# v2's validation clips, whole (from v1's training pool): fire, and smoke with fire
VAL2_CLIPS = frozenset({"test2_mp4", "smoke5_mp4"})
VAL2_FRAC = 0.15
FIRE_CLS, DEFAULT_CLS, SMOKE_CLS = 0, 1, 2


@dataclass(frozen=True)
class Sample:
    path: Path
    source: str  # "cctv" or "cair"
    group: str
    split: str
    fire: int  # 1, 0, -1 unknown
    smoke: int
    # (class index 0 fire / 1 smoke, cx, cy, w, h) normalised; only for box-labelled images
    boxes: tuple[tuple[int, float, float, float, float], ...] = field(default=())
    has_boxes: bool = False
    # boxes (same layout) where a class is unknown, neither taught nor scored there
    # (composites: the other class over a pasted patch, vision/composite.py)
    unknown: tuple[tuple[int, float, float, float, float], ...] = field(default=())


def _hash_split(key: str, val_frac: float = 0.12, test_frac: float = 0.12) -> str:
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < test_frac:
        return "test"
    if h < test_frac + val_frac:
        return "val"
    return "train"


def cctv_group(filename: str) -> str:
    """The clip a CCTV dataset image belongs to (see the module docstring)."""
    stem = re.sub(r"_(jpg|jpeg|png)\.rf\..*$", "", filename)
    m = re.match(r"img_(\d+)", stem)
    if m:
        return f"img_block{int(m.group(1)) // 25}"
    return re.sub(r"-\d+$", "", stem)


def cctv_samples(root: Path) -> list[Sample]:
    out: list[Sample] = []
    base = root / "cctv-fire-smoke-yolo"
    for sub in ("train", "valid", "test"):
        for img in sorted((base / sub / "images").glob("*")):
            lab = base / sub / "labels" / (img.stem + ".txt")
            lines = lab.read_text().split("\n") if lab.exists() else []
            boxes: list[tuple[int, float, float, float, float]] = []
            has_default = False
            for line in lines:
                parts = line.split()
                if len(parts) != 5:
                    continue
                c = int(parts[0])
                cx, cy, w, h = (float(p) for p in parts[1:])
                if c == DEFAULT_CLS:
                    has_default = True
                elif c in (FIRE_CLS, SMOKE_CLS):
                    boxes.append((0 if c == FIRE_CLS else 1, cx, cy, w, h))
            group = cctv_group(img.name)
            if group in TEST_CLIPS:
                split = "test"
            elif group in VAL_CLIPS:
                split = "val"
            elif group.endswith("_mp4"):
                split = "train"
            else:
                split = _hash_split(group)
            fire = int(any(b[0] == 0 for b in boxes))
            smoke = int(any(b[0] == 1 for b in boxes))
            if has_default and not smoke:
                smoke = -1
            out.append(Sample(img, "cctv", group, split, fire, smoke, tuple(boxes), has_boxes=True))
    return out


def cair_samples(root: Path) -> list[Sample]:
    out: list[Sample] = []
    base = root / "cair-fire-images"
    for folder, fire, smoke in (("fire_images", 1, -1), ("normal_images", 0, 0)):
        for img in sorted((base / folder).glob("*")):
            if img.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
                continue
            group = f"cair/{folder}/{img.name}"
            out.append(Sample(img, "cair", group, _hash_split(group), fire, smoke))
    return out


def _moved_to_held_back() -> frozenset[str]:
    from vision.indoor import CONTROLLED_FLAMES

    return frozenset(f"cair/{folder}/{name}" for folder, name in CONTROLLED_FLAMES)


MOVED_TO_HELD_BACK = _moved_to_held_back()  # controlled flames: held back in v2 (vision/indoor.py)


def v2_split(s: Sample) -> str:
    """Scheme v2's split of a sample whose v1 split is ``s.split`` (module docstring)."""
    if s.split in ("val", "test") or s.group in MOVED_TO_HELD_BACK:
        return "test"
    if s.group in VAL2_CLIPS:
        return "val"
    if s.group.endswith("_mp4"):
        return "train"
    h = int(hashlib.sha1(f"v2:{s.group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < VAL2_FRAC else "train"


def v3_split(s: Sample) -> str:
    """Scheme v3's split of a sample whose v1 split is ``s.split`` (module docstring)."""
    from vision.indoor import (
        FRESH_INDOOR_CCTV_GROUPS,
        POOL_INDOOR_FIRE_PHOTOS,
        TRAIN_INDOOR,
        v3_fire_photo_held,
        v3_room_part,
    )

    split = v2_split(s)
    if split == "test":
        return "test"
    if s.source == "cctv" and s.group in FRESH_INDOOR_CCTV_GROUPS:
        return "test"
    name = s.path.name
    if s.group == f"cair/normal_images/{name}" and name in TRAIN_INDOOR:
        return v3_room_part(name)
    if s.group == f"cair/fire_images/{name}" and name in POOL_INDOOR_FIRE_PHOTOS:
        return "test" if v3_fire_photo_held(name) else split
    return split


def all_samples(root: Path = DEFAULT_ROOT, scheme: str = DEFAULT_SCHEME) -> list[Sample]:
    """Every labelled image with its split under ``scheme`` ("v1", "v2" or "v3")."""
    samples = cctv_samples(root) + cair_samples(root)
    if scheme == "v1":
        return samples
    if scheme == "v2":
        return [replace(s, split=v2_split(s)) for s in samples]
    if scheme == "v3":
        return [replace(s, split=v3_split(s)) for s in samples]
    raise ValueError(f"unknown split scheme {scheme!r} (one of {', '.join(SCHEMES)})")


def scheme_of(model: Path | None) -> str:
    """The split scheme a model was trained with (its .json ``split_scheme``; models
    from before 2026-12-05 have none and were trained with v1)."""
    import json

    from vision.detector import DEFAULT_MODEL

    meta = (model or DEFAULT_MODEL).with_suffix(".json")
    try:
        return str(json.loads(meta.read_text()).get("split_scheme", "v1"))
    except (OSError, ValueError):
        return "v1"


def load_image(path: Path) -> np.ndarray | None:
    """BGR image or None when OpenCV cannot decode it."""
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return img if img is not None and img.size else None


def build_cache(
    samples: list[Sample], cache_file: Path, size_px: int = CACHE_SIZE_PX
) -> np.ndarray:
    """All images decoded and stretched to ``size_px`` squares, BGR uint8 (N, S, S, 3);
    kept in an .npz keyed by the sample paths so that a changed set rebuilds."""
    key = hashlib.sha1("\n".join(str(s.path) for s in samples).encode()).hexdigest()
    if cache_file.exists():
        with np.load(cache_file) as z:
            if str(z["key"]) == key and z["images"].shape[1] == size_px:
                images: np.ndarray = z["images"]
                return images
    images = np.zeros((len(samples), size_px, size_px, 3), np.uint8)
    for i, s in enumerate(samples):
        img = load_image(s.path)
        if img is None:
            raise ValueError(f"{s.path}: cannot decode image")
        images[i] = cv2.resize(img, (size_px, size_px), interpolation=cv2.INTER_AREA)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_file, images=images, key=np.array(key))
    return images


def featureless(size: int, rng: np.random.Generator) -> np.ndarray:
    """A frame with nothing in it: a covered lens, a bare wall, black night, an
    over-exposed picture. Flat colour, a smooth gradient and (mostly) sensor noise. The
    model must not call such a frame smoke (a blind camera is a fault, not a fire)."""
    base = rng.uniform(0, 255) if rng.random() < 0.7 else rng.uniform(0, 255, 3)
    img = np.broadcast_to(np.asarray(base, np.float32), (size, size, 3)).copy()
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        ramp = (xx * math.cos(angle) + yy * math.sin(angle)) * rng.uniform(10, 80)
        img += ramp[..., None]
    if rng.random() < 0.3:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        img *= (1 - rng.uniform(0.2, 0.6) * (xx**2 + yy**2) * 2)[..., None]
    # a quarter without any noise: compression flattens a dark picture, and an encoder's
    # "no video" screen is one exact colour (the first FireLite called those smoke)
    if rng.random() >= 0.25:
        img += rng.normal(0, rng.uniform(0.5, 10), img.shape).astype(np.float32)
    return img.clip(0, 255).astype(np.uint8)
