"""`firegate demo`: a simulated school's gateway through one scripted morning.

Starts firmware mocks (two RS-485 buses on pseudo-terminals, a Modbus TCP
device, a fire panel's printer line, two cameras), the real agent on a
generated site config with an accelerated clock, and a local mosquitto when
one is installed; plays firmware_mocks/demo/school-day.yaml and prints a live
timeline and a summary. Exit 0 when the fire was forwarded and every nuisance
held back; 1 when not; 2 when the demo cannot start here; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a simulated school through a scripted morning (nothing to install or wire)",
        description="Run the real agent against simulated devices and cameras through a "
        "scripted school morning in accelerated time, with a live timeline and a summary.",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per real second, at most 25 (default 15: the 15-minute "
        "morning takes about a minute)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep the run's config, outbox, nuisance log and agent log here "
        "(default: a temporary folder, removed at the end)",
    )
    broker = p.add_mutually_exclusive_group()
    broker.add_argument(
        "--broker",
        dest="broker",
        action="store_true",
        default=None,
        help="require a local mosquitto (default: use it when installed)",
    )
    broker.add_argument(
        "--no-broker",
        dest="broker",
        action="store_false",
        help="no MQTT: read the decisions from the agent's outbox",
    )
    p.add_argument(
        "--uplink",
        choices=("mqtt", "gb26875"),
        default="mqtt",
        help="gb26875: also run a mock GB/T 26875.3 monitoring centre and send to it "
        "beside MQTT (needs mosquitto); its confirmed frames show as CENTRE lines",
    )
    p.add_argument(
        "--until",
        type=float,
        default=None,
        metavar="SECONDS",
        help="end the day after this many simulated seconds (for a quick look)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.siteconfig import ConfigError
    from firmware_mocks.demo.play import DEFAULT_SPEED, DemoError, DemoOptions, run_demo
    from firmware_mocks.timeline import ScenarioError

    opts = DemoOptions(
        speed=args.speed if args.speed is not None else DEFAULT_SPEED,
        state_dir=args.state_dir,
        broker=args.broker,
        until_s=args.until,
        uplink=args.uplink,
    )
    stopped = "firegate demo: stopped (Ctrl-C); everything it started has been stopped."
    try:
        result = asyncio.run(run_demo(opts))
    except (DemoError, ConfigError, ScenarioError, OSError) as e:
        print(f"firegate demo: cannot run: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while starting up: run_demo has cleaned up
        print(stopped)
        return 130
    if result.interrupted:
        print(stopped)
        return 130
    return 0 if result.ok else 1
