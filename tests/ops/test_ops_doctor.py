"""`firegate doctor` against real things: ptys, a mosquitto, tmpfs mounts, ONNX, video."""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.commands import doctor
from agent.commands.doctor import (
    MODELS_DIR,
    Context,
    Identity,
    Outcome,
    mode_allows,
    service_identity,
)
from firmware_mocks.broker import Mosquitto, free_port
from tests.uplink.scripted_broker import ScriptedBroker

NOBODY = 65534
DIALOUT = grp.getgrnam("dialout").gr_gid


def write_site(
    tmp: Path,
    *,
    port: str | None = None,
    uplink: str = "",
    state_dir: Path | None = None,
    extra: str = "",
    outbox_max_mb: float = 1,
) -> Path:
    state = state_dir or (tmp / "state")
    state.mkdir(exist_ok=True)
    buses = ""
    if port is not None:
        buses = f"""
buses:
  - name: rs485-1
    type: rtu
    port: {port}
    devices:
      - {{name: smoke-1, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen}}
"""
    text = f"""version: 1
site: {{site_id: school-1, gateway_id: gw-1}}
zones:
  - id: kitchen
{buses}{uplink}
storage:
  state_dir: {state}
  outbox_max_mb: {outbox_max_mb}
{extra}"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


def ctx_for(path: Path, **kw: Any) -> Context:
    ctx = Context(config_path=path, timeout_s=3.0, **kw)
    [r] = doctor.check_config(ctx)
    assert r.outcome is Outcome.PASS, r
    return ctx


@pytest.fixture
def pty() -> Iterator[Path]:
    master, slave = os.openpty()
    path = Path(os.ttyname(slave))
    st = path.stat()
    try:
        yield path
    finally:
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, st.st_mode & 0o7777)
        os.close(master)
        os.close(slave)


# ---------------------------------------------------------------- serial ports


def test_missing_serial_port(tmp_path: Path) -> None:
    ctx = ctx_for(write_site(tmp_path, port="/dev/ttyUSB-firegate-missing"))
    [r] = doctor.check_serial_ports(ctx)
    assert r.outcome is Outcome.FAIL
    assert "/dev/ttyUSB-firegate-missing not found" in r.detail
    assert "plug in the adapter" in r.fix


def test_port_permissions_judged_for_the_service_user(tmp_path: Path, pty: Path) -> None:
    # Tests run as root, for whom every device is open; so doctor (as root)
    # judges the mode bits for the service user, here `nobody` plus the
    # unit's groups (dialout, video), like systemd will run it.
    who = service_identity("nobody")
    assert who is not None and DIALOUT in who.gids
    ctx = ctx_for(write_site(tmp_path, port=str(pty)), identity=who)

    os.chown(pty, 0, 0)
    os.chmod(pty, 0o000)
    [r] = doctor.check_serial_ports(ctx)
    assert r.outcome is Outcome.FAIL and "may not read and write" in r.detail
    assert "dialout" in r.fix and "c---------" in r.detail

    os.chmod(pty, 0o600)
    [r] = doctor.check_serial_ports(ctx)
    assert r.outcome is Outcome.FAIL

    os.chown(pty, 0, DIALOUT)
    os.chmod(pty, 0o660)  # what the udev rule sets: the service reaches it through dialout
    [r] = doctor.check_serial_ports(ctx)
    assert r.outcome is Outcome.PASS, r
    assert "root:dialout" in r.detail


MODES = [0o000, 0o600, 0o660, 0o606, 0o066, 0o640, 0o620, 0o006]


@pytest.mark.parametrize("owner", [0, NOBODY])
def test_mode_logic_agrees_with_the_kernel(pty: Path, owner: int) -> None:
    """Cross-check mode_allows with the kernel's answer for a real unprivileged
    process (setpriv as nobody, with and without dialout)."""
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        pytest.skip("setpriv not available")
    os.chown(pty, owner, DIALOUT)
    for mode in MODES:
        os.chmod(pty, mode)
        for groups, gids in (
            (["--clear-groups"], frozenset()),
            (["--groups=20"], frozenset({DIALOUT})),
        ):
            kernel = (
                subprocess.run(
                    [
                        "setpriv",
                        f"--reuid={NOBODY}",
                        f"--regid={NOBODY}",
                        *groups,
                        "test",
                        "-r",
                        str(pty),
                        "-a",
                        "-w",
                        str(pty),
                    ]
                ).returncode
                == 0
            )
            ours = mode_allows(
                0o20000 | mode, owner, DIALOUT, NOBODY, gids | {NOBODY}, os.R_OK | os.W_OK
            )
            assert ours == kernel, f"mode {mode:o} owner {owner} groups {sorted(gids)}"


# ---------------------------------------------------------------------- broker


async def test_dead_broker(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    ctx = ctx_for(write_site(tmp_path, uplink=f"uplink: {{host: 127.0.0.1, port: {port}}}"))
    [r] = await doctor.check_broker(ctx)
    assert r.outcome is Outcome.FAIL
    assert "refused" in r.detail and f":{port}" in r.detail
    assert "uplink.port" in r.fix


async def test_live_broker_accepts_and_refuses_credentials(tmp_path: Path, mosquitto: Any) -> None:
    pw = tmp_path / "mqtt-password"
    pw.write_text(mosquitto.password + "\n")
    up = f"uplink: {{host: 127.0.0.1, port: {mosquitto.port}, username: gw, password_file: {pw}}}"
    r, pub = await doctor.check_broker(ctx_for(write_site(tmp_path, uplink=up)))
    assert r.outcome is Outcome.PASS, r
    assert "connected as gw" in r.detail and "MQTT 5" in r.detail
    assert pub.check == "broker publish" and pub.outcome is Outcome.PASS, pub
    assert "firegate/school-1/gw-1/doctor" in pub.detail

    pw.write_text("wrong\n")
    [r] = await doctor.check_broker(ctx_for(write_site(tmp_path, uplink=up)))
    assert r.outcome is Outcome.FAIL
    assert "refused the credentials" in r.detail
    assert "wrong" not in r.detail + r.fix  # never print the password


async def test_broker_tls_verified_and_refused(tmp_path: Path, mosquitto_tls: Any) -> None:
    def site(ca: Path) -> Path:
        up = f"uplink: {{host: 127.0.0.1, port: {mosquitto_tls.port}, tls: {{ca_file: {ca}}}}}"
        return write_site(tmp_path, uplink=up)

    r, pub = await doctor.check_broker(ctx_for(site(mosquitto_tls.ca_file)))
    assert r.outcome is Outcome.PASS, r
    assert pub.outcome is Outcome.PASS, pub
    assert "mqtts://" in r.detail and "TLS verified" in r.detail
    [r] = await doctor.check_broker(ctx_for(site(mosquitto_tls.other_ca_file)))
    assert r.outcome is Outcome.FAIL
    assert "TLS certificate not accepted" in r.detail and "ca_file" in r.fix


@pytest.fixture
def acl_mosquitto(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """A mosquitto whose ACL lets user gw (password s3cret) publish only under
    another site's root; rewrite the ACL file and restart to change that."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto is not installed")
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw", "s3cret"], check=True)
    acl = tmp_path / "acl"
    acl.write_text("user gw\ntopic readwrite firegate/other-site/#\n")  # not this gateway's root
    broker = Mosquitto(
        tmp_path / "broker", anonymous=False, config=f"password_file {pw}\nacl_file {acl}\n"
    )
    broker.start()
    yield broker, acl
    broker.stop()


async def test_broker_refusing_publish_by_acl_fails_with_what_to_ask(
    tmp_path: Path, acl_mosquitto: tuple[Mosquitto, Path]
) -> None:
    """Under MQTT 5 doctor publishes a harmless test message, so an ACL that lets the
    gateway log in but not publish shows at commissioning; 3.1.1 cannot tell."""
    broker, acl = acl_mosquitto
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    up = f"uplink: {{host: 127.0.0.1, port: {broker.port}, username: gw, password_file: {secret}"
    r, pub = await doctor.check_broker(ctx_for(write_site(tmp_path, uplink=up + "}")))
    assert r.outcome is Outcome.PASS, r  # the login itself is fine
    assert pub.outcome is Outcome.FAIL, pub
    assert "firegate/school-1/gw-1/doctor" in pub.detail and "0x87 Not authorized" in pub.detail
    assert "publish rights on firegate/school-1/gw-1/#" in pub.fix and "user gw" in pub.fix
    out = doctor.format_results([r, pub])
    assert "FAIL  broker publish" in out and "s3cret" not in out

    old = up + ", mqtt_version: 3.1.1}"
    r, pub = await doctor.check_broker(ctx_for(write_site(tmp_path, uplink=old)))
    assert r.outcome is Outcome.PASS and "MQTT 3.1.1" in r.detail, r
    assert pub.outcome is Outcome.SKIP and "3.1.1" in pub.detail, pub

    acl.write_text("user gw\ntopic readwrite firegate/school-1/gw-1/#\n")
    broker.stop()
    broker.start()
    r, pub = await doctor.check_broker(ctx_for(write_site(tmp_path, uplink=up + "}")))
    assert pub.outcome is Outcome.PASS and "nobody subscribes" in pub.detail, pub


async def test_broker_skipped_without_uplink(tmp_path: Path) -> None:
    [r] = await doctor.check_broker(ctx_for(write_site(tmp_path)))
    assert r.outcome is Outcome.SKIP


# --------------------------------------------------------------------- storage


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_storage_ok(tmp_path: Path) -> None:
    [r] = doctor.check_storage(ctx_for(write_site(tmp_path)))
    assert r.outcome is Outcome.PASS, r
    assert "writable" in r.detail


def test_storage_too_small_for_the_outbox_cap(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=8m") as d:
        [r] = doctor.check_storage(ctx_for(write_site(tmp_path, state_dir=d, outbox_max_mb=256)))
    assert r.outcome is Outcome.FAIL
    assert "MB free" in r.detail and "outbox_max_mb" in r.fix


def test_storage_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "size=1m") as d:
        with open(d / "filler", "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"x" * 65536)
        [r] = doctor.check_storage(ctx_for(write_site(tmp_path, state_dir=d)))
    assert r.outcome is Outcome.FAIL
    assert "No space left" in r.detail and "disk is full" in r.fix


def test_storage_read_only(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "size=1m,ro") as d:
        [r] = doctor.check_storage(ctx_for(write_site(tmp_path, state_dir=d)))
    assert r.outcome is Outcome.FAIL
    assert "Read-only" in r.detail and "read-only" in r.fix


def test_storage_not_writable_by_service_user(tmp_path: Path) -> None:
    d = tmp_path / "rootonly"
    d.mkdir(mode=0o755)
    who = service_identity("nobody")
    assert who is not None
    [r] = doctor.check_storage(ctx_for(write_site(tmp_path, state_dir=d), identity=who))
    assert r.outcome is Outcome.FAIL and "may not write" in r.detail


def test_storage_missing(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    ctx = ctx_for(path)
    assert ctx.site is not None
    (tmp_path / "state").rmdir()
    [r] = doctor.check_storage(ctx)
    assert r.outcome is Outcome.FAIL and "does not exist" in r.detail


# ----------------------------------------------------------------------- clock


def test_clock(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    [r] = doctor.check_clock(ctx_for(path))
    assert r.outcome is Outcome.PASS, r
    [r] = doctor.check_clock(ctx_for(path, now_wall=lambda: 0.0))
    assert r.outcome is Outcome.FAIL and "1970-01-01" in r.detail
    future = time.time() + 86400
    os.utime(path, (future, future))  # the config was written "tomorrow": the clock is behind
    [r] = doctor.check_clock(ctx_for(path))
    assert r.outcome is Outcome.FAIL and "behind" in r.detail and "NTP" in r.fix


# ---------------------------------------------------------------- model, camera


def tiny_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1, 1, 1])
    node = helper.make_node("ReduceMean", ["images"], ["scores"], axes=[1, 2, 3], keepdims=1)
    graph = helper.make_graph([node], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


async def test_model_check(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    ctx = Context(config_path=tmp_path / "x.yaml", models_dir=models)
    [r] = await doctor.check_model(ctx)
    assert r.outcome is Outcome.SKIP
    tiny_model(models / "smoke.onnx")
    [r] = await doctor.check_model(ctx)
    assert r.outcome is Outcome.PASS, r
    assert "outputs 1x1x1x1" in r.detail
    (models / "broken.onnx").write_bytes(b"not a model")
    results = await doctor.check_model(ctx)
    assert [x.outcome for x in results] == [Outcome.FAIL, Outcome.PASS]


def video(path: Path, w: int = 64, h: int = 48, frames: int = 5) -> None:
    import cv2
    import numpy as np

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, (w, h))
    assert out.isOpened()
    for i in range(frames):
        out.write(np.full((h, w, 3), i * 20, dtype=np.uint8))
    out.release()


async def test_camera_check(tmp_path: Path) -> None:
    clip = tmp_path / "cam.avi"
    video(clip)
    cams = f"""cameras:
  - {{name: cam-ok, zone: kitchen, source: {clip}}}
  - {{name: cam-wrong-size, zone: kitchen, source: {clip}, resolution: [1280, 720]}}
  - {{name: cam-garbage, zone: kitchen, source: {tmp_path / "garbage.avi"}}}
"""
    (tmp_path / "garbage.avi").write_bytes(os.urandom(2048))
    results = await doctor.check_cameras(ctx_for(write_site(tmp_path, extra=cams)))
    by = {r.check: r for r in results}
    assert by["camera cam-ok"].outcome is Outcome.PASS and "64x48" in by["camera cam-ok"].detail
    assert by["camera cam-wrong-size"].outcome is Outcome.FAIL
    assert "config says 1280x720" in by["camera cam-wrong-size"].detail
    assert by["camera cam-garbage"].outcome is Outcome.FAIL


# -------------------------------------------------------------- the whole command


def test_cli_all_good_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_site(tmp_path)
    assert main(["doctor", "--config", str(path), "--user", "root"]) == 0
    out = capsys.readouterr().out
    assert "PASS  config" in out and "PASS  storage" in out and "0 failed" in out


def test_cli_failures_exit_non_zero_with_fixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    path = write_site(
        tmp_path,
        port="/dev/ttyUSB-firegate-missing",
        uplink=f"uplink: {{host: 127.0.0.1, port: {port}}}",
    )
    assert main(["doctor", "--config", str(path), "--timeout-s", "2", "--user", "root"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  serial rs485-1" in out and "FAIL  broker" in out
    assert "FAIL  device smoke-1" in out  # its bus's port is missing: not polled, said so
    assert out.count("-> ") >= 3
    assert "3 failed" in out


def test_cli_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("version: 1\nsite: {site_id: s, gateway_id: g}\nzones: [{id: a}]\nbusses: []\n")
    assert main(["doctor", "--config", str(path), "--user", "nobody"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  config" in out and "busses" in out
    assert re.search(r"SKIP  storage +needs a valid config", out)
    # service user, clock and each model that ships pass; the rest needs the config
    assert re.search(rf"\b{2 + len(list(MODELS_DIR.glob('*.onnx')))} passed, 1 failed", out)


def test_service_user_must_exist(tmp_path: Path) -> None:
    ctx = ctx_for(write_site(tmp_path), service_user="no-such-user-firegate")
    [r] = doctor.check_service_user(ctx)
    assert r.outcome is Outcome.FAIL and "install.sh" in r.fix
    [r] = doctor.check_service_user(ctx_for(write_site(tmp_path), service_user="nobody"))
    assert r.outcome is Outcome.PASS and "dialout" in r.detail


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user may traverse (pytest's own tmp folders are 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="firegate-doctor-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_files_readable_by_the_service_user_and_secrets_private(open_dir: Path) -> None:
    who = service_identity("nobody")
    assert who is not None
    pw = open_dir / "mqtt-password"
    pw.write_text("s3cret\n")
    pw.chmod(0o640)
    os.chown(pw, 0, NOBODY)  # group of the service user, like chgrp firegate
    path = write_site(open_dir, uplink=f"uplink: {{host: 127.0.0.1, password_file: {pw}}}")
    path.chmod(0o644)
    [r] = doctor.check_files(ctx_for(path, identity=who))
    assert r.outcome is Outcome.PASS, r

    pw.chmod(0o644)  # every user on the gateway could read the broker password
    [r] = doctor.check_files(ctx_for(path, identity=who))
    assert r.outcome is Outcome.FAIL and "readable by every user" in r.detail

    pw.chmod(0o640)
    path.chmod(0o600)  # root-only config: the service could not start
    [r] = doctor.check_files(ctx_for(path, identity=who))
    assert (
        r.outcome is Outcome.FAIL and r.check == "file site config" and "may not read" in r.detail
    )


def test_register_check_replaces_placeholder(tmp_path: Path) -> None:
    saved = list(doctor.CHECKS)
    try:
        doctor.register_check(
            "devices", lambda ctx: [doctor.Result("devices", Outcome.PASS, "3 answered")]
        )
        assert [n for n, _ in doctor.CHECKS] == [n for n, _ in saved]
        doctor.register_check("extra", lambda ctx: [], needs_site=False, before="clock")
        assert [n for n, _ in doctor.CHECKS][-2:] == ["extra", "clock"]
    finally:
        doctor.CHECKS[:] = saved


def test_identity_when_service_user_missing() -> None:
    who = doctor.identity_for("no-such-user-firegate")
    assert who.uid is None or "does not exist" in who.description
    assert isinstance(who, Identity)


async def test_downlink_subscription_checked_only_when_on(tmp_path: Path, mosquitto: Any) -> None:
    pw = tmp_path / "mqtt-password"
    pw.write_text(mosquitto.password + "\n")
    up = f"uplink: {{host: 127.0.0.1, port: {mosquitto.port}, username: gw, password_file: {pw}"
    results = await doctor.check_broker(ctx_for(write_site(tmp_path, uplink=up + "}")))
    assert [r.check for r in results] == ["broker", "broker publish"]
    on = up + ", downlink: true}"
    _, _, sub = await doctor.check_broker(ctx_for(write_site(tmp_path, uplink=on)))
    assert sub.check == "broker subscribe" and sub.outcome is Outcome.PASS, sub
    assert "firegate/school-1/gw-1/request/+" in sub.detail


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_downlink_subscription_refused_fails_with_what_to_ask(
    tmp_path: Path, version: str
) -> None:
    """mosquitto's ACL file grants every subscription; a scripted broker refuses it,
    as EMQX, HiveMQ or AWS IoT Core do."""
    async with ScriptedBroker(lambda topic, n: 0x87 if version == "5" else 0x80) as b:
        up = (
            f"uplink: {{host: 127.0.0.1, port: {b.port}, downlink: true, "
            f'mqtt_version: "{version}"}}'
        )
        results = await doctor.check_broker(ctx_for(write_site(tmp_path, uplink=up)))
    by = {r.check: r for r in results}
    assert by["broker"].outcome is Outcome.PASS, by
    sub = by["broker subscribe"]
    assert sub.outcome is Outcome.FAIL, sub
    assert "request/+" in sub.detail and ("0x87" if version == "5" else "0x80") in sub.detail
    assert "subscribe (read) rights" in sub.fix and "downlink: false" in sub.fix


async def test_model_in_use_is_named_and_a_missing_one_fails(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    tiny_model(models / "firenet.onnx")
    tiny_model(models / "other.onnx")
    cams = "cameras:\n  - {name: cam-1, zone: kitchen, source: 'rtsp://192.0.2.10/s'}\n"

    async def check(vision: str) -> dict[str, Any]:
        path = write_site(tmp_path, extra=cams + vision)
        return {r.check: r for r in await doctor.check_model(ctx_for(path, models_dir=models))}

    by = await check("")
    assert "in use" in by["model firenet.onnx"].detail
    assert "in use" not in by["model other.onnx"].detail
    by = await check(f"vision: {{model: {models / 'other.onnx'}}}")
    assert "in use" in by["model other.onnx"].detail
    assert "in use" not in by["model firenet.onnx"].detail
    # a model file that does not exist is a config problem (check-config refuses it)
    gone = write_site(tmp_path, extra=cams + f"vision: {{model: {tmp_path / 'gone.onnx'}}}")
    [cfg] = doctor.check_config(Context(config_path=gone, timeout_s=3.0, models_dir=models))
    assert cfg.outcome is Outcome.FAIL and "vision.model" in cfg.detail, cfg
    # a damaged model of the site's own: reinstalling firegate would not fix it
    (tmp_path / "ours.onnx").write_bytes(b"not a model")
    by = await check(f"vision: {{model: {tmp_path / 'ours.onnx'}}}")
    assert by["model ours.onnx"].outcome is Outcome.FAIL
    assert "reinstall" not in by["model ours.onnx"].fix
    assert "vision.model: standard" in by["model ours.onnx"].fix
    # a damaged shipped model: reinstalling is the fix
    (models / "other.onnx").write_bytes(b"not a model")
    by = await check("")
    assert "reinstall firegate" in by["model other.onnx"].fix


async def test_camera_load_for_the_configured_cameras(tmp_path: Path) -> None:
    """Doctor times the model in use on this CPU for the site's cameras: 16 cameras
    analysed 30 times a second cannot fit half a core on any machine here; one at
    2 frames/s fits on any."""

    def cameras(n: int, fps: int) -> str:
        return "cameras:\n" + "".join(
            f"  - {{name: cam-{i}, zone: kitchen, source: 'rtsp://192.0.2.10/{i}', "
            f"detect_fps: {fps}}}\n"
            for i in range(n)
        )

    path = write_site(tmp_path, extra=cameras(16, 30))
    by = {r.check: r for r in await doctor.check_model(ctx_for(path))}
    busy = by["camera load"]
    assert busy.outcome is Outcome.FAIL, busy
    assert "firenet.onnx" in busy.detail and "16 camera(s) at 480 frames/s" in busy.detail
    assert "detect_fps" in busy.fix

    path = write_site(tmp_path, extra=cameras(1, 2))
    by = {r.check: r for r in await doctor.check_model(ctx_for(path))}
    fine = by["camera load"]
    assert fine.outcome is Outcome.PASS, fine
    assert "firenet.onnx" in fine.detail and "1 camera(s) at 2 frames/s" in fine.detail


async def test_camera_load_counts_decoding_and_points_to_sub_streams(tmp_path: Path) -> None:
    """Decoding is timed too: twelve 4K main streams analysed once a second are light
    for the model but decoding them whole is not; the fix names the sub-stream.
    Two 640x360 sub-streams fit."""

    def cameras(n: int, res: str, scheme: str = "rtsp") -> str:
        return "cameras:\n" + "".join(
            f"  - {{name: cam-{i}, zone: kitchen, source: '{scheme}://192.0.2.10/{i}', "
            f"detect_fps: 1, resolution: [{res}]}}\n"
            for i in range(n)
        )

    path = write_site(tmp_path, extra=cameras(12, "3840, 2160"))
    heavy = {r.check: r for r in await doctor.check_model(ctx_for(path))}["camera load"]
    assert heavy.outcome is Outcome.FAIL, heavy
    assert "decoding about" in heavy.detail and "3840x2160" in heavy.detail
    assert "sub-stream" in heavy.fix

    path = write_site(tmp_path, extra=cameras(2, "640, 360"))
    light = {r.check: r for r in await doctor.check_model(ctx_for(path))}["camera load"]
    assert light.outcome is Outcome.PASS, light
    assert "640x360" in light.detail

    assert doctor._time_decoding((640, 360))[1] < doctor._time_decoding((3840, 2160))[1]
