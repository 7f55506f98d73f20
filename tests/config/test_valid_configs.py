from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.events import DeviceKind
from agent.siteconfig import available_profiles, load_profile, load_site
from agent.siteconfig.models import PanelBus, RtuBus
from config import BUILTIN_PROFILES, EXAMPLE_SITE
from tests.helpers.site_base import BASE


def test_base_config_loads_typed_and_frozen(write) -> None:
    site = load_site(write(BASE))
    c = site.config
    assert c.site.site_id == "school-1"
    bus = c.buses[0]
    assert isinstance(bus, RtuBus)
    assert bus.devices[0].poll_interval_s == 1.0
    assert isinstance(c.buses[2], PanelBus)
    assert site.modbus_profile("calectro-ug3-o-mb-r").device_kind is DeviceKind.SMOKE
    # relative paths resolve against the config file's folder
    assert c.storage.state_dir == (site.path.parent / "state").resolve()
    try:
        bus.devices[0].__setattr__("zone", "hall")
    except Exception as e:  # frozen
        assert "frozen" in str(e).lower()
    else:
        raise AssertionError("config objects must be immutable")
    assert str(c.uplink.password) == "**********"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("line", "expected"),
    [("", "auto"), ("echo: auto", "auto"), ("echo: on", "on"), ("echo: off", "off")],
)
def test_rtu_echo_option(write, capsys, line: str, expected: str) -> None:
    # YAML reads a bare on/off as true/false: it still means what was written
    text = BASE.replace("    stopbits: 1\n", f"    stopbits: 1\n    {line}\n", 1)
    bus = load_site(write(text)).config.buses[0]
    assert isinstance(bus, RtuBus)
    assert bus.echo == expected
    # the summary names a setting other than the default
    assert main(["check-config", str(write(text))]) == 0
    out = capsys.readouterr().out
    assert ("/dev/ttyUSB0 9600 8N1, echo" in out) == (expected != "auto"), out
    assert f"echo {expected}" in out or expected == "auto"


def test_uplink_mqtt_version_defaults_to_5_and_takes_5_unquoted(write, capsys) -> None:
    site = load_site(write(BASE))
    assert site.config.uplink is not None and site.config.uplink.mqtt_version == "5"
    for given, expected in (("5", "5"), ("'5'", "5"), ("5.0", "5"), ("3.1.1", "3.1.1")):
        path = write(BASE.replace("  username: gw\n", f"  username: gw\n  mqtt_version: {given}\n"))
        up = load_site(path).config.uplink
        assert up is not None and up.mqtt_version == expected, given
        assert main(["check-config", str(path)]) == 0
        assert f"MQTT {expected}" in capsys.readouterr().out


def test_example_site_is_valid(capsys) -> None:
    assert main(["check-config", str(EXAMPLE_SITE)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "kitchen-smoke-1" in out
    # credentials in a camera URL are not shown
    assert "change-me" not in out and "rtsp://viewer:***@" in out


def test_every_builtin_profile_loads() -> None:
    names = available_profiles()
    assert len(names) >= 3
    for name in names:
        load_profile(BUILTIN_PROFILES / f"{name}.yaml")


def test_site_files_under_config_sites_are_valid() -> None:
    for path in sorted((Path(EXAMPLE_SITE).parent / "sites").glob("*.yaml")):
        load_site(path)
