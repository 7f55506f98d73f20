"""check-config reports structural and cross-reference problems in one pass (issue 13),
and refuses a vision.model file that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.siteconfig import ConfigError, load_site
from tests.helpers.site_base import BASE


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    return [str(p) for p in err.value.problems]


def test_the_readme_example_reports_both_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = edit(BASE, "    baudrate: 9600", "    baud_rate: 9600")
    text = edit(
        text, "zone: kitchen\n        poll_interval_s", "zone: kitchn\n        poll_interval_s"
    )
    path = tmp_path / "site.yaml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 problems found" in err, err
    assert "site.yaml:12:5: buses[0].baud_rate: unknown key 'baud_rate'" in err
    assert (
        "site.yaml:19:9: buses[0].devices[0].zone: unknown zone 'kitchn'; "
        "did you mean 'kitchen'? (zones: kitchen, hall)"
    ) in err


def test_structure_does_not_hide_duplicates_or_unknown_profiles(tmp_path: Path) -> None:
    text = edit(BASE, "  level: info", "  level: loud")  # structural
    text = edit(text, "device_id: 1\n        zone: hall", "device_id: 3\n        zone: hall")
    text = edit(text, "  - name: tcp-1", "  - name: rs485-1")
    text = edit(text, "profile: acrel-aim-r100", "profile: acrel-aim-r10")
    text = edit(text, "  - name: cam-hall\n    zone: hall", "  - name: cam-hall\n    zone: attic")
    got = "\n".join(problems(tmp_path, text))
    assert "logging.level" in got
    assert "device id 3 is already used on this bus by 'kitchen-smoke'" in got
    assert "bus name 'rs485-1' is already used at buses[0].name" in got
    assert "unknown profile 'acrel-aim-r10'; did you mean 'acrel-aim-r100'?" in got
    assert "cameras[0].zone: unknown zone 'attic'" in got


def test_a_field_already_wrong_is_not_reported_twice(tmp_path: Path) -> None:
    text = edit(BASE, "  level: info", "  level: loud")
    text = edit(text, "zone: kitchen\n        poll", "zone: 'not a name!'\n        poll")
    got = problems(tmp_path, text)
    assert len([p for p in got if "devices[0].zone" in p]) == 1, got


def test_vision_model_that_does_not_exist_is_refused_with_the_fix(tmp_path: Path) -> None:
    got = problems(tmp_path, BASE + "vision: {model: models/mine.onnx}\n")
    (hit,) = [p for p in got if "vision.model" in p]
    assert "not found" in hit and "mine.onnx" in hit and "use standard" in hit
    assert f":{BASE.count(chr(10)) + 1}:" in hit  # located on its line
