#!/usr/bin/env bash
# Install (or update) firegate on a gateway: service user, directories, virtual
# environment, site config template, systemd unit, udev rule. Safe to run again:
# every step checks what is already there and changes only what differs; an
# existing site config is never overwritten.
#
#   sudo systemd/install.sh                      # install from this checkout
#   sudo systemd/install.sh --wheelhouse /media/usb/wheels   # offline site
#   systemd/install.sh --prefix /tmp/root --dry-run          # show, change nothing
#
# --prefix DIR installs into DIR instead of / (a staging root, or a test); the
# unit then points into DIR, and users, systemctl and udevadm are left alone.
set -euo pipefail

PREFIX=""
DRY_RUN=0
SERVICE_USER=firegate
PYTHON=python3
PIP_ARGS=""
WHEEL=""
ENABLE=1
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    cat <<EOF
usage: $0 [--prefix DIR] [--dry-run] [--source DIR] [--python PY] [--user NAME]
          [--wheel FILE] [--wheelhouse DIR] [--pip-args "ARGS"] [--no-enable]

  --prefix DIR      install under DIR (default: /); no users, systemctl or udevadm
  --dry-run         print what would change, change nothing
  --source DIR      firegate source tree (default: $SOURCE)
  --python PY       Python >= 3.11 for the virtual environment (default: python3)
  --user NAME       service user (default: firegate)
  --wheel FILE      install this firegate wheel (built by CI) instead of building
                    the source tree; unit, udev rule and config still come from it
  --wheelhouse DIR  install packages from DIR only (no internet on site)
  --pip-args ARGS   extra arguments for pip install
  --no-enable       do not enable the service at boot
EOF
}

die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --source) SOURCE="${2:?--source needs a folder}"; shift 2 ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
        --user) SERVICE_USER="${2:?--user needs a name}"; shift 2 ;;
        --wheel) WHEEL="${2:?--wheel needs a file}"; shift 2 ;;
        --wheelhouse) PIP_ARGS="$PIP_ARGS --no-index --find-links ${2:?--wheelhouse needs a folder}"; shift 2 ;;
        --pip-args) PIP_ARGS="$PIP_ARGS ${2?--pip-args needs a value}"; shift 2 ;;
        --no-enable) ENABLE=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

if [ -n "$PREFIX" ]; then
    [ "$DRY_RUN" = 1 ] || mkdir -p "$PREFIX" || die "cannot create $PREFIX"
    case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac
    PREFIX="${PREFIX%/}"
fi
[ -f "$SOURCE/pyproject.toml" ] && [ -f "$SOURCE/systemd/firegate.service" ] \
    || die "$SOURCE is not a firegate source tree (give --source)"
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "wheel $WHEEL not found"
if [ -z "$PREFIX" ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo), or use --prefix DIR / --dry-run"
fi

OPT="$PREFIX/opt/firegate"
VENV="$OPT/venv"
ETC="$PREFIX/etc/firegate"
STATE="$PREFIX/var/lib/firegate"
UNIT="$PREFIX/etc/systemd/system/firegate.service"
UDEV="$PREFIX/etc/udev/rules.d/99-firegate-serial.rules"
BIN="$PREFIX/usr/local/bin/firegate"

CHANGED=0
say() { echo "$*"; }
# act CMD...: do it (or only show it with --dry-run)
act() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "  would run: $*"
    else
        echo "  + $*"
        "$@"
    fi
}
# run CMD...: act, and count it as a change of the installed state
run() {
    act "$@"
    CHANGED=$((CHANGED + 1))
}
# Owners apply only on a real install as root; under --prefix the files stay the caller's.
own() { [ -z "$PREFIX" ] && [ "$(id -u)" = 0 ]; }

# ---------------------------------------------------------------- service user
step_user() {
    if [ -n "$PREFIX" ]; then
        say "user: skipped under --prefix (would be system user '$SERVICE_USER')"
        return
    fi
    if getent passwd "$SERVICE_USER" >/dev/null; then
        say "user: $SERVICE_USER exists"
    else
        say "user: creating system user $SERVICE_USER"
        run useradd --system --user-group --home-dir /var/lib/firegate --no-create-home \
            --shell /usr/sbin/nologin --comment "firegate gateway agent" "$SERVICE_USER"
    fi
    # So that `sudo -u firegate firegate doctor` sees the ports as the service does
    # (the unit adds these groups itself through SupplementaryGroups).
    for g in dialout video; do
        getent group "$g" >/dev/null || continue
        if id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$g"; then
            :
        else
            run usermod -aG "$g" "$SERVICE_USER"
        fi
    done
}

# ------------------------------------------------------------------ directories
# ensure_dir DIR MODE OWNER:GROUP
ensure_dir() {
    local dir="$1" mode="$2" owner="$3"
    if [ ! -d "$dir" ]; then
        run install -d -m "$mode" "$dir"
    elif [ "$(stat -c %a "$dir")" != "${mode#0}" ]; then
        run chmod "$mode" "$dir"
    fi
    if own && [ "$(stat -c %U:%G "$dir" 2>/dev/null)" != "$owner" ]; then
        run chown "$owner" "$dir"
    fi
}

step_dirs() {
    say "directories: $OPT $ETC $STATE"
    ensure_dir "$OPT" 0755 root:root
    ensure_dir "$ETC" 0750 "root:$SERVICE_USER"
    ensure_dir "$STATE" 0750 "$SERVICE_USER:$SERVICE_USER"
}

# ------------------------------------------------------------------------ files
# put_file SRC DEST MODE [OWNER]: copy when missing or different
put_file() {
    local src="$1" dest="$2" mode="$3" owner="${4:-root:root}"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        if [ "$(stat -c %a "$dest")" != "${mode#0}" ]; then run chmod "$mode" "$dest"; fi
        say "  unchanged: $dest"
        return 1
    fi
    [ -d "$(dirname "$dest")" ] || run install -d -m 0755 "$(dirname "$dest")"
    run install -m "$mode" "$src" "$dest"
    if own; then run chown "$owner" "$dest"; fi
    return 0
}

# ------------------------------------------------------------------ virtualenv
step_venv() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        die "$PYTHON is not Python 3.11 or newer (give --python)"
    fi
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        say "venv: $VENV exists"
    else
        say "venv: creating $VENV"
        run "$PYTHON" -m venv "$VENV"
    fi
    local want have
    want="$(sed -n 's/^version = "\(.*\)"/\1/p' "$SOURCE/pyproject.toml" | head -n1)"
    # -I: not the current folder's metadata (a checkout's firegate.egg-info), only the venv's
    have="$("$VENV/bin/python" -I -c 'import importlib.metadata as m; print(m.version("firegate"))' 2>/dev/null || true)"
    say "venv: firegate ${have:-not installed}, source $want"
    # Always reinstall the project itself (a checkout may change without a new
    # version number); pip leaves dependencies alone when they already fit.
    # shellcheck disable=SC2086
    local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check --quiet)
    local hint="pip could not install firegate into $VENV (see above); without internet use --wheelhouse"
    act "${pip[@]}" $PIP_ARGS "${WHEEL:-$SOURCE}" || die "$hint"
    if [ -n "$WHEEL" ]; then
        # the same version number may carry new code: replace the project, not its dependencies
        act "${pip[@]}" $PIP_ARGS --no-deps --force-reinstall "$WHEEL" || die "$hint"
    fi
}

# ------------------------------------------------------------ config, unit, udev
step_config() {
    if [ -f "$ETC/site.yaml" ]; then
        say "config: $ETC/site.yaml exists (left as it is)"
    else
        say "config: no site config yet; installing the commented example"
        put_file "$SOURCE/config/example-site.yaml" "$ETC/site.yaml" 0640 "root:$SERVICE_USER" || true
        NEED_EDIT=1
    fi
}

step_unit() {
    local tmp
    tmp="$(mktemp)"
    # Under --prefix the unit points into the prefix, so it can be verified there.
    sed -e "s#/opt/firegate#$OPT#g" -e "s#/etc/firegate/#$ETC/#g" \
        -e "s#^WorkingDirectory=/var/lib/firegate#WorkingDirectory=$STATE#" \
        -e "s#^User=firegate#User=$SERVICE_USER#" -e "s#^Group=firegate#Group=$SERVICE_USER#" \
        "$SOURCE/systemd/firegate.service" >"$tmp"
    say "unit: $UNIT"
    if put_file "$tmp" "$UNIT" 0644; then UNIT_CHANGED=1; fi
    rm -f "$tmp"
    say "udev rule: $UDEV"
    if put_file "$SOURCE/systemd/99-firegate-serial.rules" "$UDEV" 0644; then UDEV_CHANGED=1; fi
    say "docs: $OPT/docs/operations.md"
    if [ -f "$SOURCE/docs/operations.md" ]; then
        put_file "$SOURCE/docs/operations.md" "$OPT/docs/operations.md" 0644 || true
    fi
    if [ "$(readlink "$BIN" 2>/dev/null)" = "$VENV/bin/firegate" ]; then
        say "command: $BIN -> $VENV/bin/firegate"
    else
        [ -d "$(dirname "$BIN")" ] || run install -d -m 0755 "$(dirname "$BIN")"
        run ln -sfn "$VENV/bin/firegate" "$BIN"
    fi
}

step_systemd() {
    if [ -n "$PREFIX" ]; then
        say "systemd: skipped under --prefix"
        return
    fi
    if [ "${UDEV_CHANGED:-0}" = 1 ] && command -v udevadm >/dev/null; then
        run udevadm control --reload-rules
        run udevadm trigger --subsystem-match=tty --action=add
    fi
    if [ -d /run/systemd/system ]; then
        if [ "${UNIT_CHANGED:-0}" = 1 ]; then run systemctl daemon-reload; fi
        if [ "$ENABLE" = 1 ] && ! systemctl is-enabled --quiet firegate 2>/dev/null; then
            run systemctl enable firegate.service
        fi
    else
        say "systemd: not running here; enable the unit on the gateway: systemctl enable firegate"
    fi
}

[ "$DRY_RUN" = 1 ] && say "dry run: nothing is changed"
say "installing firegate from $SOURCE into ${PREFIX:-/}"
step_user
step_dirs
step_venv
step_config
step_unit
step_systemd

say ""
if [ "$CHANGED" = 0 ]; then
    say "done: everything was already in place (nothing changed)"
else
    say "done: $CHANGED change(s)$([ "$DRY_RUN" = 1 ] && echo ' would be made')"
fi
say "next:"
[ "${NEED_EDIT:-0}" = 1 ] && say "  edit $ETC/site.yaml (site, zones, buses, cameras, uplink)"
say "  $VENV/bin/firegate doctor --config $ETC/site.yaml"
say "  systemctl restart firegate && firegate status"
