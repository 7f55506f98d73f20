"""`firegate run --config PATH`: run the agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from agent import __version__, logs
from agent.clock import Clock, ScaledClock, SystemClock
from agent.siteconfig import ConfigError, LoadedSite, load_site

log = logging.getLogger("agent.run")

CAPTURE_JOIN_S = 5.0  # after the parts' own 5 s, well inside the unit's TimeoutStopSec=20s


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the agent (under systemd: see systemd/firegate.service)")
    p.add_argument("--config", type=Path, required=True, help="site config file (YAML)")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="run time faster than real time (demo and tests only; default 1)",
    )
    p.add_argument(
        "--exit-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop by itself after this many real seconds (smoke tests)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        site = load_site(args.config)
    except ConfigError as e:
        print(f"{args.config}: config not valid, not starting", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    logs.setup(site.config.logging.level, site.config.logging.modules)
    from agent import statedir  # (local: keeps this edit in one place)

    statedir.secure(site.config.storage.state_dir)  # 0700/0600 whatever the umask
    if args.speed <= 0:
        print("--speed must be positive", file=sys.stderr)
        return 2
    clock: Clock = SystemClock() if args.speed == 1.0 else ScaledClock(args.speed)
    log.info(
        "firegate %s starting: site %s gateway %s, config %s%s",
        __version__,
        site.config.site.site_id,
        site.config.site.gateway_id,
        site.path,
        f", time x{args.speed:g}" if args.speed != 1.0 else "",
    )
    code = asyncio.run(_main(site, clock, args.exit_after))
    return _join_captures(code)


def _join_captures(code: int) -> int:
    """Wait for the camera capture threads to leave OpenCV before the interpreter
    exits (one still inside a read when Python finalizes aborts the process:
    SIGABRT, a core dump, a failed unit). One stuck past the bound is left
    behind by ending the process without finalizing, the last resort: the
    outbox is closed and the logs flushed by then, and nothing else is pending."""
    capture = sys.modules.get("vision.capture")  # imported only when cameras exist
    if capture is None:
        return code
    stuck = capture.join_all(CAPTURE_JOIN_S)
    if not stuck:
        return code
    log.warning(
        "%s still inside a camera read after %.0f s; exiting without waiting for it",
        ", ".join(stuck),
        CAPTURE_JOIN_S,
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _main(site: LoadedSite, clock: Clock, exit_after: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    if exit_after is not None:
        loop.call_later(exit_after, stop.set)
    from agent.app import build_agent  # heavy (OpenCV, onnxruntime): only when running

    agent = build_agent(site, clock)
    try:
        clean = await agent.supervisor().run(stop)
    finally:
        await agent.close()
    return 0 if clean else 1


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("received %s", sig.name)
    stop.set()
