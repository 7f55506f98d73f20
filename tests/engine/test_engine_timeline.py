"""The timeline interpreter: point values over time, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_mocks.timeline import (
    SCENARIO_DIR,
    Scenario,
    ScenarioError,
    Timeline,
    load_scenario,
    scenario_site,
)


def _scenario(**kw: object) -> Scenario:
    data: dict[str, object] = {
        "name": "t",
        "description": "d",
        "truth": "normal",
        "zone": "kitchen",
        "duration_s": 100,
        "expect": [{"type": "fire_alarm", "count": 0}],
        "path": SCENARIO_DIR / "x.yaml",
    }
    data.update(kw)
    return Scenario.model_validate(data)


def test_steps_ramps_and_defaults() -> None:
    sc = _scenario(
        initial={"kitchen-heat": {"temperature": 20}},
        events=[
            {
                "at": 10,
                "device": "kitchen-heat",
                "ramp": {"point": "temperature", "to": 60, "over_s": 40},
            },
            {"at": 30, "device": "kitchen-smoke", "set": {"smoke_alarm": True}},
            {"at": 70, "device": "kitchen-heat", "set": {"temperature": 25}},
            {"at": 40, "device": "kitchen-smoke", "offline": True},
            {"at": 60, "device": "kitchen-smoke", "offline": False},
        ],
    )
    tl = Timeline(sc, scenario_site(sc))
    assert tl.value("kitchen-heat", "temperature", 0) == 20
    assert tl.value("kitchen-heat", "temperature", 30) == pytest.approx(40)
    assert tl.value("kitchen-heat", "temperature", 55) == pytest.approx(60)
    assert tl.value("kitchen-heat", "temperature", 70) == 25
    assert tl.value("kitchen-smoke", "smoke_alarm", 29.9) is False
    assert tl.value("kitchen-smoke", "smoke_alarm", 30) is True
    # a point whose condition is active when 0 rests at 1 ("mounted")
    assert tl.value("kitchen-smoke", "mounted", 0) is True
    assert tl.online("kitchen-smoke", 39) and not tl.online("kitchen-smoke", 45)
    assert tl.online("kitchen-smoke", 61)
    values = tl.values_at(30)
    assert values["kitchen-smoke"]["smoke_alarm"] is True
    assert 10 in tl.change_times() and 50 in tl.change_times()


def test_unknown_point_is_named() -> None:
    sc = _scenario(events=[{"at": 1, "device": "kitchen-smoke", "set": {"smoke": True}}])
    with pytest.raises(ScenarioError, match=r"kitchen-smoke.*no point 'smoke'.*smoke_alarm"):
        Timeline(sc, scenario_site(sc))


def test_unknown_device_and_camera() -> None:
    sc = _scenario(events=[{"at": 1, "device": "nope", "offline": True}])
    with pytest.raises(ScenarioError, match="unknown device 'nope'"):
        Timeline(sc, scenario_site(sc))
    sc = _scenario(events=[{"at": 1, "camera": "cam-x", "video": "end"}])
    with pytest.raises(ScenarioError, match="unknown camera 'cam-x'"):
        Timeline(sc, scenario_site(sc))


def test_bad_file_names_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        "name: x\ndescription: y\ntruth: fire\nzone: k\nduration_s: 10\nexpect: []\nwhen: 3\n"
    )
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert "bad.yaml" in str(e.value) and "when" in str(e.value) and "expect" in str(e.value)
    p.write_text("- not a mapping\n")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(p)


def test_event_needs_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        _scenario(events=[{"at": 1, "device": "a", "camera": "b", "offline": True}])


class _Mock:
    def __init__(self) -> None:
        self.points: dict[str, object] = {}

    def set_point(self, point_name: str, value: object) -> None:
        self.points[point_name] = value


def test_apply_sets_mock_points() -> None:
    sc = load_scenario(SCENARIO_DIR / "electrical-cabinet-fire.yaml")
    tl = Timeline(sc, scenario_site(sc))
    mock = _Mock()
    n = tl.apply(80, {"cabinet-ef": mock})
    assert n == len(mock.points) == 9
    assert mock.points["t1"] == pytest.approx(35 + 60 * 60 / 120)
    assert mock.points["leakage_setpoint"] == 300
    with pytest.raises(ScenarioError, match="no device 'x'"):
        tl.apply(0, {"x": mock})


def test_ramp_of_a_state_is_refused() -> None:
    sc = _scenario(
        events=[
            {
                "at": 1,
                "device": "kitchen-smoke",
                "ramp": {"point": "smoke_alarm", "to": 1, "over_s": 5},
            }
        ]
    )
    with pytest.raises(ScenarioError, match="use `set`, not `ramp`"):
        Timeline(sc, scenario_site(sc))


def test_flame_growth_follows_the_fire_not_a_line() -> None:
    """`growth: flame`: the region grows as (t - ignition)^1.8 from its first
    sighting, up to `grow_to`; a flame spec without its ignition is refused."""
    from firmware_mocks.timeline import FLAME_AREA_EXPONENT, Event, _expand_camera

    ev = Event.model_validate(
        {
            "at": 10.0,
            "camera": "cam-kitchen",
            "video": {
                "cls": "fire",
                "area": 1000,
                "every_s": 5.0,
                "until": 40.0,
                "grow_to": 20_000,
                "growth": "flame",
                "ignition": 5.0,
            },
        }
    )
    areas = [kw["area"] for _t, (_cam, kw) in _expand_camera(ev)]
    # seen 5 s after ignition: twice as old at 15 s -> 2^1.8 x; capped at 20,000
    assert areas[0] == 1000
    assert areas[1] == round(1000 * 2**FLAME_AREA_EXPONENT)
    assert areas[-1] == 20_000 and areas == sorted(areas)
    with pytest.raises(ValueError, match="ignition"):
        Event.model_validate(
            {"at": 1.0, "camera": "c", "video": {"cls": "fire", "growth": "flame"}}
        )
