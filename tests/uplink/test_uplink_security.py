"""TLS with a test CA and client certificates, refused logins, unusable settings."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from agent.clock import SystemClock
from agent.events import DecisionType
from agent.outbox import Outbox
from agent.uplink import Uplink
from firmware_mocks.broker import free_port
from tests.uplink.uplink_support import (
    Broker,
    Collector,
    decision,
    make_password_file,
    make_pki,
    site,
    uplink_config,
)


async def run_for(up: Uplink, until: Any, timeout_s: float = 10.0) -> None:
    task = asyncio.create_task(up.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not until():
            assert asyncio.get_running_loop().time() < deadline, up.status()
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: dict[str, Path]) -> Any:
    b = Broker(
        tmp_path,
        free_port(),
        extra=(
            f"cafile {pki['ca_crt']}\ncertfile {pki['server_crt']}\n"
            f"keyfile {pki['server_key']}\nrequire_certificate true\n"
        ),
    )
    b.start()
    yield b
    b.stop()


async def test_mutual_tls_delivers(
    tmp_path: Path, pki: dict[str, Path], tls_broker: Broker
) -> None:
    ctx = ssl.create_default_context(cafile=str(pki["ca_crt"]))
    ctx.load_cert_chain(str(pki["client_crt"]), str(pki["client_key"]))
    c = Collector(tls_broker.port, kw={"tls_context": ctx})
    ctask = asyncio.create_task(c.run())
    await asyncio.wait_for(c.ready.wait(), 5)
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    tls = {"ca_file": pki["ca_crt"], "cert_file": pki["client_crt"], "key_file": pki["client_key"]}
    up = Uplink(
        uplink_config(tls_broker.port, host="localhost", tls=tls),
        site(),
        outbox,
        SystemClock(),
        "t",
    )
    d = decision(DecisionType.FIRE_ALARM, 1)
    await outbox.submit(d)
    # the PUBACKed row is deleted in the outbox's next group commit (~10 ms later)
    await run_for(
        up,
        lambda: any(x["id"] == d.id for x in c.decisions()) and outbox.status()["rows"] == 0,
    )
    assert outbox.status()["rows"] == 0
    ctask.cancel()
    await asyncio.gather(ctask, return_exceptions=True)
    await outbox.close()


async def test_untrusted_broker_certificate_is_a_health_fault(
    tmp_path: Path, pki: dict[str, Path], tls_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    tls = {"ca_file": pki["other-ca_crt"]}  # not the CA that signed the broker
    up = Uplink(
        uplink_config(tls_broker.port, host="localhost", tls=tls),
        site(),
        outbox,
        SystemClock(),
        "t",
    )
    d = decision(DecisionType.FIRE_ALARM, 1)
    await outbox.submit(d)
    with caplog.at_level(logging.ERROR, logger="agent.uplink"):
        await run_for(up, lambda: up.fault is not None and outbox.status()["rows"] >= 2)
    assert "TLS" in (up.status()["fault"] or "")
    assert any("TLS" in r.getMessage() and "ca_file" in r.getMessage() for r in caplog.records)
    await outbox.flush()
    ids = [p.id for p in await outbox.next_batch(10)]
    assert d.id in ids  # nothing dropped; plus the stored FAULT about the uplink
    types = [p.type for p in await outbox.next_batch(10)]
    assert types == ["fire_alarm", "fault"]
    await outbox.close()


async def test_wrong_password_is_a_health_fault_then_right_one_delivers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pw = make_password_file(tmp_path, "school-1", "right-password")
    b = Broker(tmp_path, free_port(), extra=f"password_file {pw}\n", anonymous=False)
    b.start()
    try:
        outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
        d = decision(DecisionType.FIRE_ALARM, 1)
        await outbox.submit(d)
        bad = Uplink(
            uplink_config(b.port, username="school-1", password="wrong"),
            site(),
            outbox,
            SystemClock(),
            "t",
        )
        with caplog.at_level(logging.ERROR, logger="agent.uplink"):
            await run_for(bad, lambda: bad.fault is not None and outbox.status()["rows"] >= 2)
        st = bad.status()
        assert "refused the login" in st["fault"] and st["connects"] == 0
        assert "wrong" not in st["fault"]  # never the secret
        assert not any("wrong" in r.getMessage() for r in caplog.records)
        refusals = [r for r in caplog.records if "refused the login" in r.getMessage()]
        assert len(refusals) == 1  # one clear line per episode, not one per retry

        secret = tmp_path / "mqtt-password"
        secret.write_text("right-password\n")
        c = Collector(b.port, kw={"username": "school-1", "password": "right-password"})
        ctask = asyncio.create_task(c.run())
        await asyncio.wait_for(c.ready.wait(), 5)
        good = Uplink(
            uplink_config(b.port, username="school-1", password_file=secret),
            site(),
            outbox,
            SystemClock(),
            "t",
        )
        await run_for(good, lambda: outbox.status()["rows"] == 0)
        await c.wait_for(lambda: len(c.decisions()) >= 2)
        got = c.decisions()
        assert got[0]["id"] == d.id  # the fire alarm first, then the login fault
        assert got[1]["type"] == "fault" and "refused the login" in got[1]["reason"]
        ctask.cancel()
        await asyncio.gather(ctask, return_exceptions=True)
        await outbox.close()
    finally:
        b.stop()


async def test_unreadable_password_file_is_a_clear_fault(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    up = Uplink(
        uplink_config(free_port(), username="u", password_file=tmp_path / "missing"),
        site(),
        outbox,
        SystemClock(),
        "t",
    )
    await run_for(up, lambda: up.fault is not None)
    assert "password_file" in (up.fault or "") and "missing" in (up.fault or "")
    await outbox.close()


async def test_broker_refusing_client_certificate_is_a_tls_fault(
    tmp_path: Path, pki: dict[str, Path], tls_broker: Broker
) -> None:
    """TLS 1.3: the broker rejects a missing client certificate after the handshake."""
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    up = Uplink(
        uplink_config(
            tls_broker.port, host="localhost", tls={"ca_file": pki["ca_crt"]}, publish_timeout_s=1.0
        ),
        site(),
        outbox,
        SystemClock(),
        "t",
    )
    await run_for(up, lambda: up.fault is not None)
    assert "TLS" in (up.fault or "") and "certificate" in (up.fault or "").lower()
    await outbox.close()


class StepClock:
    """A clock whose sleeps pass instantly but are recorded (and advance time)."""

    speed = 1.0

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_790_000_000.0 + self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


async def test_reconnect_backoff_grows_with_jitter_to_the_max(tmp_path: Path) -> None:
    clock = StepClock()
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    cfg = uplink_config(
        free_port(), reconnect_min_s=1.0, reconnect_window_s=2.0, reconnect_max_s=8.0
    )
    up = Uplink(cfg, site(), outbox, clock, "t")
    task = asyncio.create_task(up.run())
    waits: list[float] = []
    try:
        for _ in range(500):
            await asyncio.sleep(0.01)
            if sum(clock.sleeps) > 60:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
    # rebuild each backoff from its <= 2 s chunks (IDLE_WAKE_S keeps progress moving)
    acc = 0.0
    for s in clock.sleeps:
        acc += s
        if s < 2.0 - 1e-9:
            waits.append(acc)
            acc = 0.0
    assert len(waits) >= 6, waits
    for n, w in enumerate(waits[:6]):
        window = min(8.0, 2.0 * 2**n)  # full jitter: reconnect_min_s .. the window
        assert 1.0 - 1e-6 <= w <= window + 1e-6, (n, w)
    assert len({round(w, 6) for w in waits[3:]}) > 1  # jittered, not in step
    assert up.status()["state"] in ("backoff", "connecting", "stopped")
