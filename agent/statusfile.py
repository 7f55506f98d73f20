"""The status file's format, shared by the agent (agent/health.py writes it) and
`firegate status` (reads it); light to import, so that status starts fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STATUS_FILE_NAME = "status.json"
STATUS_FORMAT = 1
SECTIONS = ("devices", "cameras", "zones")
# a device or camera in one of these states needs a look (status exits 1, STATUS= says so)
PROBLEM_STATES = frozenset({"offline", "stale", "frozen", "fault", "faulted", "failed"})
NAMES_SHOWN = 5  # in one line for systemctl status; the rest are counted


def item_problem(item: Mapping[str, Any]) -> str | None:
    """What is wrong with one device or camera of the status file, or None."""
    faults = item.get("faults")
    if isinstance(faults, list | tuple) and faults:
        return ", ".join(str(f) for f in faults)
    if item.get("offline") is True:
        return "offline"
    state = str(item.get("state", ""))
    return state if state in PROBLEM_STATES else None


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def problems(doc: Mapping[str, Any]) -> list[str]:
    """What needs a look in a status document (or the parts of one), in words:
    parts restarting, devices offline, cameras with a fault. Stalls are
    reported on their own (they stop the watchdog); an empty list is healthy."""
    out: list[str] = []
    parts = doc.get("parts")
    if isinstance(parts, Mapping):
        down = [
            str(n)
            for n, p in parts.items()
            if isinstance(p, Mapping) and (not p.get("running", True) or p.get("faulted"))
        ]
        if down:
            out.append(f"{len(down)} of {len(parts)} parts restarting: {_names(down)}")
    devices = doc.get("devices")
    if isinstance(devices, Mapping) and devices:
        bad = [str(n) for n, d in devices.items() if isinstance(d, Mapping) and item_problem(d)]
        if bad:
            out.append(f"{len(bad)} of {len(devices)} devices offline: {_names(bad)}")
    cameras = doc.get("cameras")
    if isinstance(cameras, Mapping) and cameras:
        bad = [
            f"{n} ({item_problem(c)})"
            for n, c in cameras.items()
            if isinstance(c, Mapping) and item_problem(c)
        ]
        if bad:
            out.append(f"{len(bad)} of {len(cameras)} cameras faulted: {_names(bad)}")
    return out


def read_status(path: Path) -> dict[str, Any]:
    """Read a status file written by Health. Raises OSError or ValueError."""
    with open(path, "rb") as f:
        doc = json.loads(f.read())
    if not isinstance(doc, dict) or doc.get("format") != STATUS_FORMAT:
        raise ValueError(f"not a firegate status file (format {STATUS_FORMAT})")
    return doc
