"""`firegate scan --port PORT`: which Modbus ids answer on a serial line, and what they are.

Exit 0 when at least one device answered, 1 when none did, 2 for bad
arguments or a port that cannot be opened (or refuses every setting tried; a
setting the adapter refuses is skipped, with what it said).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from agent.siteconfig import ConfigError, available_profiles, find_profile, load_profile
from agent.siteconfig.models import BAUDRATES
from drivers.frames import PortError, PortSettingsError
from drivers.profile import ModbusProfile
from drivers.scan import Found, scan_bound_s, scan_line


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "scan",
        help="find the Modbus device ids that answer on a serial line",
        description="Probe Modbus ids on a serial line (RTU) in bounded time and suggest "
        "a device profile for each id that answers. Stop the gateway first: "
        "only one program may use the port.",
    )
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument(
        "--baudrate",
        default="9600",
        help="baud rate, a comma list (9600,19200) or 'auto' for all standard rates (default 9600)",
    )
    p.add_argument(
        "--parity", default="N", help="N, E or O, a comma list, or 'auto' for all (default N)"
    )
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    p.add_argument(
        "--ids", default="1-247", help="ids to probe, e.g. 1-32 or 1,3,5-9 (default 1-247)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0.1,
        metavar="S",
        help="reply timeout per id (default 0.1 s)",
    )
    p.add_argument(
        "--all-settings",
        action="store_true",
        help="try every baud rate/parity even after one found devices",
    )
    p.add_argument(
        "--profile-dir", type=Path, action="append", default=[], help="extra folder of profiles"
    )
    p.set_defaults(func=run)


def parse_ids(text: str) -> list[int]:
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ValueError(f"--ids: {part!r} is not a number or range like 1-32") from None
        if not 1 <= a <= b <= 247:
            raise ValueError(f"--ids: {part!r} must lie within 1-247")
        ids.extend(range(a, b + 1))
    return sorted(set(ids))


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    if text.strip().lower() == "auto":
        return list(allowed)
    out = [t.strip().upper() for t in text.split(",") if t.strip()]
    for t in out:
        if t not in allowed:
            raise ValueError(f"--{what}: {t!r} is not one of {', '.join(allowed)}")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        ids = parse_ids(args.ids)
        bauds = [
            int(b) for b in _choices(args.baudrate, tuple(str(b) for b in BAUDRATES), "baudrate")
        ]
        parities = _choices(args.parity, ("N", "E", "O"), "parity")
        if not 0.01 <= args.timeout <= 5:
            raise ValueError("--timeout must be between 0.01 and 5 s")
    except ValueError as e:
        print(f"firegate scan: {e}", file=sys.stderr)
        return 2
    profiles: dict[str, ModbusProfile] = {}
    for name in available_profiles(args.profile_dir):
        path = find_profile(name, args.profile_dir)
        try:
            prof = load_profile(path) if path is not None else None
        except ConfigError as e:
            print(f"warning: profile {name} skipped: {e}", file=sys.stderr)
            continue
        if isinstance(prof, ModbusProfile):
            profiles[name] = prof
    settings = [(b, p) for b in bauds for p in parities]
    bound = sum(scan_bound_s(len(ids), 1, args.timeout, b) for b, _ in settings)
    print(
        f"scanning {args.port}: {len(ids)} id(s) x {len(settings)} setting(s), "
        f"timeout {args.timeout:g} s per id; probing takes at most {bound:.0f} s "
        "(plus a few reads per device found, to suggest a profile)"
    )
    t0 = time.monotonic()
    found: list[Found] = []
    refused: list[str] = []
    for baud, parity in settings:
        print(f"  {baud} 8{parity}{args.stopbits} ...", flush=True)
        try:
            got = asyncio.run(
                scan_line(
                    args.port,
                    baud,
                    parity,
                    args.stopbits,
                    ids,
                    timeout_s=args.timeout,
                    profiles=profiles,
                    on_found=_print_found,
                )
            )
        except PortSettingsError as e:
            # this adapter cannot do this setting: the others may still find the devices
            print(f"    skipped: {e}", flush=True)
            refused.append(str(e))
            continue
        except PortError as e:
            print(
                f"firegate scan: {e} (check the port name and that nothing else uses it)",
                file=sys.stderr,
            )
            return 2
        found.extend(got)
        if got and not args.all_settings:
            break
    dt = time.monotonic() - t0
    if len(refused) == len(settings):
        print(f"firegate scan: {refused[-1]}", file=sys.stderr)
        return 2
    if not found:
        print(
            f"no device answered ({dt:.1f} s). Check wiring (A/B swapped?), baud rate and parity."
        )
        return 1
    print(f"found {len(found)} device(s) in {dt:.1f} s")
    return 0


def _print_found(f: Found) -> None:
    line = f"    id {f.device_id:>3}: answers at {f.baudrate} 8{f.parity}{f.stopbits} ({f.probe})"
    print(line, flush=True)
    if not f.suggestions:
        print("           profile: none matches; write one from the manual (config/profiles/)")
    for name, why in f.suggestions:
        print(f"           profile: {name}  ({why})")
