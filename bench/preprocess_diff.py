"""How far the camera's fast preprocessing moves the model's scores.

    .venv/bin/python bench/preprocess_diff.py [--every 2]

The model was trained and calibrated with one INTER_AREA from the full frame to its
224x224 input (``Detector.preprocess_exact``); the camera reduces the frame cheaply
first (``Detector.reduce``: INTER_LINEAR to 448x448, then an exact 2x INTER_AREA).
Every held-back image (val and test splits of /work/shared/datasets) is stretched to
a camera frame size (1280x720, 640x480, 1920x1080) and scored both ways; printed:
max and mean absolute difference of the cell probabilities, the largest image-level
score difference, the share of images whose fire or smoke call at the shipped
threshold flips, and the time of each preprocessing on this CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from vision.data import DEFAULT_ROOT, all_samples, load_image
from vision.detector import Detector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--every", type=int, default=1, help="take every Nth held-back image")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    det = Detector.load(threads=1)
    thr = np.array([det.thresholds[c] for c in det.thresholds])
    samples = [s for s in all_samples(args.data, "v1") if s.split in ("val", "test")][:: args.every]
    print(f"{len(samples)} held-back images, shipped thresholds fire/smoke {thr.round(3)}")
    for size in ((1280, 720), (640, 480), (1920, 1080)):
        cell_d, img_d, flips, t_old, t_new = [], [], 0, [], []
        for s in samples:
            img = load_image(s.path)
            if img is None:
                continue
            frame = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
            t0 = time.perf_counter()
            xo = det.preprocess_exact(frame)
            t1 = time.perf_counter()
            xn = det.preprocess(frame)
            t2 = time.perf_counter()
            t_old.append(t1 - t0)
            t_new.append(t2 - t1)
            a, b = det.infer(xo), det.infer(xn)
            cell_d.append(np.abs(a - b))
            sa, sb = a.reshape(2, -1).max(1), b.reshape(2, -1).max(1)
            img_d.append(np.abs(sa - sb).max())
            flips += int(((sa >= thr) != (sb >= thr)).any())
        d = np.stack(cell_d)
        print(
            f"{size[0]}x{size[1]}: cells max {d.max():.4f} mean {d.mean():.5f}; "
            f"image score max {max(img_d):.4f}; calls flipped {flips}/{len(d)}; "
            f"preprocess {1000 * statistics.median(t_old):.2f} ms exact -> "
            f"{1000 * statistics.median(t_new):.2f} ms now"
        )


if __name__ == "__main__":
    main()
