"""scripts/_venv.sh (what `bash scripts/demo.sh` and `scripts/test.sh` run first):
a set-up interrupted half-way is repaired by the next run, never left broken.

Runs the real script on a tiny project (so that pip has little to install)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = shutil.which("python3") or sys.executable

pytestmark = pytest.mark.skipif(
    subprocess.run([PYTHON, "-c", "import venv, ensurepip"], capture_output=True).returncode != 0,
    reason="python3-venv not installed",
)


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_venv.sh", root / "scripts" / "_venv.sh")
    (root / "fgtiny.py").write_text("WORKS = True\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "fgtiny"\nversion = "0.0.1"\n'
        '[tool.setuptools]\npy-modules = ["fgtiny"]\n'
    )
    return root


def _setup(root: Path, venv: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": PYTHON}
    env.pop("VIRTUAL_ENV", None)
    if venv is not None:
        env["FIREGATE_VENV"] = str(venv)
    return subprocess.run(
        [
            "bash",
            "-c",
            'source scripts/_venv.sh "" && python -c "import fgtiny; print(fgtiny.WORKS)"',
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_venv_left_without_pip_is_rebuilt(tmp_path: Path) -> None:
    """Ctrl-C during the first set-up leaves .venv with a python but no pip."""
    root = _project(tmp_path)
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    broken = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-m", "pip", "--version"], capture_output=True
    )
    assert broken.returncode != 0  # the state the issue saw: "No module named pip"
    r = _setup(root)
    assert r.returncode == 0, r.stderr
    assert "incomplete" in r.stderr and "rebuilding" in r.stderr
    assert r.stdout.strip() == "True"
    assert "source " in r.stderr and "/bin/activate" in r.stderr  # how to get `firegate` on PATH
    again = _setup(root)  # and once repaired, nothing is redone
    assert again.returncode == 0 and "rebuilding" not in again.stderr
    assert "Creating" not in again.stderr


def test_a_folder_that_is_not_a_venv_is_not_deleted(tmp_path: Path) -> None:
    root = _project(tmp_path)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    r = _setup(root, venv=other)
    assert r.returncode == 1
    assert "not a working virtual environment" in r.stderr
    assert (other / "notes.txt").read_text() == "keep me"
