"""`firegate detect PATH...`: run the smoke/fire detector on images and videos.

Prints one JSON line per image, or per sampled frame of a video (``--fps``,
default 2), to stdout: path, frame index (0 for an image), time in the video,
image-level fire and smoke scores and the regions (frame pixels). With
``--threshold T`` each line also says yes/no per class and overall. A file that
cannot be read gets an error line on stderr; the others still run, and the
exit status is then 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "detect",
        help="run the smoke/fire detector on images or videos",
        description="Run the smoke/fire detector on images and videos; one JSON line per "
        "image or sampled video frame. Exit 0 when every file was read, 2 when some could not be.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image, video or folder")
    p.add_argument(
        "--fps",
        type=float,
        default=2.0,
        help="video frames analysed per second of video (default 2)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="add yes/no columns: a class is detected when its score >= this (0..1)",
    )
    p.add_argument(
        "--model",
        default="standard",
        help="standard (default: the shipped model) or the path of an .onnx model (as vision.model)",
    )
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.set_defaults(func=run)


def _expand(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(q for q in p.iterdir() if q.is_file())
        else:
            yield p


def _line(path: Path, frame: int, time_s: float | None, res: Any, thr: float | None) -> str:
    d: dict[str, Any] = {"path": str(path), "frame": frame}
    if time_s is not None:
        d["time_s"] = round(time_s, 3)
    d.update(res.to_dict())
    if thr is not None:
        d["fire_yes"] = res.fire >= thr
        d["smoke_yes"] = res.smoke >= thr
        d["yes"] = d["fire_yes"] or d["smoke_yes"]
    return json.dumps(d)


def run(args: argparse.Namespace) -> int:
    import cv2

    from vision.data import load_image
    from vision.detector import Detector, ModelError, model_path

    if args.fps <= 0:
        print("firegate detect: --fps must be positive", file=sys.stderr)
        return 2
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        print("firegate detect: --threshold must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        det = Detector.load(model_path(args.model), threads=args.threads)
    except ModelError as e:
        print(f"firegate detect: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in _expand(list(args.paths)):
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            failed += 1
            continue
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            img = load_image(path)
            if img is None:
                print(
                    f"{path}: cannot decode the image (corrupt or not an image); skipped",
                    file=sys.stderr,
                )
                failed += 1
                continue
            print(_line(path, 0, None, det.detect(img), args.threshold), flush=True)
            continue
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            print(
                f"{path}: cannot open the video (corrupt or unsupported); skipped", file=sys.stderr
            )
            failed += 1
            continue
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps <= 240 else 25.0
        step_s = 1.0 / args.fps
        next_s = 0.0
        index = 0
        read_any = False
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                read_any = True
                t_s = index / fps
                if t_s + 1e-9 >= next_s:
                    print(_line(path, index, t_s, det.detect(frame), args.threshold), flush=True)
                    next_s += step_s
                index += 1
        finally:
            cap.release()
        if not read_any:
            print(f"{path}: no frame could be decoded; skipped", file=sys.stderr)
            failed += 1
    if failed:
        print(f"firegate detect: {failed} file(s) could not be read", file=sys.stderr)
        return 2
    return 0
