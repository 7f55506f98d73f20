"""What the installed systemd unit lets the agent do, for `firegate doctor`.

Doctor runs outside the service's sandbox, so a serial port or a state folder
that works from a shell can still be refused under the unit:
``DevicePolicy=closed`` with ``DeviceAllow=`` admits only the listed device
kinds (by the major number the kernel gave the driver, as named in
/proc/devices), and ``ProtectSystem=strict`` makes every folder read-only but
the ``StateDirectory=`` and ``ReadWritePaths=``. This module reads the unit
and its drop-ins as systemd would (later assignments add to a list, an empty
one clears it) and answers for the configured ports and state folder.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_UNIT = Path("/etc/systemd/system/firegate.service")
LIST_KEYS = (
    "DeviceAllow",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "StateDirectory",
)


@dataclass
class UnitView:
    """The [Service] settings that decide what the agent may touch."""

    files: list[Path] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in LIST_KEYS})

    @property
    def device_policy(self) -> str:
        return self.values.get("DevicePolicy", "auto")

    @property
    def protect_system(self) -> str:
        return self.values.get("ProtectSystem", "no")

    def writable_roots(self) -> list[Path]:
        """Folders the unit makes writable under ProtectSystem=strict."""
        out = [Path("/var/lib") / d for d in self.lists["StateDirectory"]]
        for p in self.lists["ReadWritePaths"]:
            out.append(Path(p.lstrip("-+")))
        return out


def read_unit(unit: Path) -> UnitView:
    """The unit and its drop-ins (``<unit>.d/*.conf``, by name). Raises OSError."""
    view = UnitView()
    dropins = sorted(Path(f"{unit}.d").glob("*.conf")) if Path(f"{unit}.d").is_dir() else []
    for path in [unit, *dropins]:
        _apply(view, path.read_text(encoding="utf-8", errors="replace"))
        view.files.append(path)
    return view


def _apply(view: UnitView, text: str) -> None:
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if key in LIST_KEYS:
            if not value:
                view.lists[key] = []  # an empty assignment resets the list
            elif key == "DeviceAllow":
                view.lists[key].append(value)
            else:
                view.lists[key].extend(value.split())
        else:
            view.values[key] = value


def char_majors(proc_devices: str | None = None) -> dict[int, set[str]]:
    """Character device majors and the driver names the kernel gave them."""
    if proc_devices is None:
        try:
            proc_devices = Path("/proc/devices").read_text()
        except OSError:
            return {}
    out: dict[int, set[str]] = {}
    in_char = False
    for line in proc_devices.splitlines():
        if line.startswith("Character devices"):
            in_char = True
            continue
        if line.startswith("Block devices"):
            break
        parts = line.split()
        if in_char and len(parts) == 2 and parts[0].isdigit():
            out.setdefault(int(parts[0]), set()).add(parts[1])
    return out


def device_refusal(
    view: UnitView, port: Path, majors: dict[int, set[str]] | None = None
) -> str | None:
    """Why the unit would refuse to open ``port``, or None when it allows it
    (or when the port is missing: the serial check reports that)."""
    if view.device_policy not in ("closed", "strict") and not view.lists["DeviceAllow"]:
        return None
    try:
        real = port.resolve()
        st = os.stat(real)
    except OSError:
        return None

    if not stat.S_ISCHR(st.st_mode):
        return None
    major = os.major(st.st_rdev)
    names = (char_majors() if majors is None else majors).get(major, set())
    for entry in view.lists["DeviceAllow"]:
        spec = entry.split()[0]
        if spec.startswith("char-"):
            if any(fnmatch.fnmatchcase(n, spec[5:]) for n in names):
                return None
        elif spec.startswith("/dev/") and Path(spec).resolve() == real:
            return None
    kind = ", ".join(sorted(names)) or f"major {major}"
    allowed = ", ".join(e.split()[0] for e in view.lists["DeviceAllow"]) or "nothing"
    return f"{port} is {real} ({kind}); the unit allows only {allowed}"


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def state_dir_refusal(view: UnitView, state_dir: Path) -> str | None:
    """Why the agent could not write ``state_dir`` under the unit, or None."""
    path = Path(os.path.abspath(state_dir))
    if _under(path, [Path(p.lstrip("-+")) for p in view.lists["InaccessiblePaths"]]):
        return f"{path} is in InaccessiblePaths"
    roots = view.writable_roots()
    if _under(path, roots):
        return None
    if _under(path, [Path(p.lstrip("-+")) for p in view.lists["ReadOnlyPaths"]]):
        return f"{path} is in ReadOnlyPaths"
    if view.values.get("ProtectHome", "no") in ("yes", "read-only", "tmpfs") and _under(
        path, [Path("/home"), Path("/root"), Path("/run/user")]
    ):
        return f"{path} is under a home folder (ProtectHome={view.values['ProtectHome']})"
    if view.values.get("PrivateTmp", "no") in ("yes", "true", "1") and _under(
        path, [Path("/tmp"), Path("/var/tmp")]
    ):
        return f"{path} is in the service's private /tmp (PrivateTmp=yes): status would not see it"
    ps = view.protect_system
    read_only = {
        "strict": [Path("/")],
        "full": [Path("/usr"), Path("/boot"), Path("/efi"), Path("/etc")],
        "yes": [Path("/usr"), Path("/boot"), Path("/efi")],
        "true": [Path("/usr"), Path("/boot"), Path("/efi")],
    }.get(ps, [])
    if _under(path, read_only):
        where = ", ".join(str(r) for r in roots) or "nothing"
        return f"{path} is read-only under ProtectSystem={ps} (writable: {where})"
    return None
