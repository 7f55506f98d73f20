"""`firegate run --config PATH`: run the agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from agent import __version__, lock, logs
from agent.clock import Clock, ScaledClock, SystemClock
from agent.siteconfig import ConfigError, LoadedSite, load_site

log = logging.getLogger("agent.run")

CAPTURE_JOIN_S = 5.0  # after the parts' own 5 s, well inside the unit's TimeoutStopSec=20s
# Exit codes (systemd/firegate.service: RestartPreventExitStatus=2 4, since a
# restart cannot fix either): 0 clean stop, 1 a part failed to stop cleanly,
# 2 invalid site config or arguments, 4 another agent runs on this state dir.
EXIT_ALREADY_RUNNING = 4


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
    from agent import memory

    memory.tune()  # before any thread of the agent starts (arenas are made then)
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
    state_dir = site.config.storage.state_dir
    try:
        held = lock.acquire(state_dir)
    except lock.AlreadyRunning as e:
        who = f"pid {e.pid}" if e.pid else "another process"
        print(
            f"firegate run: another agent already runs on {state_dir} ({who}, lock {e.path}); "
            "not starting a second one (it would fight the first over ports, outbox and "
            "broker).\n"
            "  to watch it: firegate status; journalctl -u firegate -f\n"
            "  to run this one instead: systemctl stop firegate"
            + (f" (or kill {e.pid})" if e.pid else ""),
            file=sys.stderr,
        )
        return EXIT_ALREADY_RUNNING
    except OSError as e:
        print(
            f"firegate run: cannot use the state folder {state_dir}: {e.strerror or e}\n"
            f"  fix storage.state_dir in {args.config}, or create the folder writable "
            "for the service user (systemd/install.sh does)",
            file=sys.stderr,
        )
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
    try:
        code = asyncio.run(_main(site, clock, args.exit_after))
        return _join_captures(code)
    finally:
        held.release()


def _join_captures(code: int) -> int:
    """Wait for the camera capture threads to leave OpenCV before the interpreter
    exits (one still inside a read when Python finalizes aborts the process:
    SIGABRT, a core dump, a failed unit). One stuck past the bound is left
    behind by ending the process without finalizing, the last resort: the
    outbox is closed and the logs flushed by then, and nothing else is pending
    (the state dir's lock goes with the process)."""
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
    from agent.health import Health

    agent = build_agent(site, clock)
    clean = False
    try:
        clean = await agent.supervisor().run(stop)
    finally:
        await agent.close()
        for part in agent.parts:
            if isinstance(part, Health):  # every part has ended: status says "stopped"
                part.stopped(clean)
    return 0 if clean else 1


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("received %s", sig.name)
    stop.set()
