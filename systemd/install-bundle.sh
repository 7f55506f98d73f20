#!/usr/bin/env bash
# Install or upgrade firegate from an offline bundle (made by `firegate bundle`),
# with no network at all. This file is the bundle's top-level install.sh:
#
#   tar xf firegate-0.1.0-x86_64-py311.tar
#   sudo firegate-0.1.0-x86_64-py311/install.sh
#   sudo firegate-0.1.0-x86_64-py311/install.sh --rollback   # back to the version before
#
# 1. Every file is checked against MANIFEST.sha256 first (a bad USB stick, an
#    interrupted copy); on any mismatch nothing on the gateway is touched.
# 2. The installed virtual environment is moved aside (venv.previous), the unit
#    and udev rule are saved, and systemd/install.sh builds a fresh one from the
#    bundle's wheels only (pip --no-index: no build, no download).
# 3. The new copy must report the bundle's version and accept the site config
#    (`firegate check-config`); otherwise the previous venv, unit and rule are put
#    back and the script exits 1. The site config (/etc/firegate), the outbox
#    and the nuisance log (/var/lib/firegate) are never touched by either path.
#
# Options: --prefix DIR, --python PY, --user NAME, --no-enable (as systemd/install.sh),
#          --rollback (swap back to venv.previous), --verify-only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=""
PYTHON=python3
PASS=()
ROLLBACK=0
VERIFY_ONLY=0

die() { echo "install.sh (bundle): $*" >&2; exit "${2:-2}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
        --user) PASS+=(--user "${2:?--user needs a name}"); shift 2 ;;
        --no-enable) PASS+=(--no-enable); shift ;;
        --rollback) ROLLBACK=1; shift ;;
        --verify-only) VERIFY_ONLY=1; shift ;;
        -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done
if [ -n "$PREFIX" ]; then
    mkdir -p "$PREFIX" || die "cannot create $PREFIX"
    PREFIX="$(cd "$PREFIX" && pwd)"
    PASS+=(--prefix "$PREFIX")
elif [ "$(id -u)" != 0 ]; then
    die "run as root (sudo), or use --prefix DIR"
fi

OPT="$PREFIX/opt/firegate"
ETC="$PREFIX/etc/firegate"
UNIT="$PREFIX/etc/systemd/system/firegate.service"
UDEV="$PREFIX/etc/udev/rules.d/99-firegate-serial.rules"
SAVED="$OPT/previous"   # the unit and udev rule as they were before this upgrade

# Only the bundle's wheels: no index, no find-links or config from this machine.
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_REQUIREMENT || true

managed() { [ -z "$PREFIX" ] && [ -d /run/systemd/system ]; }
was_active=0
stop_service() {
    if managed && systemctl is-active --quiet firegate 2>/dev/null; then
        was_active=1
        echo "  + systemctl stop firegate"
        systemctl stop firegate
    fi
}
start_service() {
    if managed; then
        systemctl daemon-reload || true
        if [ "$was_active" = 1 ]; then echo "  + systemctl start firegate"; systemctl start firegate || true; fi
    fi
}
installed_version() {
    "$OPT/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("firegate"))' 2>/dev/null || true
}

# ------------------------------------------------------------------ rollback only
if [ "$ROLLBACK" = 1 ]; then
    [ -d "$OPT/venv.previous" ] || die "no previous version kept in $OPT/venv.previous" 1
    stop_service
    rm -rf "$OPT/venv.failed"
    mv "$OPT/venv" "$OPT/venv.failed" 2>/dev/null || true
    mv "$OPT/venv.previous" "$OPT/venv"
    [ -d "$OPT/venv.failed" ] && mv "$OPT/venv.failed" "$OPT/venv.previous"
    [ -f "$SAVED/firegate.service" ] && cp -p "$SAVED/firegate.service" "$UNIT"
    [ -f "$SAVED/99-firegate-serial.rules" ] && cp -p "$SAVED/99-firegate-serial.rules" "$UDEV"
    start_service
    echo "rolled back: firegate $(installed_version) is installed again (the other one is in $OPT/venv.previous)"
    exit 0
fi

# ------------------------------------------------------------------ 1. the bundle
cd "$HERE"
[ -f MANIFEST.sha256 ] && [ -f bundle.json ] || die "$HERE is not a firegate bundle (no MANIFEST.sha256 / bundle.json)"
echo "checking $HERE against MANIFEST.sha256 ..."
if ! bad="$(sha256sum --check --strict --quiet MANIFEST.sha256 2>&1)"; then
    echo "$bad" >&2
    die "the bundle is damaged (files above differ from MANIFEST.sha256): copy it again from the original; nothing was changed on this gateway"
fi
# pip would also pick up a wheel that is not in the manifest: refuse those too
extra="$(LC_ALL=C comm -23 <(find wheels source -type f | LC_ALL=C sort) <(cut -c67- MANIFEST.sha256 | LC_ALL=C sort) | tr '\n' ' ')"
[ -z "$extra" ] || die "files not in MANIFEST.sha256: $extra (remove them, or copy the bundle again); nothing was changed"
field() { "$PYTHON" -c 'import json,sys; print(json.load(open("bundle.json"))[sys.argv[1]])' "$1"; }
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: the gateway needs Python $(sed -n 's/.*"python": "\([0-9.]*\)".*/\1/p' bundle.json) (Debian 12: apt-get install python3 python3-venv from the install media)"
WANT_ARCH="$(field arch)"; WANT_PY="$(field python)"; VERSION="$(field version)"
HAVE_PY="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# The CPU the wheels must fit is the interpreter's, not the kernel's: a 32-bit
# system on a 64-bit kernel (Raspberry Pi OS 32-bit on a Pi 4/5) says aarch64 in
# uname -m, but its Python is armv7l and pip would refuse every aarch64 wheel.
# (pip's own rule: a 32-bit interpreter on a 64-bit kernel is the 32-bit CPU.)
HAVE_ARCH="$("$PYTHON" -c 'import platform, struct
m = platform.machine()
if struct.calcsize("P") == 4:
    m = {"aarch64": "armv7l", "arm64": "armv7l", "x86_64": "i686", "amd64": "i686"}.get(m, m)
print(m)')"
if [ "$HAVE_ARCH" != "$WANT_ARCH" ]; then
    case "$HAVE_ARCH" in
        x86_64|aarch64) hint="use the $HAVE_ARCH bundle" ;;
        *) hint="firegate makes no bundle for $HAVE_ARCH: install the 64-bit system (Debian 12 amd64 or arm64, Raspberry Pi OS 64-bit)" ;;
    esac
    if [ "$(uname -m)" = "$WANT_ARCH" ]; then
        die "this bundle is for $WANT_ARCH; this gateway's kernel is $WANT_ARCH, but its system ($PYTHON) is 32-bit $HAVE_ARCH: $hint; nothing was changed"
    fi
    die "this bundle is for $WANT_ARCH, this gateway is $HAVE_ARCH: $hint; nothing was changed"
fi
[ "$HAVE_PY" = "$WANT_PY" ] || die "this bundle's wheels are for Python $WANT_PY, $PYTHON is $HAVE_PY: give --python python$WANT_PY, or use a bundle made with --python-version $HAVE_PY"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "$PYTHON cannot create virtual environments (Debian: install python3-venv)"
echo "bundle: firegate $VERSION for $WANT_ARCH, Python $WANT_PY: OK"
[ "$VERIFY_ONLY" = 1 ] && exit 0
WHEEL="$(ls "$HERE"/wheels/firegate-*.whl)"

# ------------------------------------------------------------------ 2. install
PREVIOUS="$(installed_version)"
stop_service
rm -rf "$SAVED"; mkdir -p "$SAVED"
[ -f "$UNIT" ] && cp -p "$UNIT" "$SAVED/"
[ -f "$UDEV" ] && cp -p "$UDEV" "$SAVED/"
if [ -d "$OPT/venv" ]; then
    echo "upgrade: firegate ${PREVIOUS:-?} -> $VERSION (the old one is kept in $OPT/venv.previous)"
    rm -rf "$OPT/venv.older"
    if [ -d "$OPT/venv.previous" ]; then mv "$OPT/venv.previous" "$OPT/venv.older"; fi
    mv "$OPT/venv" "$OPT/venv.previous"
fi

rollback() {
    echo "install.sh (bundle): $1" >&2
    rm -rf "$OPT/venv"
    if [ -d "$OPT/venv.previous" ]; then
        mv "$OPT/venv.previous" "$OPT/venv"
        if [ -d "$OPT/venv.older" ]; then mv "$OPT/venv.older" "$OPT/venv.previous"; fi
        for f in "$SAVED"/*; do
            [ -f "$f" ] || continue
            case "$f" in *.service) cp -p "$f" "$UNIT" ;; *.rules) cp -p "$f" "$UDEV" ;; esac
        done
        start_service
        echo "install.sh (bundle): rolled back: firegate ${PREVIOUS:-?} is installed as it was; config, outbox and nuisance log untouched" >&2
    else
        echo "install.sh (bundle): nothing was installed before; $OPT/venv removed" >&2
    fi
    exit 1
}

if ! bash "$HERE/source/systemd/install.sh" --source "$HERE/source" --python "$PYTHON" \
        --wheel "$WHEEL" --wheelhouse "$HERE/wheels" "${PASS[@]}"; then
    rollback "installing firegate $VERSION failed (see above)"
fi

# ------------------------------------------------------------------ 3. check it
HAVE="$(installed_version)"
[ "$HAVE" = "$VERSION" ] || rollback "the new copy reports version '${HAVE}', not $VERSION"
"$OPT/venv/bin/firegate" --version >/dev/null 2>&1 || rollback "the new copy does not start ($OPT/venv/bin/firegate --version)"
if [ -f "$ETC/site.yaml" ] && ! "$OPT/venv/bin/firegate" check-config "$ETC/site.yaml" >/dev/null; then
    rollback "firegate $VERSION does not accept $ETC/site.yaml (problems above); fix the config, then run this again"
fi
rm -rf "$OPT/venv.older"
start_service
echo "installed: firegate $VERSION${PREVIOUS:+ (was $PREVIOUS; \`$0 --rollback\` goes back)}"
echo "next: $OPT/venv/bin/firegate doctor --config $ETC/site.yaml"
