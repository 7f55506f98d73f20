from __future__ import annotations

import os
import socket
import uuid

from agent.notify import Notifier


def test_no_op_outside_systemd() -> None:
    n = Notifier(env={})
    assert not n.enabled
    assert n.ready("x") is False
    assert n.watchdog() is False
    assert n.watchdog_interval_s is None


def test_messages_reach_the_socket(notify_socket) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": str(notify_socket.path)})
    assert n.enabled
    assert n.ready("4/4 parts running")
    assert n.status("two\nlines\tand  spaces")
    assert n.watchdog()
    assert n.stopping()
    got = notify_socket.drain()
    assert got == [
        {"READY": "1", "STATUS": "4/4 parts running"},
        # a newline would have started a new assignment: it is folded into one line
        {"STATUS": "two lines and spaces"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1"},
    ]
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"firegate-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(1)
        n = Notifier(env={"NOTIFY_SOCKET": "@" + name})
        assert n.watchdog()
        assert s.recv(100) == b"WATCHDOG=1"
        n.close()


def test_missing_socket_does_not_raise(tmp_path) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.watchdog() is False
    assert n.watchdog() is False  # second failure is quiet, still no exception


def test_watchdog_interval_and_pid() -> None:
    me = str(os.getpid())
    assert Notifier(env={"WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 30.0
    assert (
        Notifier(env={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}).watchdog_interval_s == 30.0
    )
    # the watchdog belongs to another process (we are a child that inherited the env)
    assert (
        Notifier(env={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    )
    assert Notifier(env={"WATCHDOG_USEC": "soon"}).watchdog_interval_s is None
    assert Notifier(env={"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
