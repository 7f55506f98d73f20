"""What a person sees from the `firegate` command itself: no Python noise.

Each test runs the real command as a process where the behaviour depends on
the process (pipes, signals, start-up).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent import cli

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _firegate(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,  # type: ignore[call-overload]
    )


def test_firegate_alone_lists_the_commands() -> None:
    r = _firegate()
    assert r.returncode == 2
    for name in cli.COMMANDS:
        assert f"\n    {name}" in r.stdout, r.stdout
    assert "COMMAND --help" in r.stdout
    assert "required" not in r.stderr  # not argparse's "the following arguments are required"


def test_help_of_the_command_table_is_what_each_command_registers() -> None:
    """--help lists the commands from cli.COMMANDS without importing them: it must not drift."""
    full = cli.build_parser(None)
    sub = next(a for a in full._actions if a.dest == "command")
    registered = {c.dest: c.help for c in sub._choices_actions}  # type: ignore[attr-defined]
    assert registered == {name: help_ for name, (_, help_) in cli.COMMANDS.items()}


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys; from agent.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.startswith(('agent.commands.', 'agent.siteconfig', "
        "'pydantic', 'cv2', 'onnxruntime', 'importlib.metadata'))]\n"
        "print('HEAVY', heavy)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def _status_file(state: Path, devices: int = 400) -> None:
    """A running agent's status file, long enough to fill a pipe."""
    state.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": 1,
        "version": "test",
        "pid": os.getpid(),
        "written_wall": time.time() + 3600,  # fresh for the whole test
        "interval_s": 5,
        "healthy": True,
        "parts": {"bus": {"running": True}},
        "devices": {
            f"detector-{i:03d}": {"state": "online", "polls_ok": i} for i in range(devices)
        },
    }
    (state / "status.json").write_text(json.dumps(doc))


def test_status_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """`firegate status | head -1`: the reader goes away; no "internal error"."""
    _status_file(tmp_path)
    r = subprocess.run(
        f"{sys.executable} -m agent status --state-dir {tmp_path} | head -1",
        shell=True,
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout.startswith("firegate test:")
    assert r.stderr == "", r.stderr
    # and deterministically: the pipe is closed before status writes anything
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "status", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "internal error" not in err and "BrokenPipeError" not in err and "Traceback" not in err
    assert err == "", err
    assert proc.returncode == cli.EXIT_BROKEN_PIPE


@pytest.mark.parametrize("delay_s", [0.1, 0.2, 0.3, 0.45, 0.6])
def test_ctrl_c_while_run_starts_is_quiet(tmp_path: Path, delay_s: float) -> None:
    """Ctrl-C in the first half second of `run` (still loading): no traceback.

    The delay counts from the moment the interpreter has started and hands over
    to firegate's code (a byte on a pipe, then `python -m agent` as runpy does
    it): a Ctrl-C during the interpreter's own start-up (site, the venv's path
    hooks), before any of firegate's code runs, gets Python's own traceback,
    which no program can prevent. On a loaded machine that start-up alone can
    take longer than 0.1 s, which made this test flaky when the delay counted
    from the fork."""
    config = tmp_path / "site.yaml"
    config.write_text(
        "site: {site_id: s, gateway_id: g}\nzones: [{id: hall}]\n"
        f"storage: {{state_dir: {tmp_path}/state}}\n"
    )
    ready_r, ready_w = os.pipe()
    # a test process may ignore SIGINT (pytest-xdist's workers do), and an
    # ignored signal stays ignored in a child: the child takes Ctrl-C as a
    # terminal's process would
    launch = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"import os, runpy, sys; os.write({ready_w}, b'x'); os.close({ready_w}); "
        f"sys.argv = ['agent', 'run', '--config', {str(config)!r}]; "
        "runpy.run_module('agent', run_name='__main__', alter_sys=True)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launch],
        cwd=ROOT,
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(ready_w,),
    )
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"x", "the interpreter did not start"
    finally:
        os.close(ready_r)
    try:
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=30)[1]
    except BaseException:
        proc.kill()  # a child that did not stop on Ctrl-C outlives no test
        proc.communicate()
        raise
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # 0: stopped cleanly; 130 or -SIGINT: ended by Ctrl-C (a shell shows 130 for both)
    assert proc.returncode in (0, cli.EXIT_INTERRUPTED, -signal.SIGINT), err


def test_first_start_without_state_folder_is_quiet(tmp_path: Path) -> None:
    """The state folder does not exist yet (a first start): no warning about it."""
    config = tmp_path / "site.yaml"
    state = tmp_path / "var" / "lib" / "firegate"
    config.write_text(
        "site: {site_id: s, gateway_id: g}\nzones: [{id: hall}]\n"
        f"storage: {{state_dir: {state}}}\nhealth: {{status_interval_s: 1}}\n"
    )
    r = _firegate("run", "--config", str(config), "--exit-after", "3")
    assert r.returncode == 0, r.stderr
    assert "WARNING" not in r.stderr and "ERROR" not in r.stderr, r.stderr
    assert "FileNotFoundError" not in r.stderr and "No such file" not in r.stderr
    assert (state / "status.json").is_file()


def test_doctor_prints_each_line_as_its_check_ends(tmp_path: Path) -> None:
    """A broker that accepts and never answers makes the broker check slow: the
    lines of the checks before it must be on the screen meanwhile."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(silent.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    config = tmp_path / "site.yaml"
    config.write_text(
        "site: {site_id: s, gateway_id: g}\nzones: [{id: hall}]\n"
        f"storage: {{state_dir: {tmp_path}}}\n"
        f"uplink: {{host: 127.0.0.1, port: {silent.getsockname()[1]}}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "doctor", "--config", str(config), "--timeout-s", "4"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        seen: list[tuple[float, str]] = []
        for line in proc.stdout:
            seen.append((time.monotonic(), line))
        end = time.monotonic()
        proc.wait(timeout=30)
    finally:
        silent.close()
        for s in held:
            s.close()
        if proc.poll() is None:
            proc.kill()
    config_line = next(t for t, line in seen if "  config " in line)
    assert end - config_line > 3.0, "the config line came only at the end"
    assert seen[-1][1].strip().endswith("skipped")  # the counts, last
