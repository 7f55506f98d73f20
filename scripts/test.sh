#!/usr/bin/env bash
# Set up (first run) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" dev
cd "$ROOT"
if ! command -v mosquitto >/dev/null 2>&1 && ! [ -x /usr/sbin/mosquitto ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing mosquitto (the uplink tests start their own broker) ..." >&2
        apt-get install -y -q mosquitto >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q mosquitto >/dev/null; }
    else
        echo "The uplink tests need mosquitto: sudo apt-get install mosquitto" >&2
        exit 1
    fi
fi
# Most tests wait on real I/O (ptys, brokers, agents as child processes), so two
# processes finish the suite sooner even on two cores. A test file runs whole in
# one process (its module fixtures, e.g. the e2e run or the bundle, are built
# once). FIREGATE_TEST_JOBS=0 runs everything in this process.
exec python -m pytest -n "${FIREGATE_TEST_JOBS:-2}" --dist loadfile "$@"
