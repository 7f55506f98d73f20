#!/usr/bin/env bash
# Set up (first run) and run the demo site.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" ""
cd "$ROOT"
firegate check-config config/example-site.yaml
exec firegate run --config config/example-site.yaml --exit-after "${DEMO_SECONDS:-15}"
