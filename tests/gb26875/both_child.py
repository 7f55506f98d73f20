"""A gateway stand-in for the hand-off crash test: the real agent, both uplinks.

``crash FIRST``: build the agent, let only the FIRST outbox (``mqtt`` or
``gb``) commit one fire alarm, then ``os._exit`` as a kill -9 would end it,
before the other outbox's commit. ``run``: run the agent (both uplinks and
the hand-off part) until killed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from agent.app import build_agent
from agent.clock import SystemClock
from agent.events import DecisionType
from agent.gb26875.sink import BothOutboxes
from agent.siteconfig import load_site
from tests.gb26875.support import decision

SITE = """\
site: {{site_id: s, gateway_id: g}}
zones: [{{id: kitchen, name: kitchen}}]
buses: []
gb26875: {{host: 127.0.0.1, port: {centre}, source_address: 889, destination_address: 88888,
          reconnect_min_s: 0.05}}
uplink: {{host: 127.0.0.1, port: {broker}, reconnect_min_s: 0.1}}
storage: {{state_dir: {state}}}
"""
FIRE_N = 7  # the fire alarm is decision 7 of tests.gb26875.support: time label T0 + 7


async def main(folder: Path, centre: int, broker: int, mode: str, first: str = "") -> None:
    p = folder / "site.yaml"
    p.write_text(SITE.format(centre=centre, broker=broker, state=folder / "state"))
    agent = build_agent(load_site(p), SystemClock())
    if mode == "crash":
        (both,) = [x for x in agent.parts if isinstance(x, BothOutboxes)]
        done, other = (both.mqtt, both.gb) if first == "mqtt" else (both.gb, both.mqtt)
        real = done.submit

        async def commit_then_die(d: Any) -> None:
            await real(d)
            os._exit(9)  # no cleanup, no goodbye: as SIGKILL between the commits

        async def never(d: Any) -> None:
            await asyncio.Event().wait()

        done.submit = commit_then_die  # type: ignore[method-assign]
        other.submit = never  # type: ignore[method-assign]
        await agent.sink.submit(decision(DecisionType.FIRE_ALARM, FIRE_N, devices=()))
        raise SystemExit("the crash hook did not run")
    print("running", flush=True)
    await agent.supervisor().run(asyncio.Event())
