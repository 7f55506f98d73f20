"""The demo: its scripted day, its clips, and the whole thing end to end.

The end-to-end test runs `firegate demo`'s code with every real part (ptys,
Modbus TCP, the panel line, MJPEG cameras when the vision model is there, the
agent, a local mosquitto when installed) in accelerated time and checks its
summary: the fire forwarded, every nuisance held back, no error logged.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2

from agent.events import DecisionType
from firmware_mocks.broker import find_mosquitto
from firmware_mocks.demo.cameras import CLIPS_DIR, read_clip
from firmware_mocks.demo.play import (
    SCENARIO_FILE,
    SITE_TEMPLATE,
    DemoOptions,
    model_available,
    run_demo,
)
from firmware_mocks.timeline import check, load_scenario, replay

ROOT = Path(__file__).resolve().parents[2]
TEST_SPEED = 24.0  # the day's 900 s in 38 s; polls still fit on the 19200 baud buses


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_school_day_meets_its_expectations_in_the_pure_engine() -> None:
    sc = load_scenario(SCENARIO_FILE)
    result = replay(sc)
    assert check(result) == []
    # the nuisances of the day are really there, and held back by verification
    reasons = [s.source for _t, s in result.suppressed]
    assert {"kitchen-smoke", "classroom12-smoke", "corridor-smoke"} <= set(reasons)
    assert [c.action for _t, c in result.commands].count("reset") == 4


def test_site_template_is_a_valid_config() -> None:
    from agent.siteconfig import load_site

    site = load_site(SITE_TEMPLATE)
    assert len(site.config.devices()) == 6
    assert {c.name for c in site.config.cameras} == {"cam-classroom12", "cam-storeroom"}


def test_clips_are_small_decodable_and_attributed() -> None:
    clips = sorted(CLIPS_DIR.glob("*.avi"))
    assert [c.name for c in clips] == ["classroom.avi", "storeroom-fire.avi"]
    assert sum(c.stat().st_size for c in clips) < 2 * 1024 * 1024
    for c in clips:
        frames = read_clip(c)
        assert len(frames) >= 20
        assert frames[0].shape == (240, 320, 3)
    text = (CLIPS_DIR / "ATTRIBUTION.md").read_text()
    assert "CC BY 4.0" in text and "MIT" in text


def test_clip_reader_rejects_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF not really a video")
    try:
        read_clip(bad)
    except ValueError as e:
        assert "no frames" in str(e)
    else:
        raise AssertionError("a broken clip was accepted")
    assert cv2.imread(str(bad)) is None


async def test_demo_day_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    result = await run_demo(DemoOptions(speed=TEST_SPEED, state_dir=tmp_path, out=out))
    text = out.getvalue()
    assert result.errors == [], text
    assert result.ok, text
    assert "Result: OK" in text
    # the fire: exactly one fire alarm, in the storeroom, verified, after the pre-alarms
    fires = result.of(DecisionType.FIRE_ALARM.value)
    assert len(fires) == 1 and fires[0]["zone"] == "storeroom" and fires[0]["verified"], text
    pre = result.of(DecisionType.ELECTRICAL_PREALARM.value)
    assert pre and all(d["zone"] == "storeroom" for d in pre), text
    assert result.time_to_alert_s is not None and result.time_to_alert_s < 30
    start, alert = result.fire_started_t, result.fire_alert_t
    assert start is not None and alert is not None and 0 <= alert - start < 30, text
    # nuisances: each held back by verification, none forwarded
    assert result.forwarded_nuisances == []
    held = {s["source"] for s in result.suppressed}
    assert {"kitchen-smoke", "classroom12-smoke", "corridor-smoke"} <= held, text
    assert {name for _t, name in result.resets} >= {"kitchen-smoke", "corridor-smoke"}
    # the dirty detector is a fault (maintenance), not an alarm
    faults = result.of(DecisionType.FAULT.value)
    assert any(d["zone"] == "corridor-1" and "dirty" in d["reason"] for d in faults), text
    if result.cameras:
        assert any(d["zone"] == "classroom-12" and "frozen" in d["reason"] for d in faults), text
        assert fires[0]["cameras"] == ["cam-storeroom"], text
        assert fires[0]["has_snapshot"]
        assert "snapshot-" in " ".join(_names(tmp_path)), "the fire's snapshot was not received"
    # the run's real config and outbox are kept
    assert {"site.yaml", "outbox.db", "nuisance.jsonl", "agent.log"} <= set(_names(tmp_path))
    assert ("MQTT broker" in result.upstream) == (find_mosquitto() is not None)
    assert result.cameras == model_available()


def test_demo_command_fails_when_the_day_is_cut_before_the_fire(tmp_path: Path) -> None:
    # the exit status means something: without the fire, the demo must not pass
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--no-broker", "--speed", "24", "--until", "160"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # a quick look is not a failure of the gateway: it says what it could not judge
    assert "Result: INCOMPLETE - the day was cut at" in proc.stdout
    assert "FAILED" not in proc.stdout
    assert "fire in the storeroom: not reached" in proc.stdout
    assert "kitchen-smoke: alarm verification" in proc.stdout  # held back, printed live
    assert "the agent's outbox" in proc.stdout


def test_demo_help_gives_the_real_speed_and_length() -> None:
    from agent.cli import main
    from firmware_mocks.demo.play import DEFAULT_SPEED, MAX_SPEED

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["demo", "--help"])
    text = " ".join(out.getvalue().split())
    day_s = load_scenario(ROOT / "firmware_mocks" / "demo" / "school-day.yaml").duration_s
    assert f"default {DEFAULT_SPEED:g}:" in text and f"at most {MAX_SPEED:g}" in text
    assert f"{day_s / 60:.0f}-minute morning" in text
    assert round(day_s / DEFAULT_SPEED) == 60 and "about a minute" in text


async def test_demo_refuses_a_speed_the_agent_cannot_keep_up_with(tmp_path: Path) -> None:
    from firmware_mocks.demo.play import DemoError

    for speed in (0.0, 200.0):
        try:
            await run_demo(DemoOptions(speed=speed, state_dir=tmp_path, out=io.StringIO()))
        except DemoError as e:
            assert "--speed" in str(e)
        else:
            raise AssertionError(f"speed {speed} accepted")
    assert _names(tmp_path) == []  # nothing was started


def test_state_dir_is_cleared_only_when_a_demo_used_it(tmp_path: Path) -> None:
    from firmware_mocks.demo.play import DEMO_MARKER, DemoError, prepare_state_dir

    real = tmp_path / "var-lib-firegate"
    real.mkdir()
    (real / "outbox.db").write_bytes(b"a real gateway's outbox")
    try:
        prepare_state_dir(real)
    except DemoError as e:
        assert "not empty" in str(e)
    else:
        raise AssertionError("a foreign folder was accepted")
    assert (real / "outbox.db").read_bytes() == b"a real gateway's outbox"

    used = tmp_path / "demo"
    used.mkdir()
    for name in (DEMO_MARKER, "outbox.db", "outbox.db-wal", "nuisance.jsonl", "notes.txt"):
        (used / name).write_text("x")
    prepare_state_dir(used)
    assert _names(used) == sorted([DEMO_MARKER, "notes.txt"])


def _processes_mentioning(text: str) -> list[str]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(f"{p.name}: {cmd}")
    return out


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    import signal
    import time

    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "demo", "--speed", "20", "--state-dir", str(state)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 40
        playing = re.compile(r"^\d\d:\d\d:\d\d  RESET ")
        for line in proc.stdout:  # wait until the day is playing (the first reset)
            seen.append(line)
            if playing.match(line) or time.monotonic() > deadline:
                break
        assert playing.match(seen[-1]), "".join(seen)
        if find_mosquitto() is not None:
            assert _processes_mentioning(str(state / "mosquitto.conf")), "no broker was started"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest
    assert "Ctrl-C" in rest and "Result: stopped" in rest
    assert _processes_mentioning(str(state)) == []  # broker and everything else gone
    assert not (state / "rs485-1").exists() and not (state / "panel").exists()  # ptys closed
