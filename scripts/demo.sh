#!/usr/bin/env bash
# Set up (first run) and run the demo: a simulated school's gateway through a
# scripted morning. Arguments go to `firegate demo` (e.g. --speed 24, --state-dir DIR).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" ""
cd "$ROOT"
exec firegate demo "$@"
