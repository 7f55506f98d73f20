"""The `firegate` command. Each sub-command lives in agent/commands/<name>.py
and registers itself with ``register(subparsers)``.

Exit codes: 0 success, 1 runtime failure, 2 bad input (config, arguments).
No command ever prints a traceback to a person unless --debug is given.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent import __version__

COMMANDS = ("run", "check_config", "doctor", "status", "scan", "detect", "demo", "commission")

log = logging.getLogger("firegate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firegate",
        description="Site gateway for fire detectors, electrical-fire monitors and cameras.",
    )
    parser.add_argument("--version", action="version", version=f"firegate {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of internal errors (for developers)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"agent.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(
            f"firegate {args.command}: internal error: {type(e).__name__}: {e}\n"
            "  (run again with --debug for details, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
