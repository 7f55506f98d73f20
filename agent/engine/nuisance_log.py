"""The local nuisance log: every alarm the engine held back, as JSON lines.

Kept on the gateway (not forwarded) so that a maintainer can see, for years,
which detector trips and why (GB/T 45839 5.9.5 asks for a year of history).
The file is bounded: at ``max_bytes`` it is rotated to ``.1`` (older files
shift up to ``keep`` copies; the oldest is deleted). Writing never raises: a
full or read-only disk is logged (once per kind of error, then every
``ERROR_LOG_EVERY`` failures) and counted, and the engine goes on.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.engine.core import Suppressed

log = logging.getLogger(__name__)

FILE_NAME = "nuisance.jsonl"
ERROR_LOG_EVERY = 100


class NuisanceLog:
    def __init__(self, state_dir: Path, *, max_bytes: int = 8 * 1024 * 1024, keep: int = 5) -> None:
        if max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = Path(state_dir) / FILE_NAME
        self.max_bytes = max_bytes
        self.keep = keep
        self.written = 0
        self.errors = 0
        self.last_error = ""

    def append(self, entries: Iterable[Suppressed]) -> int:
        """Append entries; returns how many were written (0 on a disk error)."""
        lines = [json.dumps(e.to_dict(), separators=(",", ":"), sort_keys=True) for e in entries]
        if not lines:
            return 0
        data = ("\n".join(lines) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_needed(len(data))
            with open(self.path, "ab") as f:
                f.write(data)
        except OSError as e:
            self.errors += 1
            msg = f"{type(e).__name__}: {e.strerror or e}"
            if msg != self.last_error or self.errors % ERROR_LOG_EVERY == 1:
                log.error(
                    "cannot write the nuisance log %s (%s); the engine goes on, "
                    "%d write(s) lost so far: free space or fix permissions",
                    self.path,
                    msg,
                    self.errors,
                )
            self.last_error = msg
            return 0
        self.written += len(lines)
        return len(lines)

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + incoming <= self.max_bytes:
            return
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{FILE_NAME}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{FILE_NAME}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{FILE_NAME}.1"))
        last = self.path.with_name(f"{FILE_NAME}.{self.keep + 1}")
        if last.exists():
            last.unlink()

    def read(self) -> list[dict[str, Any]]:
        """Every entry still on disk, oldest first (skips a torn last line)."""
        out: list[dict[str, Any]] = []
        files = [self.path.with_name(f"{FILE_NAME}.{i}") for i in range(self.keep, 0, -1)]
        for p in [*files, self.path]:
            try:
                if not stat.S_ISREG(p.stat().st_mode):
                    continue  # a device or fifo put in its place: never read endlessly
                with open(p, "rb") as f:
                    # bounded even if the file grew past its cap (a foreign writer)
                    text = f.read(2 * self.max_bytes).decode("utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def totals(self) -> dict[str, int]:
        """The latest nuisance count of each detector or camera still on disk."""
        out: dict[str, int] = {}
        for e in self.read():
            src, n = e.get("source"), e.get("count")
            if isinstance(src, str) and isinstance(n, int):
                out[src] = max(n, out.get(src, 0))
        return out

    def status(self) -> dict[str, Any]:
        return {"path": str(self.path), "written": self.written, "errors": self.errors}
