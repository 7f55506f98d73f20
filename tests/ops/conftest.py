"""Fixtures of the ops tests: a notification socket standing in for systemd, a mosquitto."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_mocks.broker import BrokerError, Mosquitto, find_mosquitto

MOSQUITTO = find_mosquitto() or "/usr/sbin/mosquitto"


class NotifySocket:
    """A datagram socket where systemd would be: collects what the agent sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        new = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            new.append(dict(line.split("=", 1) for line in data.decode().split("\n")))
        self.messages.extend(new)
        return new

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


@dataclass
class Broker:
    port: int
    username: str
    password: str


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Our own mosquitto on a free port, with one user and no anonymous access."""
    if not os.path.exists(MOSQUITTO) or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto is not installed")
    d = tmp_path_factory.mktemp("mosquitto")
    pw = d / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw", "s3cret"], check=True)
    pw.chmod(0o600)
    broker = Mosquitto(d, anonymous=False, config=f"password_file {pw}\n")
    try:
        broker.start()
    except BrokerError as e:
        pytest.fail(str(e))
    try:
        yield Broker(broker.port, "gw", "s3cret")
    finally:
        broker.stop()


@dataclass
class TlsBroker:
    port: int
    ca_file: Path  # the CA that signed the broker's certificate
    other_ca_file: Path  # a CA that did not


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def mosquitto_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A mosquitto with a TLS listener (certificate for 127.0.0.1 from a throwaway CA)."""
    if not os.path.exists(MOSQUITTO) or shutil.which("openssl") is None:
        pytest.skip("mosquitto or openssl is not installed")
    d = tmp_path_factory.mktemp("mosquitto-tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-subj",
            f"/CN=firegate test {ca}",
            "-days",
            "2",
            cwd=d,
        )
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    broker = Mosquitto(
        d,
        config=f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n",
    )
    try:
        broker.start()
    except BrokerError as e:
        pytest.fail(f"mosquitto (TLS): {e}")
    try:
        yield TlsBroker(broker.port, d / "ca.crt", d / "other-ca.crt")
    finally:
        broker.stop()
