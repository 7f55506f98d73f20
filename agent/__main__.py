"""`python -m agent` and the `firegate` command (pyproject.toml's entry point).

Nothing here but a guard: Ctrl-C while the command is still loading (the
first tenths of a second on a busy gateway) ends it quietly, not with a
traceback through the import machinery.
"""

import sys


def main() -> int:
    try:
        from agent.cli import main as cli_main
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
