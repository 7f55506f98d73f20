"""`firegate status`: what the running agent is doing, for a maintainer over SSH.

Reads the status file the health part rewrites every few seconds
(``<state_dir>/status.json``). The state directory comes from ``--state-dir``,
else from the site config (``--config``, default /etc/firegate/site.yaml when
it exists), else /var/lib/firegate.

Exit codes (for scripts; docs/operations.md): 0 running and healthy (every
part running, every device online, every camera without a fault); 1 running
with a problem (a part stalled or restarting, a device offline, a camera
stale, frozen or offline, or the agent is stopping); 2 bad input (config,
unreadable file); 3 not running (stopped, no status file, or one too old to
describe a running agent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.statusfile import SECTIONS, STATUS_FILE_NAME, problems, read_status

DEFAULT_CONFIG = Path("/etc/firegate/site.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/firegate")
EXIT_OK, EXIT_UNHEALTHY, EXIT_BAD_INPUT, EXIT_NOT_RUNNING = 0, 1, 2, 3
MIN_STALE_S = 15.0  # below this, a late write is scheduling noise, not a dead agent


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="show the running agent's state (parts, devices, cameras, zones, outbox)",
        description="Show the running agent's state from its status file. Exit 0 running "
        "and healthy, 1 running with a problem (a part stalled or restarting, a device "
        "offline, a camera with a fault, stopping), 2 bad input, 3 not running.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help=f"site config (default: {DEFAULT_CONFIG})")
    where.add_argument(
        "--state-dir", type=Path, help=f"state folder (default: {DEFAULT_STATE_DIR})"
    )
    p.add_argument("--json", action="store_true", help="print the status file as JSON")
    p.add_argument(
        "--max-age-s",
        type=float,
        default=None,
        help="treat a status file older than this as 'not running' "
        "(default: three status intervals, at least 15 s)",
    )
    p.set_defaults(func=run)


def _state_dir(args: argparse.Namespace) -> Path | None:
    if args.state_dir is not None:
        return Path(args.state_dir)
    config = args.config
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    if config is None:
        return DEFAULT_STATE_DIR
    from agent.siteconfig import ConfigError, load_site  # the config models: only when needed

    try:
        return load_site(config).config.storage.state_dir
    except ConfigError as e:
        if args.config is None:  # the default config (e.g. unreadable without sudo)
            print(f"note: cannot use {config}; looking in {DEFAULT_STATE_DIR}", file=sys.stderr)
            return DEFAULT_STATE_DIR
        print(f"{config}: config not valid; give --state-dir instead", file=sys.stderr)
        for prob in e.problems:
            print(f"  {prob}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    if state_dir is None:
        return EXIT_BAD_INPUT
    path = state_dir / STATUS_FILE_NAME
    try:
        doc = read_status(path)
    except FileNotFoundError:
        print(
            f"firegate is not running (no status file {path}).\n"
            "  check: systemctl status firegate; journalctl -u firegate -n 50",
            file=sys.stderr,
        )
        return EXIT_NOT_RUNNING
    except PermissionError:
        print(
            f"cannot read {path}: permission denied. Run with sudo, or join the firegate group.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except (OSError, ValueError) as e:
        print(f"cannot read {path}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    age_s = time.time() - float(doc.get("written_wall", 0.0))
    interval_s = float(doc.get("interval_s", 5.0))
    max_age_s = args.max_age_s if args.max_age_s is not None else max(3 * interval_s, MIN_STALE_S)
    stale = age_s > max_age_s
    if args.json:
        print(json.dumps({**doc, "age_s": round(age_s, 1), "stale": stale}, indent=2))
    else:
        print(render(doc, age_s=age_s, stale=stale))
    if stale or doc.get("stopped"):
        return EXIT_NOT_RUNNING
    unhealthy = not doc.get("healthy", False) or bool(doc.get("stopping")) or bool(problems(doc))
    return EXIT_UNHEALTHY if unhealthy else EXIT_OK


def _parts(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    parts = doc.get("parts")
    return (
        {str(k): v for k, v in parts.items() if isinstance(v, dict)}
        if isinstance(parts, dict)
        else {}
    )


def _duration(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s // 3600:.0f} h {(s % 3600) / 60:.0f} min"
    return f"{s / 86400:.1f} days"


def _fields(d: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    out = []
    for k, v in d.items():
        if k in skip or v in (None, "", [], {}):
            continue
        if isinstance(v, float):
            v = f"{v:g}"
        elif isinstance(v, dict | list):
            v = json.dumps(v, separators=(",", ":"))
        out.append(f"{k}={v}")
    return " ".join(out)


def render(doc: Mapping[str, Any], *, age_s: float, stale: bool) -> str:
    """The status document as text for a terminal."""
    out: list[str] = []
    who = f"site {doc.get('site_id', '?')}, gateway {doc.get('gateway_id', '?')}"
    out.append(f"firegate {doc.get('version', '?')}: {who}, pid {doc.get('pid', '?')}")
    if doc.get("stopped"):
        out.append(
            f"STOPPED: the agent stopped {doc['stopped']} {_duration(age_s)} ago "
            f"({doc.get('written_at', '?')}). Last known state below.\n"
            "  check: systemctl status firegate; journalctl -u firegate -n 50"
        )
    elif stale:
        what = "stopped" if doc.get("stopping") else "not running or stuck"
        out.append(
            f"STALE: the status file is {_duration(age_s)} old; the agent is {what}. "
            "Last known state below.\n  check: systemctl status firegate; journalctl -u firegate -n 50"
        )
    elif age_s < -60:
        out.append(
            f"note: the status file is dated {_duration(-age_s)} in the future (clock changed?)"
        )
    out.append(
        f"written {_duration(age_s)} ago (every {float(doc.get('interval_s', 0)):g} s), "
        f"up {_duration(float(doc.get('uptime_s', 0)))}, started {doc.get('started_at', '?')}"
    )
    wd = doc.get("watchdog") or {}
    found = problems(doc)
    if doc.get("stopped"):
        health = f"STOPPED ({doc['stopped']})"
    elif doc.get("stopping"):
        health = "STOPPING"
    elif not doc.get("healthy"):
        health = "STALLED: " + ", ".join(doc.get("stalled") or [])
    elif found:
        health = "DEGRADED: " + "; ".join(found)
    else:
        health = "OK"
    if not wd.get("systemd"):
        fed = "not under systemd"
    elif wd.get("interval_s"):
        fed = f"under systemd, watchdog {wd['interval_s']:g} s"
    else:
        fed = "under systemd, no watchdog"
    out.append(f"health: {health} ({fed}; stall after {wd.get('stall_after_s', '?')} s)")
    out.append(f"summary: {doc.get('summary', '')}")

    parts = _parts(doc)
    out.append(f"\nparts ({len(parts)}):")
    for name, p in parts.items():
        if doc.get("stopped"):
            state = "stopped"
        elif p.get("stalled"):
            state = "STALLED"
        elif not p.get("running", True):
            state = "RESTARTING"
        elif p.get("faulted"):
            state = "running (recovering)"
        else:
            state = "running"
        age = p.get("progress_age_s")
        prog = "no progress reports" if age is None else f"progress {_duration(float(age))} ago"
        restarts = p.get("restarts", 0)
        line = f"  {name:<20} {state:<12} {prog}"
        if restarts:
            line += f", {restarts} restart(s)"
        out.append(line)
        if p.get("last_error"):
            out.append(f"    last error: {p['last_error']}")
        detail = _fields(p.get("status") or {})
        if detail:
            out.append(f"    {detail}")

    for section in SECTIONS:
        items = doc.get(section) or {}
        if not isinstance(items, dict) or not items:
            continue
        out.append(f"\n{section} ({len(items)}):")
        for name, item in items.items():
            item = item if isinstance(item, dict) else {"state": item}
            state = str(item.get("state", "?"))
            out.append(f"  {name:<22} {state:<10} {_fields(item, skip=('state', 'part'))}".rstrip())

    outbox = doc.get("outbox")
    if isinstance(outbox, dict):
        out.append(f"\noutbox: {_fields(outbox, skip=('part',))}")
    else:
        out.append("\noutbox: not reported (no outbox part in this agent)")
    return "\n".join(out)
