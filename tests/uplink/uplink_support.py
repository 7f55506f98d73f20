"""Helpers for the uplink tests: a real mosquitto, a collecting subscriber, test decisions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from agent.events import Decision, DecisionType
from agent.mqtt import reraise_if_cancelled
from agent.siteconfig.models import SiteConfig, SiteInfo, UplinkConfig, ZoneConfig
from firmware_mocks.broker import Mosquitto


class Broker(Mosquitto):
    """A mosquitto with persistence (sessions survive a stop/start on the same port)
    and no queue limits, so an outage test measures the gateway, not the broker."""

    def __init__(self, folder: Path, port: int, extra: str = "", anonymous: bool = True) -> None:
        super().__init__(
            folder,
            port=port,
            anonymous=anonymous,
            persistence=True,
            config="max_queued_messages 100000\nmax_inflight_messages 0\n" + extra,
        )


@contextlib.asynccontextmanager
async def loop_gaps(period_s: float = 0.001) -> AsyncIterator[list[float]]:
    """Measure how long the event loop is blocked: a ticker sleeping ``period_s``
    records every gap between its wake-ups into the yielded list."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(period_s)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        yield gaps
    finally:
        stop.set()
        await task


@dataclass
class Got:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Collector:
    """A subscriber with a persistent session: it misses nothing across broker restarts."""

    port: int
    topic: str = "firegate/#"
    messages: list[Got] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    client_id: str = field(default_factory=lambda: f"test-sub-{uuid.uuid4().hex[:8]}")
    kw: dict[str, Any] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier=self.client_id,
                    clean_session=False,
                    **self.kw,
                ) as c:
                    await c.subscribe(self.topic, qos=1)
                    self.ready.set()
                    async for m in c.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else b""
                        self.messages.append(Got(str(m.topic), payload, m.retain))
            except aiomqtt.MqttError:
                reraise_if_cancelled()
                await asyncio.sleep(0.05)

    def decisions(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.messages if "/decision/" in m.topic]

    async def wait_for(self, pred: Any, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {len(self.messages)} message(s)")
            await asyncio.sleep(0.02)


def site() -> SiteConfig:
    return SiteConfig(
        site=SiteInfo(site_id="school-1", gateway_id="gw1"), zones=(ZoneConfig(id="z1"),)
    )


def uplink_config(port: int, **kw: Any) -> UplinkConfig:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "publish_timeout_s": 2.0,
        "heartbeat_s": 5.0,
    }
    base.update(kw)
    return UplinkConfig(**base)


T0 = 1_790_000_000.0  # a fixed wall time, so "original times" are checkable


def decision(type_: DecisionType, n: int, *, snapshot: bytes | None = None) -> Decision:
    """The n-th decision of a test, with times fixed by n."""
    return Decision(
        type=type_,
        zone="z1",
        reason=f"test decision {n}",
        first_seen_wall=T0 + n,
        first_seen_mono=1000.0 + n,
        wall=T0 + n + 0.5,
        mono=1000.5 + n,
        devices=(f"det-{n}",),
        details={"n": n},
        snapshot_jpeg=snapshot,
    )


SCHEMA_PATH = Path(__file__).resolve().parents[2] / "agent" / "schemas" / "decision.schema.json"


def validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def env_with_root() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spawn_python(code: str) -> subprocess.Popen[bytes]:
    """Run ``code`` in a fresh interpreter at the repo root (stdin/stdout piped)."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=root,
        env=env_with_root(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def make_pki(folder: Path) -> dict[str, Path]:
    """A test CA, a broker certificate for localhost/127.0.0.1, a client certificate,
    and a second, unrelated CA (for the TLS failure test), via the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        run(
            "req",
            "-x509",
            *key,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN=firegate test {ca}",
        )
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            *ext,
        )
    return {p.stem.replace(".", "_") + "_" + p.suffix[1:]: p for p in folder.iterdir()}


def make_password_file(folder: Path, user: str, password: str) -> Path:
    path = folder / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(path), user, password], check=True, capture_output=True
    )
    return path


async def until(pred: Any, what: str, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
