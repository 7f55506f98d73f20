"""``python -m firmware_mocks run FILE.yaml``: start a simulated bus and play its script.

Prints the pty path (or TCP address) on the first line, then each scripted
change as it happens. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_mocks", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="serve a simulated bus described by a YAML file")
    r.add_argument("file", type=Path)
    r.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    args = ap.parse_args(argv)
    from firmware_mocks.script import serve

    try:
        serve(args.file, args.duration)
    except FileNotFoundError as e:
        print(f"{args.file}: {e}", file=sys.stderr)
        return 2
    except (ValidationError, ValueError) as e:
        print(f"{args.file}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
