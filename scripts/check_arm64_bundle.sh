#!/usr/bin/env bash
# Manual check: the aarch64 offline bundle installs and runs on arm64 Debian 12,
# on an x86_64 machine, under qemu-user emulation. NOT part of CI or the tests:
# it needs root, the network (apt and PyPI, to make the root and the bundle) and
# 10-15 minutes (most of it emulated Python). docs/fleet.md ("Tried on arm64")
# says what it showed.
#
#   sudo scripts/check_arm64_bundle.sh                    # root in /var/tmp/firegate-arm64root
#   sudo scripts/check_arm64_bundle.sh --root DIR --fresh # make the arm64 root again
#   sudo scripts/check_arm64_bundle.sh --bundle FILE.tar  # check a bundle made elsewhere
#
# 1. installs qemu-user-static, binfmt-support and debootstrap (apt) when missing
#    and registers qemu-aarch64 with binfmt_misc (mounting it when needed);
# 2. makes an arm64 Debian bookworm root with python3.11 and python3.11-venv
#    (debootstrap --arch arm64 --variant=minbase; the second stage runs under
#    qemu through binfmt), or reuses the one in --root;
# 3. makes the aarch64 bundle from this checkout (firegate bundle --arch aarch64);
# 4. inside the root with NO network (unshare -n, a namespace with only a down
#    loopback; the script first checks that nothing can be reached) and a fresh
#    /opt/firegate: runs the bundle's install.sh, then on the installed copy
#    `firegate check-config` and `firegate doctor` on the example site config it
#    installs (serial ports, RTSP camera and broker FAIL: no hardware, no network),
#    `firegate doctor` on a site whose camera is the demo's fire clip (OpenCV
#    decodes a frame, onnxruntime runs the shipped model), and `firegate detect`
#    on that clip, compared with the same command on this machine.
#
# /sys is not mounted in the root on purpose: onnxruntime's cpuinfo then reads
# the host's sysfs and qemu-user's /proc/cpuinfo, which (qemu 7.2) is this x86
# machine's, and `import onnxruntime` segfaults under emulation. Without /sys it logs "Error in cpuinfo: failed to parse ..."
# and runs on its portable kernels. A real board has its own /proc/cpuinfo.
#
# Exit 0 when every expectation held (listed at the end), 1 otherwise.
set -euo pipefail

ROOT=/var/tmp/firegate-arm64root
FRESH=0
BUNDLE=""
MIRROR=http://deb.debian.org/debian
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a folder}"; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --bundle) BUNDLE="${2:?--bundle needs a .tar}"; shift 2 ;;
        --mirror) MIRROR="${2:?--mirror needs a URL}"; shift 2 ;;
        -h|--help) sed -n '2,32p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "check_arm64_bundle: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, unshare -n)"
case "$ROOT" in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
case "$ROOT/" in "$SRC"/*) die "--root $ROOT is inside the checkout: keep the arm64 root out of the repo" ;; esac
NICE=(nice -n 10)   # the machine is shared: emulation is CPU-heavy
T0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - T0 )) s] $*"; }

# ------------------------------------------------------------------ 1. emulation
step "qemu-user and binfmt_misc"
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ "$(uname -m)" != aarch64 ]; then
    command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "apt-get install ${need[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
if [ "$(uname -m)" = aarch64 ]; then
    echo "this machine is aarch64: no emulation needed"
else
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc (a container without it cannot run arm64 binaries)"
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 \
        || die "update-binfmts --enable qemu-aarch64 failed"
    head -2 /proc/sys/fs/binfmt_misc/qemu-aarch64
    # F (fix binary): the interpreter is opened now, so it works inside a chroot without it
    grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
        || die "qemu-aarch64 is registered without the F flag: chroot cannot find the interpreter"
    qemu-aarch64-static --version | head -1
fi

# ------------------------------------------------------------------ 2. the arm64 root
step "arm64 Debian 12 root in $ROOT"
if [ "$FRESH" = 1 ] && [ -d "$ROOT" ]; then
    for m in "$ROOT"/proc "$ROOT"/sys; do if mountpoint -q "$m"; then umount "$m"; fi; done
    rm -rf --one-file-system "$ROOT"
fi
if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
    mkdir -p "$(dirname "$ROOT")"
    t=$(date +%s)
    "${NICE[@]}" debootstrap --arch arm64 --variant=minbase \
        --include=python3.11,python3.11-venv,python3-venv bookworm "$ROOT" "$MIRROR" \
        >"$ROOT.debootstrap.log" 2>&1 || { tail -20 "$ROOT.debootstrap.log"; die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
    echo "debootstrap: $(( $(date +%s) - t )) s (log: $ROOT.debootstrap.log)"
else
    echo "reusing it (--fresh makes it again)"
fi
chroot "$ROOT" /usr/bin/python3.11 -c 'import platform, sys; print("root:", platform.machine(), "Python", sys.version.split()[0], "glibc", platform.libc_ver()[1])'
[ "$(chroot "$ROOT" uname -m)" = aarch64 ] || die "uname -m in the root is not aarch64"

# ------------------------------------------------------------------ 3. the bundle
step "the aarch64 bundle"
OUT="$(mktemp -d /var/tmp/firegate-arm64-bundle.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
if [ -z "$BUNDLE" ]; then
    FG="$SRC/.venv/bin/firegate"
    [ -x "$FG" ] || die "$FG not found: set up the checkout first (bash scripts/test.sh --co -q, or see README)"
    t=$(date +%s)
    "${NICE[@]}" "$FG" bundle --arch aarch64 --out "$OUT" | tee "$OUT/made.txt"
    BUNDLE="$(ls "$OUT"/firegate-*-aarch64-py311.tar)"
    echo "made in $(( $(date +%s) - t )) s"
fi
[ -f "$BUNDLE" ] || die "bundle $BUNDLE not found"
NAME="$(basename "$BUNDLE" .tar)"

# a fresh gateway each run: nothing of an earlier install left in the root
rm -rf "$ROOT/opt/firegate" "$ROOT/etc/firegate" "$ROOT/var/lib/firegate" "$ROOT/root/usb" \
    "$ROOT/etc/systemd/system/firegate.service" "$ROOT/etc/udev/rules.d/99-firegate-serial.rules" \
    "$ROOT/usr/local/bin/firegate"
mkdir -p "$ROOT/root/usb"
cp "$BUNDLE" "$ROOT/root/usb/"
CLIP="$SRC/firmware_mocks/demo/clips/storeroom-fire.avi"   # see ATTRIBUTION.md beside it
cp "$CLIP" "$ROOT/root/usb/"
cat >"$ROOT/root/usb/camera-site.yaml" <<'EOF'
version: 1
site: {site_id: school-0421, gateway_id: gw-arm64, name: Riverside Primary School}
zones: [{id: storeroom}]
cameras:
  - {name: cam-storeroom, zone: storeroom, source: /root/usb/storeroom-fire.avi, resolution: [320, 240], detect_fps: 2}
uplink: {host: 192.0.2.1, port: 1883, keepalive_s: 5}
storage: {state_dir: /var/lib/firegate}
EOF

# ------------------------------------------------------------------ 4. offline, in the root
step "install and check inside unshare -n chroot $ROOT (emulated: slow)"
LOG="$OUT/chroot.log"
set +e
"${NICE[@]}" unshare -n -m -- chroot "$ROOT" /bin/bash -c "
set -u
mount -t proc proc /proc
trap 'umount /proc' EXIT
secs() { echo \"@@ time-\$1 \$(( \$(date +%s) - \$2 )) s\"; }
echo '-- network in the namespace (only a loopback, down):'; tail -n +3 /proc/net/dev
if python3 -c 'import socket; socket.create_connection((\"151.101.0.223\", 443), timeout=3)' 2>/dev/null; then
    echo '@@ NETWORK-REACHABLE'; exit 99
fi
echo '@@ no-network ok'
cd /root/usb && tar xf $NAME.tar
t=\$(date +%s); ./$NAME/install.sh --no-enable; echo \"@@ install rc=\$?\"; secs install \$t
fg=/opt/firegate/venv/bin/firegate
t=\$(date +%s); \$fg check-config /etc/firegate/site.yaml; echo \"@@ check-config rc=\$?\"; secs check-config \$t
t=\$(date +%s); \$fg doctor --config /etc/firegate/site.yaml --timeout-s 2; echo \"@@ doctor-example rc=\$?\"; secs doctor-example \$t
t=\$(date +%s); \$fg doctor --config /root/usb/camera-site.yaml --user root --timeout-s 2 --json >/root/usb/doctor.json; echo \"@@ doctor-camera rc=\$?\"; secs doctor-camera \$t
cat /root/usb/doctor.json
t=\$(date +%s); \$fg detect --fps 1 /root/usb/storeroom-fire.avi >/root/usb/detect.jsonl; echo \"@@ detect rc=\$?\"; secs detect \$t
cat /root/usb/detect.jsonl
" 2>&1 | tee "$LOG"
set -e

# ------------------------------------------------------------------ 5. what held
step "the same detect on this machine ($(uname -m))"
"$SRC/.venv/bin/firegate" detect --fps 1 "$ROOT/root/usb/storeroom-fire.avi" >"$OUT/detect-host.jsonl"
cat "$OUT/detect-host.jsonl"

step "verdict"
set +e
python3 - "$LOG" "$ROOT/root/usb/doctor.json" "$ROOT/root/usb/detect.jsonl" "$OUT/detect-host.jsonl" <<'EOF'
import json, sys
log, doctor, arm, host = (open(p).read() if p else "" for p in sys.argv[1:])
marks = {}
for line in log.splitlines():
    if line.startswith("@@ "):
        k, _, v = line[3:].partition(" ")
        marks[k] = v
ok = True
def expect(what, cond, got=""):
    global ok
    ok &= bool(cond)
    print(f"{'PASS' if cond else 'FAIL'}  {what}{'  (' + got + ')' if got else ''}")
expect("no network in the namespace", "no-network" in marks and "NETWORK-REACHABLE" not in marks)
expect("install.sh exit 0", marks.get("install") == "rc=0", marks.get("install", "not reached"))
expect("check-config exit 0 on the installed example", marks.get("check-config") == "rc=0", marks.get("check-config", ""))
expect("doctor ran on the installed example (exit 1: no hardware)", marks.get("doctor-example") == "rc=1", marks.get("doctor-example", ""))
by = {}
for line in doctor.splitlines():
    if line.startswith("{"):
        r = json.loads(line)
        by[r["check"]] = r
for name in ("config", "files", "camera cam-storeroom", "model firenet.onnx", "storage", "clock"):
    r = by.get(name, {})
    expect(f"doctor (camera site): {name} PASS", r.get("outcome") == "PASS", r.get("detail", "missing"))
b = by.get("broker", {})
expect("doctor (camera site): broker FAIL, unreachable", b.get("outcome") == "FAIL" and "unreachable" in b.get("detail", ""), b.get("detail", "missing"))
expect("detect exit 0", marks.get("detect") == "rc=0", marks.get("detect", ""))
a = [json.loads(l) for l in arm.splitlines() if l.startswith("{")]
h = [json.loads(l) for l in host.splitlines() if l.startswith("{")]
expect("detect: same frames analysed on arm64 and here", [x["frame"] for x in a] == [x["frame"] for x in h] and a, f"{len(a)} vs {len(h)}")
diff = max((abs(x[c] - y[c]) for x, y in zip(a, h) for c in ("fire", "smoke")), default=1.0)
expect("detect: fire and smoke scores within 0.01 of this machine's", diff <= 0.01, f"largest difference {diff:.4f}")
expect("detect: fire >= 0.5 in every frame of the fire clip on arm64", a and all(x["fire"] >= 0.5 for x in a), ", ".join(f"{x['fire']:.4f}" for x in a))
print("timings (emulated):", ", ".join(f"{k[5:]} {v}" for k, v in marks.items() if k.startswith("time-")))
sys.exit(0 if ok else 1)
EOF
rc=$?
echo "total $(( $(date +%s) - T0 )) s; the root stays in $ROOT (rm -rf it when done)"
exit $rc
