"""Camera passwords and other secrets never reach an output (one redaction,
agent.logs.redact), and the state folder is private whatever the umask."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent import logs
from agent.cli import main
from agent.commands.doctor import Outcome, Result, format_results
from agent.health import write_json_atomic

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("p@ss", "s3cret", "l0ginpw", "tok3n")
SOURCES = (
    "rtsp://admin:p@ss@127.0.0.1:9/live",  # a password with an @ in it
    "http://127.0.0.1:9/snap.cgi?user=admin&pwd=s3cret",
    "http://127.0.0.1:9/videostream.cgi?loginuse=admin&loginpas=l0ginpw",
    "rtsp://127.0.0.1:9/stream?password=tok3n",
)


# an unplugged adapter: its fault is stored at once, so the outbox exists
BUS = (
    "buses:\n"
    "  - {name: b1, type: rtu, port: /nonexistent/ttyUSB9, devices:\n"
    "      [{name: d1, profile: calectro-ug3-o-mb-r, device_id: 1, zone: hall}]}\n"
)


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:p@ss@host/", "rtsp://admin:***@host/"),
        ("rtsp://u:p@cam/x", "rtsp://u:***@cam/x"),
        ("rtsp://admin:pa/ss@host:554/s", "rtsp://admin:***@host:554/s"),
        ("rtsp://admin:p?ss@host/", "rtsp://admin:***@host/"),
        ("http://cam/s.cgi?user=a&pwd=s3cret&r=1", "http://cam/s.cgi?user=a&pwd=***&r=1"),
        ("http://cam/v.cgi?loginuse=a&loginpas=x", "http://cam/v.cgi?loginuse=a&loginpas=***"),
        ("rtsp://cam/live?password=x#f", "rtsp://cam/live?password=***#f"),
        ("rtsp://cam/x", "rtsp://cam/x"),
        ("http://cam/snap@1.jpg", "http://cam/snap@1.jpg"),
        ("/srv/clip.mp4", "/srv/clip.mp4"),
        ("usb:0", "usb:0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert logs.redact_url(url) == shown


def test_redact_keeps_json_json() -> None:
    doc = {"source": SOURCES[0], "reason": "login failed: password=s3cret", "n": 1}
    out = json.loads(logs.redact(json.dumps(doc)))
    assert out["n"] == 1 and not leaked(json.dumps(out)), out


def test_log_lines_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("info")
    log = logging.getLogger("vision.capture")
    log.warning("cannot open %s", SOURCES[0])
    try:
        raise OSError(f"open failed for {SOURCES[1]}")
    except OSError:
        log.exception("camera %s", SOURCES[2])
    err = capsys.readouterr().err
    assert "admin:***@127.0.0.1" in err and not leaked(err), err


def site_text(tmp_path: Path, uplink: str = "") -> str:
    cams = "".join(
        f"  - {{name: cam-{i}, zone: hall, source: '{s}'}}\n" for i, s in enumerate(SOURCES)
    )
    return (
        "site: {site_id: s, gateway_id: g}\n"
        "zones: [{id: hall}]\n" + BUS + f"cameras:\n{cams}"
        f"storage: {{state_dir: {tmp_path}/state}}\n" + uplink
    )


def test_check_config_summary_and_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(site_text(tmp_path))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    assert "admin:***@" in out.out and not leaked(out.out + out.err), out
    path.write_text(site_text(tmp_path).replace("zone: hall, source", "zone: attic, source"))
    assert main(["check-config", str(path)]) == 2
    out = capsys.readouterr()
    assert "unknown zone" in out.err and not leaked(out.out + out.err)


def test_plain_mqtt_with_a_password_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(site_text(tmp_path, "uplink: {host: broker.example, password: s3cret}\n"))
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "without TLS" in err and "uplink.tls" in err, err
    assert not leaked(err)
    path.write_text(site_text(tmp_path, "uplink: {host: broker.example}\n"))
    assert main(["check-config", str(path)]) == 0
    assert "without TLS" not in capsys.readouterr().err  # no password: nothing to leak


def test_doctor_lines() -> None:
    r = Result("camera cam-0", Outcome.FAIL, f"cannot open {SOURCES[0]}", f"check {SOURCES[1]}")
    assert not leaked(r.detail + r.fix + format_results([r]))


def test_status_file_is_redacted_and_group_readable_only(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    old = os.umask(0o077)  # as the agent runs
    try:
        write_json_atomic(path, {"cameras": {"cam-0": {"source": SOURCES[0], "fault": SOURCES[3]}}})
    finally:
        os.umask(old)
    assert not leaked(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # maintainers in group firegate


def run_agent(config: Path, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config), "--exit-after", "4"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        umask=umask,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_by_hand_with_umask_022(tmp_path: Path) -> None:
    """The real agent with unreachable cameras: the log, status.json and `firegate
    status` show no password, and the state folder and its files are private."""
    config = tmp_path / "site.yaml"
    config.write_text(site_text(tmp_path))
    done = run_agent(config)
    state = tmp_path / "state"
    assert not leaked(done.stderr), done.stderr
    assert not leaked((state / "status.json").read_text())
    shown = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--state-dir", str(state), "--json"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "cam-0" in shown.stdout and not leaked(shown.stdout + shown.stderr)
    assert mode(state) == 0o700
    assert mode(state / "status.json") == 0o640
    others = [p for p in state.iterdir() if mode(p) & 0o007]
    assert others == [], [(p.name, oct(mode(p))) for p in others]


def test_an_existing_world_readable_state_folder_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    (state / "nuisance.jsonl").write_text("")
    os.chmod(state / "nuisance.jsonl", 0o644)
    config = tmp_path / "site.yaml"
    config.write_text(
        "site: {site_id: s, gateway_id: g}\nzones: [{id: hall}]\n"
        + BUS
        + f"storage: {{state_dir: {state}}}\n"
    )
    done = run_agent(config)
    assert mode(state) == 0o750  # group kept (maintainers), others out
    assert mode(state / "nuisance.jsonl") == 0o600
    assert "readable or writable by others" in done.stderr


async def test_outbox_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """What `firegate run` does first (statedir.secure), then the real outbox."""
    from agent import statedir
    from agent.events import DecisionType, gateway_decision
    from agent.outbox import Outbox

    old = os.umask(0o022)
    try:
        statedir.secure(tmp_path / "state")
        outbox = Outbox(tmp_path / "state" / "outbox.db", 1000, 10**8)
        await outbox.submit(
            gateway_decision(DecisionType.FAULT, "test", part="t", wall=1.0, mono=1.0)
        )
        await outbox.close()
    finally:
        os.umask(old)
    files = list((tmp_path / "state").iterdir())
    assert files and all(mode(p) == 0o600 for p in files), [(p.name, oct(mode(p))) for p in files]
