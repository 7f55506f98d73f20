"""`firegate bundle --arch x86_64|aarch64 --out DIR`: one offline install file.

Makes ``DIR/firegate-<version>-<arch>-py<XY>.tar``, the file an installer copies to
a USB stick for a school with no internet. Inside, under one folder of the same
name:

* ``install.sh``: systemd/install-bundle.sh (manifest check, install, upgrade with
  rollback; see that file);
* ``wheels/``: firegate itself as a wheel and every dependency as a binary wheel
  for that architecture and Python (``pip download --only-binary=:all:
  --platform ...``): nothing is built or downloaded on the gateway;
* ``source/``: systemd/install.sh, the unit, the udev rule, the example site
  config, the device profiles, the detector model and the installer docs (the
  profiles and the model also travel inside the firegate wheel, which is what
  runs; these copies are for the installer to read);
* ``bundle.json`` (version, arch, Python, wheel list) and ``MANIFEST.sha256``
  (``sha256sum --check`` format) over every other file.

Dependencies are pinned to the versions installed where the bundle is made
(the set that was tested) unless ``--no-pin``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from agent import __version__

ARCHES = ("x86_64", "aarch64")
# manylinux_2_28: glibc 2.28 or newer (Debian 10+, Ubuntu 20.04+, Raspberry Pi OS 11+);
# older manylinux tags are listed too, pip takes the newest wheel any of them fits.
PLATFORMS = ("manylinux_2_28_{arch}", "manylinux_2_17_{arch}", "manylinux2014_{arch}")
MANIFEST = "MANIFEST.sha256"
SOURCE_FILES = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "systemd/install.sh",
    "systemd/firegate.service",
    "systemd/99-firegate-serial.rules",
    "config/example-site.yaml",
    "config/profiles/*.yaml",
    "vision/models/*",
    "docs/installer.md",
    "docs/operations.md",
    "docs/fleet.md",
)


class BundleError(Exception):
    """The bundle cannot be made; the message says why and what to do."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bundle",
        help="make an offline install file (USB stick) for one gateway architecture",
        description="Make one .tar with firegate, every dependency as a binary wheel for "
        "ARCH and Python, install.sh, the unit, the udev rule, the profiles and the model, "
        "with a sha256 manifest. Needs PyPI (or a mirror) where it runs; the gateway needs "
        "no network.",
    )
    p.add_argument("--arch", required=True, choices=ARCHES, help="the gateway's CPU (uname -m)")
    p.add_argument("--out", required=True, type=Path, help="folder for the .tar")
    p.add_argument(
        "--python-version",
        default="3.11",
        help="the gateway's Python, major.minor (default: 3.11, Debian 12)",
    )
    p.add_argument(
        "--source", type=Path, default=None, help="firegate checkout (default: this one)"
    )
    p.add_argument(
        "--wheel", type=Path, default=None, help="firegate wheel built by CI (default: build one)"
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="take the newest allowed dependencies instead of the versions installed here",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        tar = make_bundle(
            arch=args.arch,
            out=args.out,
            python_version=args.python_version,
            source=args.source,
            wheel=args.wheel,
            pin=not args.no_pin,
            progress=lambda m: print(m, file=sys.stderr),
        )
    except BundleError as e:
        print(f"firegate bundle: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # writing the bundle: full disk, no permission
        print(
            f"firegate bundle: {e.filename or args.out}: {e.strerror or e} "
            "(the bundle needs ~250 MB free in --out while it is made)",
            file=sys.stderr,
        )
        return 1
    print(f"{tar}  sha256 {sha256_file(tar)}  {tar.stat().st_size / 1e6:.0f} MB")
    print(f"on the gateway: tar xf {tar.name} && sudo ./{tar.name.removesuffix('.tar')}/install.sh")
    return 0


# ------------------------------------------------------------------ manifest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(root: Path) -> Path:
    """MANIFEST.sha256 over every file under ``root`` (sha256sum format, sorted)."""
    lines = [
        f"{sha256_file(p)}  {p.relative_to(root).as_posix()}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    ]
    out = root / MANIFEST
    out.write_text("\n".join(lines) + "\n")
    return out


def check_manifest(root: Path) -> list[str]:
    """What differs from MANIFEST.sha256 (empty: the bundle is whole)."""
    listed: dict[str, str] = {}
    for line in (root / MANIFEST).read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    problems = []
    for name, digest in listed.items():
        p = root / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(p) != digest:
            problems.append(f"{name}: checksum differs")
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and p.name != MANIFEST and rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems


# ------------------------------------------------------------------ making it


def default_source() -> Path:
    return Path(__file__).resolve().parents[2]


def _check_source(source: Path) -> None:
    if not (source / "pyproject.toml").is_file() or not (source / "systemd").is_dir():
        raise BundleError(
            f"{source} is not a firegate checkout (no pyproject.toml / systemd/): give --source"
        )


def _run(cmd: list[str], what: str, timeout_s: float = 900) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BundleError(f"{what}: no answer after {timeout_s:g} s (is PyPI reachable?)") from None
    if r.returncode != 0:
        tail = "\n".join(
            line for line in (r.stderr or r.stdout).splitlines() if "is ignored" not in line
        )[-1500:]
        raise BundleError(f"{what} failed:\n{tail}")


def build_wheel(source: Path, dest: Path) -> Path:
    """Build the firegate wheel from ``source`` (offline when setuptools is installed here)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest)]
    try:
        importlib.metadata.version("setuptools")
        importlib.metadata.version("wheel")
        cmd.append("--no-build-isolation")
    except importlib.metadata.PackageNotFoundError:
        pass
    _run([*cmd, str(source)], "building the firegate wheel")
    found = sorted(dest.glob("firegate-*.whl"))
    if not found:
        raise BundleError(f"building the firegate wheel left no firegate-*.whl in {dest}")
    return found[-1]


def installed_pins(exclude: Iterable[str] = ("firegate",)) -> list[str]:
    """``name==version`` of every distribution installed here (the tested set)."""
    skip = {e.lower() for e in exclude}
    pins = set()
    for d in importlib.metadata.distributions():
        name = d.metadata["Name"]
        if name and name.lower() not in skip:
            pins.add(f"{name}=={d.version}")
    return sorted(pins)


def download_wheels(
    wheel: Path, arch: str, python_version: str, dest: Path, constraints: Path | None
) -> None:
    """Every dependency of ``wheel`` as a binary wheel for ``arch`` and Python."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "-d",
        str(dest),
    ]
    for p in PLATFORMS:
        cmd += ["--platform", p.format(arch=arch)]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    _run(
        [*cmd, str(wheel)],
        f"downloading the {arch} wheels for Python {python_version}"
        + (
            " (pinned to the versions installed here; --no-pin takes the newest)"
            if constraints
            else ""
        ),
    )


def _copy_sources(source: Path, dest: Path) -> None:
    for pattern in SOURCE_FILES:
        for src in sorted(source.glob(pattern)):
            if src.is_file():
                target = dest / src.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
    for must in ("pyproject.toml", "systemd/install.sh", "systemd/firegate.service"):
        if not (dest / must).is_file():
            raise BundleError(f"{source / must} is missing: the bundle cannot install without it")


def _wheel_version(wheel: Path) -> str:
    parts = wheel.name.split("-")
    if len(parts) < 5 or parts[0] != "firegate":
        raise BundleError(f"{wheel} is not a firegate wheel (firegate-VERSION-...whl)")
    return parts[1]


def make_bundle(
    *,
    arch: str,
    out: Path,
    python_version: str = "3.11",
    source: Path | None = None,
    wheel: Path | None = None,
    pin: bool = True,
    progress: object = None,
) -> Path:
    """Make the bundle .tar in ``out`` and return its path. Raises BundleError."""
    if arch not in ARCHES:
        raise BundleError(f"--arch {arch!r}: one of {', '.join(ARCHES)}")
    major, _, minor = python_version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise BundleError(f"--python-version {python_version!r}: give major.minor, e.g. 3.11")
    say = progress if callable(progress) else (lambda _m: None)
    source = (source or default_source()).resolve()
    _check_source(source)
    if wheel is not None and not wheel.is_file():
        raise BundleError(f"--wheel {wheel}: file not found")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BundleError(f"--out {out}: cannot create it ({e.strerror or e})") from None
    with tempfile.TemporaryDirectory(prefix="firegate-bundle-", dir=out) as tmp:
        work = Path(tmp)
        if wheel is None:
            say("building the firegate wheel ...")
            wheel = build_wheel(source, work / "build")
        version = _wheel_version(wheel)
        name = f"firegate-{version}-{arch}-py{major}{minor}"
        root = work / name
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        constraints = None
        if pin:
            constraints = work / "constraints.txt"
            constraints.write_text("\n".join(installed_pins()) + "\n")
        say(f"downloading wheels for {arch}, Python {python_version} ...")
        download_wheels(wheel, arch, python_version, wheels, constraints)
        shutil.copy2(wheel, wheels / wheel.name)  # a locally built wheel is not copied by pip
        _copy_sources(source, root / "source")
        installer = source / "systemd" / "install-bundle.sh"
        if not installer.is_file():
            raise BundleError(f"{installer} is missing")
        shutil.copy2(installer, root / "install.sh")
        os.chmod(root / "install.sh", 0o755)
        files = sorted(p.name for p in wheels.glob("*.whl"))
        (root / "bundle.json").write_text(
            json.dumps(
                {
                    "version": version,
                    "arch": arch,
                    "python": f"{major}.{minor}",
                    "platforms": [p.format(arch=arch) for p in PLATFORMS],
                    "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "made_by": f"firegate {__version__}",
                    "pinned": pin,
                    "wheels": files,
                },
                indent=2,
            )
            + "\n"
        )
        write_manifest(root)
        tar = out / f"{name}.tar"
        part = out / f"{name}.tar.part"
        # wheels are compressed already: a plain tar, written whole before it gets its name
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as t:
            t.add(root, arcname=name)
        part.replace(tar)
    say(f"{len(files)} wheels, firegate {version}")
    return tar
