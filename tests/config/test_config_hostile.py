"""Configs written to hurt: YAML features a config never needs, and values that were
accepted but harmful. Each is a located config error (exit 2), fast, never a crash."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.siteconfig import ConfigError, LoadedSite, load_site
from tests.helpers.site_base import BASE


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


LAUGHS = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 9)
)

# (case id, config text, expected text in the message, text on the expected line)
CASES: list[tuple[str, str, str, str]] = [
    ("recursive-anchor", BASE + "x: &a [*a]\n", "contains an alias of itself", "&a [*a]"),
    (
        "recursive-anchor-map",
        edit("zones:\n", "zones: &z\n  - {id: x, name: *z}\n"),
        "itself",
        "&z",
    ),
    ("tag-timestamp", edit("gateway_id: gw-1", "gateway_id: !!timestamp 5"), "'!!timestamp'", "!!"),
    ("tag-int-wrong", edit("device_id: 3", "device_id: !!int three"), "'!!int'", "!!int"),
    ("tag-int-right", edit("device_id: 3", "device_id: !!int 3"), "not allowed", "!!int"),
    ("tag-custom", edit("zones:", "zones: !mine"), "'!mine'", "!mine"),
    ("tag-python", edit("level: info", "level: !!python/name:os.system x"), "not allowed", "!!"),
    ("billion-laughs", LAUGHS + BASE, "billion laughs", "lol0"),
    ("deep-nesting", BASE + "x: " + "[" * 500 + "]" * 500 + "\n", "levels deep", "[[["),
    ("long-number", edit("device_id: 3", "device_id: " + "9" * 5000), "characters", "999"),
    ("tick-tiny", BASE + "engine: {tick_s: 1e-300}\n", "greater than or equal to 0.05", "1e-300"),
    (
        "topic-root-format-spec",
        edit(
            "  password: hunter2-secret\n", '  password: x\n  topic_root: "{site_id:>999999999}"\n'
        ),
        "only {site_id} and {gateway_id}",
        "topic_root",
    ),
    (
        "topic-root-conversion",
        edit("  password: hunter2-secret\n", '  password: x\n  topic_root: "a/{gateway_id!r}"\n'),
        "only {site_id} and {gateway_id}",
        "topic_root",
    ),
    (
        "topic-root-long",
        edit("  password: hunter2-secret\n", f"  topic_root: {'a' * 300}\n"),
        "200",
        "aaa",
    ),
    (
        "state-dir-proc",
        edit("state_dir: state", "state_dir: /proc/self"),
        "not a folder on",
        "/proc",
    ),
    ("state-dir-dev-null", edit("state_dir: state", "state_dir: /dev/null"), "/dev", "/dev/null"),
    (
        "state-dir-a-file",
        edit("state_dir: state", "state_dir: site.yaml"),
        "not a folder",
        "state_dir",
    ),
    (
        "label-huge",
        edit("poll_interval_s: 1\n", f"poll_interval_s: 1\n        label: {'x' * 300}\n"),
        "200",
        "label",
    ),
]


@pytest.mark.parametrize(
    ("text", "expect", "on_line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_config_is_a_located_problem(
    tmp_path: Path, text: str, expect: str, on_line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert time.monotonic() - started < 1.0  # a billion laughs took 21-30 s
    messages = [str(p) for p in err.value.problems]
    hit = [p for p in err.value.problems if expect in p.message]
    assert hit, messages
    line = next(n for n, t in enumerate(text.splitlines(), 1) if on_line in t)
    assert hit[0].position is not None and hit[0].position.line == line, messages
    assert main(["check-config", str(path)]) == 2  # documented: 0 or 2, never 1
    out = capsys.readouterr()
    assert "internal error" not in out.err and "Traceback" not in out.err


def test_a_date_that_is_no_date_is_text(tmp_path: Path) -> None:
    """YAML 1.1 reads 2026-13-45 as a timestamp and crashed building it."""
    path = tmp_path / "site.yaml"
    path.write_text(edit("gateway_id: gw-1", "gateway_id: 2026-13-45"))
    assert load_site(path).config.site.gateway_id == "2026-13-45"


# ------------------------------------------------------------------- property

_TAGS = ["!!int", "!!str", "!!float", "!!timestamp", "!!binary", "!!set", "!!omap", "!x", "!"]
_SCALARS = [
    "5",
    "three",
    "2026-13-45",
    "2026-12-05",
    "1e-300",
    "1e400",
    ".nan",
    "-.inf",
    "0x1F",
    "0o17",
    "190:20:30",
    "9" * 4400,
    "~",
    "on",
    '"{site_id:>999999999}"',
    "/proc/self",
    "/dev/null",
    "''",
    "[]",
    "{}",
    "*a",
    "*nope",
    "[*a, *a]",
    "&a [*a]",
    "&a x",
]


@st.composite
def hostile_edits(draw: st.DrawFn) -> str:
    """The valid base config with a few values replaced by YAML's sharper features."""
    lines = BASE.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        key, sep, _value = lines[i].partition(": ")
        if not sep:
            key, sep = lines[i].rstrip(":"), ":"
        value = draw(st.sampled_from(_SCALARS))
        if draw(st.booleans()):
            value = f"{draw(st.sampled_from(_TAGS))} {value}"
        if draw(st.booleans()):
            value = f"&a {value}" if not value.startswith("&") else value
        lines[i] = f"{key}: {value}"
    if draw(st.booleans()):
        lines.insert(0, draw(st.sampled_from([LAUGHS.rstrip(), "x: &a [*a]", "y: &a {k: 1}"])))
    if draw(st.booleans()):
        lines.append(
            draw(
                st.sampled_from(
                    [
                        f"engine: {{tick_s: {draw(st.sampled_from(_SCALARS[:10]))}}}",
                        "extra: &b [*b]",
                        "storage2: " + "[" * draw(st.integers(1, 3000)),
                        "<<: *a",
                        "? [a, b]\n: 1",
                    ]
                )
            )
        )
    return "\n".join(lines) + "\n"


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(hostile_edits())
def test_every_input_is_a_config_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "site.yaml"
        p.write_text(text)
        started = time.monotonic()
        try:
            site = load_site(p)
        except ConfigError as e:
            assert e.problems
            assert all(str(prob) for prob in e.problems)
        else:
            assert isinstance(site, LoadedSite)
        assert time.monotonic() - started < 2.0
