"""The unit, the udev rule and install.sh, checked with the real tools."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "firegate.service"
RULES = ROOT / "systemd" / "99-firegate-serial.rules"
INSTALL = ROOT / "systemd" / "install.sh"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
EXPOSURE_MAX = 2.0  # "OK" band of systemd-analyze security is < 4; docs/operations.md quotes it

needs_analyze = pytest.mark.skipif(
    not os.path.exists(ANALYZE), reason="systemd-analyze not installed"
)


def unit_with_exec(tmp_path: Path, exec_path: str) -> Path:
    """The unit with ExecStart pointing at a program that exists on this machine
    (verify checks that it is executable; /opt/firegate is not installed here)."""
    text = UNIT.read_text().replace("/opt/firegate/venv/bin/firegate", exec_path)
    out = tmp_path / "firegate.service"
    out.write_text(text)
    return out


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=30
    )


@needs_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    r = verify(unit_with_exec(tmp_path, "/bin/true"))
    # verify exits 0 even on unknown keys; any message at all is a problem
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


@needs_analyze
def test_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    unit = unit_with_exec(tmp_path, "/bin/true")
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    assert "Unknown key 'ProtectSytem'" in verify(unit).stderr


def test_unit_has_what_the_gateway_needs() -> None:
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    one = {k: v[-1] for k, v in keys.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["Restart"] == "on-failure"
    assert one["StateDirectory"] == "firegate" and one["ConfigurationDirectory"] == "firegate"
    assert one["NoNewPrivileges"] == "yes" and one["ProtectSystem"] == "strict"
    assert one["PrivateTmp"] == "yes" and one["DevicePolicy"] == "closed"
    assert "dialout" in one["SupplementaryGroups"].split()
    assert {"char-ttyUSB rw", "char-ttyACM rw", "char-video4linux rw"} <= set(keys["DeviceAllow"])
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # the watchdog must outlast the health part's feeding interval by far
    assert int(one["WatchdogSec"].rstrip("s")) >= 10
    assert "MemoryMax" in one and "CPUQuota" in one


@needs_analyze
def test_security_exposure(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            ANALYZE,
            "security",
            "--offline=yes",
            "--no-pager",
            str(unit_with_exec(tmp_path, "/bin/true")),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    m = re.search(r"Overall exposure level for firegate.service: ([0-9.]+)", r.stdout)
    if m is None:
        pytest.skip(f"systemd-analyze security --offline gave no score here: {r.stderr.strip()}")
    score = float(m.group(1))
    print(f"systemd-analyze security exposure: {score}")
    assert score <= EXPOSURE_MAX, r.stdout


def test_udev_rule_syntax() -> None:
    """udevadm is not installed here (no `udevadm verify` in systemd 252 anyway), so
    this is a lint: every rule line is KEY<op>"value" pairs with known keys."""
    known = {
        "ACTION",
        "SUBSYSTEM",
        "KERNEL",
        "GROUP",
        "MODE",
        "SYMLINK",
        "GOTO",
        "LABEL",
        "ENV",
        "ATTRS",
        "SUBSYSTEMS",
    }
    pair = re.compile(r'^\s*([A-Z]+)(\{[A-Za-z_]+\})?\s*(==|!=|\+=|=|:=)\s*"([^"]*)"\s*$')
    labels, gotos = set(), set()
    for n, line in enumerate(RULES.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for part in line.split(","):
            m = pair.match(part)
            assert m, f"line {n}: cannot parse {part!r}"
            key, _, op, value = m.groups()
            assert key in known, f"line {n}: unknown key {key}"
            if key == "LABEL":
                labels.add(value)
            if key == "GOTO":
                gotos.add(value)
            if key in ("GROUP", "MODE", "SYMLINK", "GOTO", "LABEL"):
                assert op in ("=", "+=", ":="), f"line {n}: {key} is assigned, not matched"
    assert gotos <= labels, "every GOTO needs its LABEL"


# ---------------------------------------------------------------------- install.sh


def tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if "venv" in p.relative_to(root).parts:
            continue  # its .pyc files and RECORD differ from run to run
        rel = str(p.relative_to(root))
        st = p.lstat()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = f"{st.st_mode:o}:" + hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = f"{st.st_mode:o}"
    return out


def run_install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=120
    )


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    r = run_install("--prefix", str(prefix), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would run: install -m 0644" in r.stdout and "firegate.service" in r.stdout
    assert "would be made" in r.stdout
    assert not prefix.exists()


def test_refuses_a_real_install_without_root_or_prefix(tmp_path: Path) -> None:
    r = run_install("--source", str(tmp_path))
    assert r.returncode == 2 and "not a firegate source tree" in r.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A firegate wheel, as CI would build it (offline, with the test venv's setuptools)."""
    out = tmp_path_factory.mktemp("wheel")
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr[-300:]}")
    [whl] = out.glob("firegate-*.whl")
    return whl


@pytest.mark.slow
def test_prefix_install_twice_is_idempotent(tmp_path: Path, wheel: Path) -> None:
    prefix = tmp_path / "root"
    py = shutil.which("python3")
    assert py
    args = (
        "--prefix",
        str(prefix),
        "--python",
        py,
        "--wheel",
        str(wheel),
        "--pip-args",
        "--no-deps",
    )
    first = run_install(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    snap = tree_digest(prefix)
    assert "etc/firegate/site.yaml" in snap and "var/lib/firegate" in snap
    assert snap["etc/firegate"] == "40750" and snap["var/lib/firegate"] == "40750"
    assert (prefix / "opt/firegate/venv/bin/firegate").exists()

    second = run_install(*args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing changed" in second.stdout
    assert tree_digest(prefix) == snap

    # the installed command runs, and the installed unit verifies with its real ExecStart
    # (dependencies were not installed, --no-deps: borrow the test venv's for this one call)
    import sysconfig

    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    r = subprocess.run(
        [str(prefix / "usr/local/bin/firegate"), "--version"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0 and "firegate" in r.stdout
    unit = prefix / "etc/systemd/system/firegate.service"
    assert (
        f"ExecStart={prefix}/opt/firegate/venv/bin/firegate run --config {prefix}/etc/firegate/site.yaml"
        in unit.read_text()
    )
    if os.path.exists(ANALYZE):
        v = verify(unit)
        assert v.returncode == 0 and v.stderr.strip() == "", v.stderr

    # an edited site config survives a re-install
    site = prefix / "etc/firegate/site.yaml"
    site.write_text(site.read_text() + "# edited on site\n")
    third = run_install(*args)
    assert third.returncode == 0 and site.read_text().endswith("# edited on site\n")


def test_new_venv_is_reported_as_without_firegate_from_a_checkout(tmp_path: Path) -> None:
    """install.sh is run from a checkout, where a firegate.egg-info lies (an editable
    install): a new venv must not be reported as already holding that version."""
    import sys

    prefix = tmp_path / "root"
    venv = prefix / "opt" / "firegate" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    checkout = tmp_path / "checkout"
    (checkout / "firegate.egg-info").mkdir(parents=True)
    (checkout / "firegate.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: firegate\nVersion: 9.9.9\n"
    )
    r = subprocess.run(
        ["bash", str(INSTALL), "--prefix", str(prefix), "--dry-run"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "venv: firegate not installed, source" in r.stdout, r.stdout
    assert "9.9.9" not in r.stdout
