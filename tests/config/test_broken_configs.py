"""A table of broken site configs: each gives a located message and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.siteconfig import ConfigError, load_site
from tests.helpers.site_base import BASE


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (case id, config text, expected text in the message, expected line or None)
CASES: list[tuple[str, str | bytes, str, int | None]] = [
    (
        "typo-baudrate",
        edit("    baudrate: 9600", "    baud_rate: 9600"),
        "unknown key 'baud_rate'; did you mean 'baudrate'?",
        12,
    ),
    (
        "typo-poll-interval",
        edit("        poll_interval_s: 1\n", "        poll_intervall_s: 1\n"),
        "did you mean 'poll_interval_s'?",
        20,
    ),
    ("typo-top-level", edit("cameras:", "camera:"), "did you mean 'cameras'?", 41),
    ("wrong-type-device-id", edit("device_id: 3", "device_id: three"), "valid integer", 18),
    ("non-standard-baudrate", edit("baudrate: 9600", "baudrate: 9601"), "is not one of 1200", 12),
    ("bad-parity", edit("parity: N", "parity: X"), "'N', 'E' or 'O'", 13),
    ("bad-stopbits", edit("stopbits: 1", "stopbits: 3"), "Input should be 1 or 2", 14),
    (
        "bad-echo",
        edit("    stopbits: 1\n", "    stopbits: 1\n    echo: atuo\n"),
        "'auto', 'on' or 'off'",
        15,
    ),
    (
        "echo-on-a-panel-line",
        edit("    port: /dev/ttyS0\n", "    port: /dev/ttyS0\n    echo: on\n"),
        "unknown key 'echo'",
        37,
    ),
    (
        "interval-too-short",
        edit("poll_interval_s: 1", "poll_interval_s: 0.01"),
        "greater than or equal to 0.1",
        20,
    ),
    (
        "interval-too-long",
        edit("poll_interval_s: 1", "poll_interval_s: 99999"),
        "less than or equal to 3600",
        20,
    ),
    ("interval-with-unit", edit("poll_interval_s: 1", "poll_interval_s: 1s"), "valid number", 20),
    (
        "unknown-zone",
        edit("        zone: kitchen\n", "        zone: kitchn\n"),
        "unknown zone 'kitchn'; did you mean 'kitchen'?",
        19,
    ),
    (
        "unknown-profile",
        edit("profile: calectro-ug3-o-mb-r", "profile: calectro-ug3"),
        "unknown profile 'calectro-ug3'",
        17,
    ),
    (
        "duplicate-device-id",
        edit(
            "device_id: 1\n        zone: hall\n  - name: tcp-1",
            "device_id: 3\n        zone: hall\n  - name: tcp-1",
        ),
        "device id 3 is already used on bus 'rs485-1' by 'kitchen-smoke'",
        23,
    ),
    ("rtu-broadcast-id", edit("device_id: 3", "device_id: 0"), "broadcast address", 18),
    (
        "two-buses-one-port",
        edit("port: /dev/ttyS0", "port: /dev/ttyUSB0"),
        "/dev/ttyUSB0 is already used by buses[0]",
        36,
    ),
    (
        "duplicate-device-name",
        edit("name: hall-smoke", "name: kitchen-smoke"),
        "device name 'kitchen-smoke' is already used at buses[0].devices[0].name",
        30,
    ),
    (
        "duplicate-zone",
        edit("  - id: hall\n", "  - id: kitchen\n"),
        "zone name 'kitchen' is already used",
        7,
    ),
    ("bad-name-characters", edit("name: rs485-1", "name: rs485 1"), "should match pattern", 9),
    (
        "mask-outside-frame",
        edit("[640, 40]", "[700, 40]"),
        "mask corner (700, 40) is outside the 640x480 frame",
        47,
    ),
    (
        "mask-without-resolution",
        edit("    resolution: [640, 480]\n", ""),
        "give the camera's resolution",
        42,
    ),
    (
        "mask-two-corners",
        edit("[[0, 0], [640, 0], [640, 40]]", "[[0, 0], [640, 0]]"),
        "a polygon needs at least 3",
        46,
    ),
    ("missing-site-id", edit("  site_id: school-1\n", ""), "required key 'site_id' is missing", 2),
    (
        "missing-zones",
        edit("zones:\n  - id: kitchen\n  - id: hall\n", ""),
        "required key 'zones' is missing",
        1,
    ),
    (
        "empty-zones",
        edit("zones:\n  - id: kitchen\n  - id: hall\n", "zones: []\n"),
        "at least 1 item",
        5,
    ),
    (
        "unknown-bus-type",
        edit("type: rtu", "type: rs485"),
        "'rs485' is not one of: rtu, tcp, panel",
        10,
    ),
    ("missing-bus-type", edit("    type: rtu\n", ""), "required key 'type' is missing", 9),
    (
        "duplicate-yaml-key",
        edit("    baudrate: 9600\n", "    baudrate: 9600\n    baudrate: 19200\n"),
        "key 'baudrate' appears twice (first at line 12)",
        13,
    ),
    ("yaml-syntax", edit("  gateway_id: gw-1", "  gateway_id: [gw-1"), "YAML syntax error", None),
    ("yaml-tab", edit("  gateway_id: gw-1", "\tgateway_id: gw-1"), "YAML syntax error", None),
    ("empty-file", "", "is empty", None),
    ("only-comments", "# nothing here\n", "is empty", None),
    ("binary-garbage", bytes(range(256)) * 4, "binary file", None),
    ("not-utf8", "site:\n  name: caf\xe9\n".encode("latin-1"), "not UTF-8", 2),
    ("top-level-list", "- a\n- b\n", "must be a mapping", 1),
    ("panel-point-key", edit('"1/23": kitchen', '"L1-23": kitchen'), "must be 'loop/address'", 39),
    ("panel-point-zone", edit('"1/23": kitchen', '"1/23": kitchn'), "unknown zone 'kitchn'", 40),
    (
        "uplink-port-range",
        edit("  username: gw\n", "  username: gw\n  port: 70000\n"),
        "less than or equal to 65535",
        51,
    ),
    (
        "uplink-mqtt-version-3.1",  # YAML reads 3.1 as a number: not a version we speak
        edit("  username: gw\n", "  username: gw\n  mqtt_version: 3.1\n"),
        "Input should be '5' or '3.1.1'",
        51,
    ),
    (
        "uplink-mqtt-version-4",
        edit("  username: gw\n", "  username: gw\n  mqtt_version: '4'\n"),
        "Input should be '5' or '3.1.1'",
        51,
    ),
    (
        "uplink-mqtt-version-typo",
        edit("  username: gw\n", "  username: gw\n  mqtt_versoin: 5\n"),
        "did you mean 'mqtt_version'?",
        51,
    ),
    (
        "tls-ca-missing",
        edit("  username: gw\n", "  username: gw\n  tls:\n    ca_file: /nonexistent/ca.crt\n"),
        "file '/nonexistent/ca.crt' not found",
        52,
    ),
    (
        "tls-cert-without-key",
        edit(
            "  username: gw\n",
            "  username: gw\n  tls:\n    ca_file: /etc/hostname\n    cert_file: /etc/hostname\n",
        ),
        "cert_file and key_file go together",
        51,
    ),
    (
        "password-and-file",
        edit("  username: gw\n", "  username: gw\n  password_file: /etc/hostname\n"),
        "give password or password_file, not both",
        48,
    ),
    ("version-2", edit("version: 1", "version: 2"), "Input should be 1", 1),
    (
        "panel-profile-on-device",
        edit("profile: acrel-aim-r100", "profile: generic-panel"),
        "is a serial panel profile",
        22,
    ),
    (
        "modbus-profile-on-panel",
        edit("profile: generic-panel", "profile: acrel-aim-r100"),
        "needs a serial_panel profile",
        37,
    ),
    (
        "bad-log-level",
        edit("level: info", "level: verbose"),
        "'debug', 'info', 'warning' or 'error'",
        55,
    ),
    (
        "policy-persistence-over-ceiling",
        edit(
            "  - id: kitchen\n",
            "  - id: kitchen\n    policy:\n      persistence_s: 120\n      ceiling_s: 90\n",
        ),
        "must not exceed ceiling_s",
        7,
    ),
    (
        "vision-model-not-onnx",
        edit("logging:", "vision: {model: models/firenet.json}\nlogging:"),
        "a model file ends in .onnx",
        54,
    ),
    (
        "vision-model-typo",
        edit("logging:", "vision: {modle: light}\nlogging:"),
        "did you mean 'model'?",
        54,
    ),
    (
        "missing-profile-dir",
        edit("logging:", "profile_dirs: [no-such-dir]\nlogging:"),
        "folder",
        54,
    ),
]


@pytest.mark.parametrize(
    ("text", "expected", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_config_is_located(
    write, capsys, text: str | bytes, expected: str, line: int | None
) -> None:
    path = write(text)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    matching = [p for p in info.value.problems if expected in str(p)]
    assert matching, f"no problem says {expected!r}:\n{info.value}"
    if line is not None:
        assert matching[0].position is not None
        assert matching[0].position.line == line, str(matching[0])
    # the CLI says the same, with the file name, and exits 2 without a traceback
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert str(path) in err
    assert "Traceback" not in err


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_missing_file_and_folder(tmp_path: Path, capsys) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_every_problem_is_reported_not_only_the_first(write) -> None:
    text = edit("    baudrate: 9600", "    baud_rate: 9600").replace("device_id: 3", "device_id: x")
    with pytest.raises(ConfigError) as info:
        load_site(write(text))
    msgs = "\n".join(map(str, info.value.problems))
    assert "baud_rate" in msgs and "valid integer" in msgs


def test_cross_check_problems_all_reported(write) -> None:
    text = edit("        zone: kitchen\n", "        zone: kitchn\n").replace(
        "[640, 40]", "[700, 40]"
    )
    with pytest.raises(ConfigError) as info:
        load_site(write(text))
    assert len(info.value.problems) == 2


def test_secrets_are_never_echoed(write, capsys) -> None:
    path = write(edit("password: hunter2-secret", "password: [hunter2-secret]"))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "uplink.password" in err
    assert "hunter2" not in err


def test_broken_profile_is_located_in_its_own_file(write, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "my-detector.yaml").write_text(
        "kind: modbus\nvendor: x\nmodel: y\ndevice_kind: smoke\naddressing: zero_based\n"
        "points:\n  - name: alarm\n    table: discrete\n    address: 1\n    type: u16\n"
        "    condition: alarm\n"
    )
    text = edit("profile: acrel-aim-r100", "profile: my-detector").replace(
        "logging:", "profile_dirs: [profiles]\nlogging:"
    )
    with pytest.raises(ConfigError) as info:
        load_site(write(text))
    (p,) = info.value.problems
    assert p.file.name == "my-detector.yaml"
    assert "must have type bool" in p.message
    assert p.position is not None and p.position.line == 7
