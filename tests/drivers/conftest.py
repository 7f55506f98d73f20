"""Shared helpers for the driver tests: a site config around simulated buses."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.events import Observation
from agent.siteconfig import LoadedSite, load_site

SITE_HEAD = """\
version: 1
site: {site_id: test-site, gateway_id: gw-1}
zones:
  - id: kitchen
  - id: hall
  - id: electrical-room
buses:
"""


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[[str], LoadedSite]:
    """A LoadedSite from the YAML of the `buses:` list (indented as list items)."""

    def make(buses_yaml: str) -> LoadedSite:
        p = tmp_path / "site.yaml"
        p.write_text(SITE_HEAD + textwrap.indent(textwrap.dedent(buses_yaml), "  "))
        return load_site(p)

    return make


@pytest.fixture
def collect() -> Callable[..., object]:
    return _collect


async def _collect(
    q: asyncio.Queue[Observation], until: Callable[[list[Observation]], bool], timeout_s: float
) -> list[Observation]:
    """Observations from ``q`` until ``until(seen)`` holds; fails after ``timeout_s``."""
    seen: list[Observation] = []
    async with asyncio.timeout(timeout_s):
        while not until(seen):
            seen.append(await q.get())
    return seen


def drain(q: asyncio.Queue[Observation]) -> list[Observation]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out
