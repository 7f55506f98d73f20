"""The `firegate` command. Each sub-command lives in agent/commands/<module>.py
and registers itself with ``register(subparsers)``.

Only the command being run is imported: the others appear in ``--help`` from
the table below, so that ``firegate --help`` (and every command) starts
without loading every config model, OpenCV or onnxruntime (bench/cli_startup.py).

Exit codes: 0 success, 1 runtime failure, 2 bad input (config, arguments);
130 interrupted (Ctrl-C), 141 output closed early (``firegate status | head``).
No command ever prints a traceback to a person unless --debug is given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence

# command -> (module in agent.commands, one line for `firegate --help`); the
# help must be the one the module registers (tests/ops/test_ops_cli.py checks)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the agent (under systemd: see systemd/firegate.service)"),
    "check-config": ("check_config", "check a site config file and print a summary"),
    "doctor": (
        "doctor",
        "check an installation on site: config, ports, devices, cameras, model, broker, "
        "disk, clock",
    ),
    "status": (
        "status",
        "show the running agent's state (parts, devices, cameras, zones, outbox)",
    ),
    "scan": ("scan", "find the Modbus device ids that answer on a serial line"),
    "detect": ("detect", "run the smoke/fire detector on images or videos"),
    "demo": (
        "demo",
        "run a simulated school through a scripted morning (nothing to install or wire)",
    ),
    "bundle": (
        "bundle",
        "make an offline install file (USB stick) for one gateway architecture",
    ),
    "provision": (
        "provision",
        "make one site config, MQTT credentials and a commissioning sheet per school",
    ),
    "commission": (
        "commission",
        "learn a camera's normal scene (run on the ladder, nothing burning in view)",
    ),
}
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a program ended by SIGPIPE

log = logging.getLogger("firegate")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (all of them when None)."""
    parser = argparse.ArgumentParser(
        prog="firegate",
        description="Site gateway for fire detectors, electrical-fire monitors and cameras.",
        epilog="Run 'firegate COMMAND --help' for a command's options. "
        "Guides: docs/README.md (installer, maintainer, operations).",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of internal errors (for developers)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module, help_) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(f"agent.commands.{module}").register(sub)
        else:  # listed in --help, never parsed: main() builds the parser for the command given
            sub.add_parser(name, help=help_, add_help=False)
    return parser


class _Version(argparse.Action):
    """--version, reading the version only when asked (it costs a metadata lookup)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kw.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kw: object) -> None:
        from agent import __version__

        print(f"firegate {__version__}")
        parser.exit()


def _command_in(argv: Sequence[str]) -> str:
    """The sub-command named on the line ("" when none): the first word that is not
    an option (the top-level options take no value)."""
    for word in argv:
        if word == "--":
            return ""
        if not word.startswith("-"):
            return word if word in COMMANDS else ""
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    command = ""
    try:
        parser = build_parser(_command_in(argv) or "")
        args = parser.parse_args(argv)
        debug = args.debug
        command = args.command or ""
        if not command:  # `firegate` alone: what it can do, not an error about COMMAND
            parser.print_help()
            return 2
        code: int = args.func(args)
        sys.stdout.flush()  # here, so that a closed pipe is seen below, not at exit
        return code
    except KeyboardInterrupt:  # Ctrl-C at any moment, start-up included
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`firegate status | head`): nothing left to tell it
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as e:
        if debug:
            raise
        print(
            f"firegate {command}: internal error: {type(e).__name__}: {e}\n"
            "  (run again with --debug for details, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
