# Sourced by the scripts in this folder: make sure ./.venv exists with firegate
# installed (editable) and the given extras. Safe to run again: it only
# reinstalls when pyproject.toml changed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FIREGATE_VENV:-$ROOT/.venv}
EXTRAS=${1:-}
PY=${PYTHON:-python3}

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "firegate needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1))." >&2
    exit 1
fi
# A set-up interrupted (Ctrl-C) while the venv was being made leaves a python
# without pip ("No module named pip" for ever after): such a venv is rebuilt.
venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; }
if [ -e "$VENV" ] && ! venv_ok; then
    if [ -f "$VENV/pyvenv.cfg" ] || [ -z "$(ls -A "$VENV" 2>/dev/null)" ]; then
        echo "The virtual environment $VENV is incomplete (an earlier set-up was interrupted?); rebuilding it ..." >&2
        rm -rf "$VENV"
    else
        echo "$VENV exists but is not a working virtual environment; move it away or set FIREGATE_VENV." >&2
        exit 1
    fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating a virtual environment in $VENV ..." >&2
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        echo "Could not create a virtual environment. On Debian: sudo apt-get install python3-venv" >&2
        exit 1
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    NEW_VENV=1
fi
STAMP="$VENV/.firegate-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16) $EXTRAS"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "Installing firegate${EXTRAS:+[$EXTRAS]} into $VENV ..." >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}" >&2
    echo "$WANT" > "$STAMP"
fi
if [ "${NEW_VENV:-0}" = 1 ]; then
    echo "firegate is installed in $VENV/bin. To type 'firegate' in this shell: source $VENV/bin/activate" >&2
fi
export PATH="$VENV/bin:$PATH"
