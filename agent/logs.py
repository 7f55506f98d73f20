"""Logging to stderr in a form journald and people both read well.

Under systemd (JOURNAL_STREAM set) each line starts with the syslog priority
prefix ``<N>`` so that ``journalctl -p warning`` filters correctly, and the
time is left to journald. Elsewhere lines carry an ISO time.

Secrets never reach a log line: the site config holds passwords as
``SecretStr`` (printed as ``**********``), and a filter masks anything that
looks like ``password=...`` in messages from libraries.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_SECRET = re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\S+)")


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        red = _SECRET.sub(r"\1\2***", msg)
        if red != msg:
            record.msg, record.args = red, None
        return True


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        fmt = "%(name)s %(levelname)s: %(message)s"
        super().__init__(fmt if journal else "%(asctime)s " + fmt, "%Y-%m-%dT%H:%M:%S")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal:
            prio = _PRIORITY.get(record.levelno, 6)
            # journald takes the prefix per line; keep tracebacks at the same level
            return "\n".join(f"<{prio}>{line}" for line in text.splitlines())
        return text


def setup(level: str = "info", modules: Mapping[str, str] | None = None) -> None:
    """Configure the root logger once; safe to call again (replaces handlers)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    handler.addFilter(_RedactSecrets())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # chatty libraries stay at warning unless asked for
    for noisy in ("pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, lvl in (modules or {}).items():
        logging.getLogger(name).setLevel(lvl.upper())


_URL_CREDENTIALS = re.compile(r"^([a-z][a-z0-9+.-]*://)([^/@:]*)(:[^/@]*)?@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """rtsp://user:secret@cam/stream -> rtsp://user:***@cam/stream (for logs and summaries)."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m[1]}{m[2]}{':***' if m[3] else ''}@", url)
