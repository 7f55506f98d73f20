"""Logging to stderr in a form journald and people both read well.

Under systemd (JOURNAL_STREAM set) each line starts with the syslog priority
prefix ``<N>`` so that ``journalctl -p warning`` filters correctly, and the
time is left to journald. Elsewhere lines carry an ISO time.

Secrets never reach a log line: the site config holds passwords as
``SecretStr`` (printed as ``**********``), and every formatted line (message
and traceback) goes through ``redact``, which masks the password of any URL
in it (``rtsp://admin:p@ss@host/`` -> ``rtsp://admin:***@host/``), secret
query values (``?pwd=``, ``password=``, ``loginpas=``, tokens, keys) and
anything that looks like ``password=...``. ``redact`` is the one redaction
for every output: the log, check-config, doctor, status.json, ``firegate
status`` and what the uplink publishes.
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
# password=..., pwd: ... in free text; the value stops at a quote, so JSON stays JSON
_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|loginpas\w*|secret|token|api[_-]?key)(\s*[=:]\s*)"
    r"([^\s\"'&,;]+)"
)
# a URL inside any text: scheme://... up to a blank, a quote or an angle bracket
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")
# a query or fragment parameter whose name says it is a secret
_SECRET_PARAM = re.compile(
    r"(?i)([?&;#][^=&#;\s]*(?:pas|pwd|secret|token|key|auth|sig|credential)[^=&#;\s]*=)"
    r"([^&#;\s]*)"
)


# Every match of _SECRET contains one of these (password, passwd, loginpas...:
# "pas"; api-key: "key"), in any case. An ASCII text (where (?i) means plain
# upper/lower case) without "://" and without any of them has nothing to mask:
# it is returned without running the expressions, which cost ~50 us on a
# decision's payload (the uplink redacts every one it publishes).
_SECRET_HINTS = ("pas", "pwd", "secret", "token", "key")


def redact(text: str) -> str:
    """``text`` with every secret this module knows masked as ``***`` (see the module
    docstring); the rest unchanged. For every output that a person or the centre sees."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m[0]), text)
    elif text.isascii():
        low = text.lower()
        if not any(h in low for h in _SECRET_HINTS):
            return text
    return _SECRET.sub(r"\1\2***", text)


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        red = redact(msg)
        if red != msg:
            record.msg, record.args = red, None
        return True


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        fmt = "%(name)s %(levelname)s: %(message)s"
        super().__init__(fmt if journal else "%(asctime)s " + fmt, "%Y-%m-%dT%H:%M:%S")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))  # the traceback too
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


_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*://)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``rtsp://user:secret@cam/stream`` -> ``rtsp://user:***@cam/stream``, and the
    values of secret query parameters (``?pwd=``, ``password=``, ``loginpas=``,
    ``token=``) -> ``***``.

    A camera password may itself hold ``@``, ``/`` or ``:`` (``admin:p@ss@host``):
    the user part ends at the last ``@`` before the query; what precedes it is
    taken as user and password when it has no ``/``, or when a ``:`` comes before
    its first ``/`` (else that ``@`` belongs to the path)."""
    m = _SCHEME.match(url)
    if m is None:
        return _SECRET_PARAM.sub(r"\1***", url) if "=" in url else url
    scheme, rest = m[1], url[m.end() :]
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0 and "/" not in rest[: max(0, rest.rfind("@"))]:
        at = rest.rfind("@")  # a password with ? or # in it: no path before its @
    if at >= 0:
        userinfo = rest[:at]
        slash, colon = userinfo.find("/"), userinfo.find(":")
        if slash < 0 or 0 <= colon < slash:
            user = userinfo[:colon] if colon >= 0 else userinfo
            rest = f"{user}{':***' if colon >= 0 else ''}@{rest[at + 1 :]}"
    return scheme + _SECRET_PARAM.sub(r"\1***", rest)
