"""Camera sources are validated in the config: `usb:-1` passed check-config and
made OpenCV segfault `firegate run` (VideoCapture(-1))."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.siteconfig import ConfigError, load_site


def site(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: hall}]\n"
        "cameras:\n"
        "  - name: cam-1\n"
        "    zone: hall\n"
        f"    source: {source}\n"
        f"storage: {{state_dir: {tmp_path}/state}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        ("'usb:-1'", "N from 0 to 255"),
        ("'usb:'", "N from 0 to 255"),
        ("'usb:1_0'", "N from 0 to 255"),  # int() reads it as 10
        ("'usb: 1'", "N from 0 to 255"),
        ("'usb:256'", "N from 0 to 255"),
        ("'usb:01'", "N from 0 to 255"),
        ("/dev/video-1", "N from 0 to 255"),
        ("/dev/videox", "N from 0 to 255"),
        ("'rtsp://'", "no host"),
        ("'rtsp://:554/stream'", "no host"),
        ("'http://cam:99999/x'", "not a usable URL"),
        ("'rtmp://cam/live'", "rtmp:// is not a camera source"),
        ("'RTSP://cam/live'", "RTSP:// is not a camera source"),
        ('"rtsp://cam/a\\nb"', "control characters"),
        ('"clip\\u0000.mp4"', "control characters"),
    ],
)
def test_bad_source_is_a_located_problem(
    tmp_path: Path, source: str, expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site(tmp_path, source)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    (p,) = err.value.problems
    assert p.path == ("cameras", 0, "source") and expect in p.message, str(p)
    assert p.position is not None and p.position.line == 6
    assert main(["check-config", str(path)]) == 2
    assert "internal error" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "source",
    [
        "usb:0",
        "usb:12",
        "/dev/video0",
        "/dev/video255",
        "rtsp://admin:p@ss@192.0.2.1:554/live",
        "rtsps://cam.example/s",
        "http://192.0.2.2/snap.cgi?user=a&pwd=b",
        "https://[2001:db8::1]:8443/mjpeg",
    ],
)
def test_good_source_loads(tmp_path: Path, source: str) -> None:
    assert load_site(site(tmp_path, f"'{source}'")).config.cameras[0].source == source
