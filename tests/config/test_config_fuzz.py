"""Property tests: no input, however wrong, gives anything but ConfigError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.siteconfig import ConfigError, LoadedSite, load_site
from tests.helpers.site_base import BASE

KEYS = [
    "version",
    "site",
    "site_id",
    "gateway_id",
    "zones",
    "id",
    "policy",
    "buses",
    "name",
    "type",
    "rtu",
    "tcp",
    "panel",
    "port",
    "baudrate",
    "parity",
    "devices",
    "profile",
    "device_id",
    "zone",
    "poll_interval_s",
    "cameras",
    "source",
    "masks",
    "resolution",
    "uplink",
    "host",
    "tls",
    "ca_file",
    "storage",
    "state_dir",
    "logging",
    "level",
    "points",
    "kind",
    "ceiling_s",
    "persistence_s",
    "profile_dirs",
    "password",
    "mqtt_version",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["rtu", "tcp", "panel", "kitchen", "calectro-ug3-o-mb-r", "N", "9600", "1/23"]),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=5
        ),
    ),
    max_leaves=30,
)


def _check(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "site.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            site = load_site(p)
        except ConfigError as e:
            assert e.problems
            for prob in e.problems:
                assert str(prob)  # every problem formats for a person
        else:
            assert isinstance(site, LoadedSite)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_random_yaml_documents(tree: object) -> None:
    _check(yaml.safe_dump(tree, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=BASE.count("\n")),
            st.sampled_from(["delete", "duplicate", "indent", "dedent", "garble"]),
            st.text(max_size=5),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_valid_config(edits: list[tuple[int, str, str]]) -> None:
    lines = BASE.splitlines()
    for i, op, junk in edits:
        i = min(i, len(lines) - 1)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][2:]
        else:
            lines[i] = lines[i][: len(lines[i]) // 2] + junk
        if not lines:
            break
    _check("\n".join(lines) + "\n")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _check(data)
