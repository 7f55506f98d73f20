"""Composite training images (issue 16): flame and smoke cut from the labelled
CCTV boxes of the training split, pasted onto rooms of the training split,
and pale rooms (bright white walls, white bedding, over-exposed ceilings).

Why: the model saw fire mostly as whole CCTV or news frames, rarely as a flame
in an ordinary room, and it called bright white rooms smoke. A flame cut from
a fire photo and pasted into a room scored about 0 with the model of
2026-11-29 (vision/footage.py): it had learnt the whole context of fire
pictures more than the flame itself.

How a composite is made (all at the training cache's size, before the usual
crop, flip and photometric augmentation of vision/train.py):

* background: a training-split photo without fire or smoke, a room of
  ``indoor.TRAIN_INDOOR`` three times as often as any other, turned pale
  (``pale``) a third of the time;
* one or two patches, each a fire or smoke box of a training-split CCTV frame
  with a margin, scaled to 10-55 % (fire) or 25-80 % (smoke) of the picture;
* blending: a feathered ellipse times, for flames, the pixels' flame colour
  (bright, red over blue), so the dark surroundings of a flame stay mostly the
  room's (fire boxes with under 8 % flame-coloured pixels are not used); for
  smoke the patch in grey, with a cloudy, partly transparent alpha (45-90 %)
  that is lower where the patch is coloured (the scene behind the smoke);
* matching: the patch's colour balance is pulled towards the room's, smoke's
  brightness towards the room's at that place; flames stay bright (they emit
  light) and light the room around them with a warm glow;
* blur: patch and alpha blurred to the room's sharpness (sigma 0-1.5 px).

Labels: the box of what shows (alpha above 0.3, at least 40 pixels) is a box
of its class (the cell targets of
vision/train.py); the other class is *unknown* over it (a flame patch can hold
some smoke and a smoke patch a small flame), and absent elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vision.data import Sample
from vision.indoor import TRAIN_INDOOR

P_PALE = 0.33  # share of composite backgrounds (and indoor negatives) made pale
INDOOR_WEIGHT = 3.0  # a training room is drawn this many times as often as another photo
MIN_BOX_PX = 10  # boxes smaller than this (cache pixels) give no patch
MIN_VISIBLE_PX = 40  # a paste showing fewer pixels (alpha > 0.3) is not labelled
MIN_FLAME_SHARE = 0.08  # fire boxes whose pixels are less flame-coloured give no patch


def pale(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The room as a bright, washed-out picture: white or grey walls, white bedding,
    a pale ceiling, an over-exposed camera. Not smoke: the false-smoke class of
    issue 16."""
    f = img.astype(np.float32) / 255.0
    grey = f.mean(axis=2, keepdims=True)
    f = grey + (f - grey) * rng.uniform(0.15, 0.8)  # washed-out colours
    f = 1.0 - (1.0 - f) ** rng.uniform(1.6, 3.2)  # lifted highlights and mid-tones
    tint = np.array([rng.uniform(0.95, 1.05), 1.0, rng.uniform(0.95, 1.05)], np.float32)
    out = f * tint * 255.0
    return np.asarray(out.clip(0, 255), np.uint8)


@dataclass(frozen=True)
class Patch:
    index: int  # the sample's index in the training arrays
    cls: int  # 0 fire, 1 smoke
    x0: int
    y0: int
    x1: int
    y1: int


def _feather(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An ellipse filling the patch, soft at its edge (0..1)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    edge = rng.uniform(0.15, 0.4)
    return np.asarray(np.clip((1.0 - r) / edge, 0.0, 1.0), np.float32)


def _flameness(p: np.ndarray) -> np.ndarray:
    """0..1 per pixel: how much a pixel looks like flame (bright, red over blue)."""
    f = p.astype(np.float32)
    b, r = f[..., 0], f[..., 2]
    v = f.max(axis=2)
    warm = np.clip((r - b - 20.0) / 60.0, 0.0, 1.0)
    bright = np.clip((v - 120.0) / 80.0, 0.0, 1.0)
    core = np.clip((v - 225.0) / 25.0, 0.0, 1.0)  # white-hot centres
    return np.maximum(warm * bright, core)


def _cloud(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random variation (0.4..1), the uneven density of a smoke cloud."""
    coarse = rng.random((max(2, h // 8), max(2, w // 8))).astype(np.float32)
    n = np.asarray(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), np.float32)
    return np.asarray(np.clip(0.4 + 0.6 * n, 0.0, 1.0), np.float32)


class Composer:
    """Makes composite training images from the training split (see the module doc)."""

    def __init__(self, samples: list[Sample], images: np.ndarray, train_idx: np.ndarray) -> None:
        self.samples = samples
        self.images = images
        n = images.shape[1]
        self.patches: list[Patch] = []
        for i in train_idx:
            s = samples[int(i)]
            if s.split != "train" or not s.has_boxes:
                continue
            for cls, cx, cy, bw, bh in s.boxes:
                x0, x1 = round((cx - bw / 2) * n), round((cx + bw / 2) * n)
                y0, y1 = round((cy - bh / 2) * n), round((cy + bh / 2) * n)
                x0, y0, x1, y1 = max(0, x0), max(0, y0), min(n, x1), min(n, y1)
                if x1 - x0 >= MIN_BOX_PX and y1 - y0 >= MIN_BOX_PX:
                    self.patches.append(Patch(int(i), cls, x0, y0, x1, y1))
        self.patches = [
            p
            for p in self.patches
            if p.cls == 1
            or _flameness(images[p.index][p.y0 : p.y1, p.x0 : p.x1]).mean() >= MIN_FLAME_SHARE
        ]
        self.by_cls = [[p for p in self.patches if p.cls == c] for c in (0, 1)]
        bg = [
            int(i)
            for i in train_idx
            if samples[int(i)].split == "train"
            and samples[int(i)].fire == 0
            and samples[int(i)].smoke == 0
        ]
        self.indoor = {i for i in bg if samples[i].path.name in TRAIN_INDOOR}
        w = np.array([INDOOR_WEIGHT if i in self.indoor else 1.0 for i in bg])
        self.backgrounds = np.array(bg)
        self.bg_p = w / w.sum()
        if not self.by_cls[0] or not self.by_cls[1] or not bg:
            raise ValueError("composites need fire boxes, smoke boxes and negative photos")

    def make(self, rng: np.random.Generator) -> tuple[np.ndarray, Sample]:
        """One composite picture (cache size, BGR uint8) and its labels."""
        b = int(rng.choice(self.backgrounds, p=self.bg_p))
        img = self.images[b].copy()
        if rng.random() < P_PALE:
            img = pale(img, rng)
        boxes: list[tuple[int, float, float, float, float]] = []
        unknown: list[tuple[int, float, float, float, float]] = []
        for _ in range(1 if rng.random() < 0.75 else 2):
            cls = 0 if rng.random() < 0.6 else 1
            pick = self.by_cls[cls][int(rng.integers(len(self.by_cls[cls])))]
            box = self._paste(img, pick, rng)
            if box is not None:
                boxes.append((cls, *box))
                unknown.append((1 - cls, *box))
        fire = int(any(c == 0 for c, *_ in boxes))
        smoke = int(any(c == 1 for c, *_ in boxes))
        bs = self.samples[b]
        sample = Sample(
            bs.path,
            "composite",
            bs.group,
            "train",
            fire,
            smoke,
            tuple(boxes),
            has_boxes=True,
            unknown=tuple(unknown),
        )
        return img, sample

    def _paste(
        self, img: np.ndarray, pick: Patch, rng: np.random.Generator
    ) -> tuple[float, float, float, float] | None:
        """Blend one patch into ``img`` in place; its box (cx, cy, w, h), normalised."""
        n = img.shape[0]
        src = self.images[pick.index]
        # a margin around the box: the blend decides what of it shows
        mw, mh = (pick.x1 - pick.x0) // 8, (pick.y1 - pick.y0) // 8
        x0, y0 = max(0, pick.x0 - mw), max(0, pick.y0 - mh)
        x1, y1 = min(n, pick.x1 + mw), min(n, pick.y1 + mh)
        patch = src[y0:y1, x0:x1].astype(np.float32)
        ph, pw = patch.shape[:2]
        lo, hi = (0.10, 0.55) if pick.cls == 0 else (0.25, 0.80)
        scale = rng.uniform(lo, hi) * n / max(ph, pw)
        w, h = max(6, round(pw * scale)), max(6, round(ph * scale))
        w, h = min(w, n), min(h, n)
        patch = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        px = int(rng.integers(0, n - w + 1))
        # smoke rises: its patches sit higher; flames anywhere below the top fifth
        top = (
            (0, max(1, n // 2 - h // 2)) if pick.cls == 1 else (n // 5, max(n // 5 + 1, n - h + 1))
        )
        py = int(rng.integers(min(top[0], n - h), max(min(top[1], n - h + 1), 1)))
        region = img[py : py + h, px : px + w].astype(np.float32)
        sharp = rng.uniform(0.0, 1.5)
        if sharp > 0.3:
            patch = np.asarray(cv2.GaussianBlur(patch, (0, 0), sharp), np.float32)
        # colour balance towards the room's (per channel, partly)
        room_bal = region.reshape(-1, 3).mean(axis=0) + 1.0
        patch_bal = patch.reshape(-1, 3).mean(axis=0) + 1.0
        k = rng.uniform(0.1, 0.4)
        gain = (room_bal / room_bal.mean()) ** k / (patch_bal / patch_bal.mean()) ** k
        feather = _feather(h, w, rng)
        if pick.cls == 0:
            patch = patch * gain
            alpha = feather * (0.15 + 0.85 * _flameness(patch.clip(0, 255)))
            alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), 0.5 + sharp), np.float32)
            # the flame lights the room around it
            glow = np.asarray(cv2.GaussianBlur(alpha, (0, 0), max(2.0, w / 4)), np.float32)
            warm = np.array([0.25, 0.6, 1.0], np.float32) * rng.uniform(20, 70)
            region = region + glow[..., None] * warm
        else:
            # smoke is grey: what of the patch is coloured (the scene behind it) stays the room's
            hsv = cv2.cvtColor(patch.clip(0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV)
            greyness = np.clip(1.0 - hsv[..., 1].astype(np.float32) / 90.0, 0.0, 1.0)
            grey = patch.mean(axis=2, keepdims=True)
            mean_room = float(region.mean())
            shift = (mean_room - float(grey.mean())) * rng.uniform(0.2, 0.6)
            patch = np.repeat(grey, 3, axis=2) * gain + shift
            opacity = rng.uniform(0.45, 0.9)
            alpha = feather * _cloud(h, w, rng) * opacity * (0.3 + 0.7 * greyness)
            alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), 1.0 + sharp), np.float32)
        a = alpha[..., None]
        out = region * (1.0 - a) + patch * a
        img[py : py + h, px : px + w] = out.clip(0, 255).astype(np.uint8)
        # the box of what shows: alpha above 0.3
        ys, xs = np.nonzero(alpha > 0.3)
        if len(xs) < MIN_VISIBLE_PX:
            return None
        bx0, bx1 = px + xs.min(), px + xs.max() + 1
        by0, by1 = py + ys.min(), py + ys.max() + 1
        return ((bx0 + bx1) / 2 / n, (by0 + by1) / 2 / n, (bx1 - bx0) / n, (by1 - by0) / n)
