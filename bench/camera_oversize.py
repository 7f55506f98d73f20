"""Peak memory of `firegate run` with one camera sending an 8000x8000 MJPEG stream.

    python bench/camera_oversize.py [--seconds 8] [--size 8000]

Serves the stream from a local HTTP MJPEG server, runs the agent on it for
``--seconds`` and prints the agent's peak RSS (VmHWM), its exit status and
the camera's fault line. Baseline in the same run: the same agent on a
640x480 stream. Before the size limit (vision/capture.py) the oversized
stream was decoded: 762 MB and SIGKILL under the unit's MemoryMax=384M.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.mjpeg_server import MjpegServer  # noqa: E402


def _jpeg(w: int, h: int) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    img[::9] = 180
    return bytes(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 30])[1])


def run_agent(url: str, seconds: float) -> tuple[int, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "site.yaml"
        cfg.write_text(
            "site: {site_id: s, gateway_id: g}\nzones: [{id: hall}]\n"
            f'cameras: [{{name: cam1, source: "{url}", zone: hall}}]\n'
            f"storage: {{state_dir: {tmp}/state}}\n"
        )
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "run",
                "--config",
                str(cfg),
                "--exit-after",
                str(seconds),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak_kb = 0
        while p.poll() is None:
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM"):
                        peak_kb = int(line.split()[1])
            except (FileNotFoundError, ProcessLookupError):
                pass
            time.sleep(0.1)
        err = p.stderr.read() if p.stderr else ""
        fault = next((ln for ln in err.splitlines() if "offline active" in ln), "no camera fault")
        return p.returncode, peak_kb // 1024, fault


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--size", type=int, default=8000)
    a = ap.parse_args()
    for label, w, h in (("640x480 (baseline)", 640, 480), (f"{a.size}x{a.size}", a.size, a.size)):
        jpg = _jpeg(w, h)
        with MjpegServer(lambda i, j=jpg: j, fps=5) as srv:
            rc, peak_mb, fault = run_agent(srv.url, a.seconds)
        print(f"{label:>20}: exit {rc}, peak RSS {peak_mb} MB; {fault[20:140]}")


if __name__ == "__main__":
    main()
