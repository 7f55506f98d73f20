"""A publish the broker refuses (MQTT 5 PUBACK 0x87 by its ACL) is never counted as delivered.

Real mosquitto with a password file and an ACL file; the centre fixes the ACL
by rewriting the file and sending SIGHUP, as an operator would. These tests
also guard agent/mqtt.py's hook into aiomqtt: if a new aiomqtt changes what
it relies on, a publish either never completes or no longer raises here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest

from agent.app import Agent
from agent.clock import SystemClock
from agent.events import DecisionType
from agent.health import METRICS
from agent.mqtt import AckedClient, PublishRefused, session_options
from agent.outbox import Outbox
from agent.uplink import Uplink
from firmware_mocks.broker import free_port
from tests.uplink.scripted_broker import ScriptedBroker
from tests.uplink.uplink_support import Broker, Collector, decision, site, until, uplink_config

ROOT = "firegate/school-1/gw1"
GATEWAY = ("gw", "gw-secret")
CENTRE = ("centre", "centre-secret")


class AclBroker(Broker):
    """Mosquitto with two users: the gateway (``gw``), limited by ``deny``, and the
    centre (reads everything). ``set_acl`` changes the gateway's rights live."""

    def __init__(self, folder: Path, deny: tuple[str, ...]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        pw = folder / "passwd"
        for i, (user, secret) in enumerate((GATEWAY, CENTRE)):
            create = ["-c"] if i == 0 else []
            subprocess.run(
                ["mosquitto_passwd", "-b", *create, str(pw), user, secret],
                check=True,
                capture_output=True,
            )
        self.acl = folder / "acl"
        self._write_acl(deny)
        super().__init__(
            folder,
            free_port(),
            extra=f"password_file {pw}\nacl_file {self.acl}\n",
            anonymous=False,
        )

    def _write_acl(self, deny: tuple[str, ...]) -> None:
        lines = ["user gw", *(f"topic deny {ROOT}/{t}" for t in deny), f"topic readwrite {ROOT}/#"]
        lines += [
            "",
            "user centre",
            "topic read firegate/#",
            "topic write firegate/+/+/request/#",
            "",
        ]
        self.acl.write_text("\n".join(lines))

    def set_acl(self, deny: tuple[str, ...]) -> None:
        """Rewrite the ACL and have mosquitto reload it (SIGHUP), connections kept."""
        self._write_acl(deny)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


@contextlib.contextmanager
def acl_broker(folder: Path, deny: tuple[str, ...]) -> Iterator[AclBroker]:
    b = AclBroker(folder, deny)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@contextlib.asynccontextmanager
async def centre(port: int) -> AsyncIterator[Collector]:
    c = Collector(port, kw={"username": CENTRE[0], "password": CENTRE[1]})
    task = asyncio.create_task(c.run())
    await asyncio.wait_for(c.ready.wait(), 5)
    try:
        yield c
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def running(up: Uplink) -> AsyncIterator[None]:
    task = asyncio.create_task(up.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def gateway(port: int, outbox: Outbox, **kw: Any) -> Uplink:
    cfg = uplink_config(port, username=GATEWAY[0], password=GATEWAY[1], **kw)
    return Uplink(cfg, site(), outbox, SystemClock(), "t")


async def stored_ids(outbox: Outbox) -> list[str]:
    await outbox.flush()
    return [p.id for p in await outbox.next_batch(1000)]


async def test_refused_fire_alarm_stays_stored_then_delivered_once_when_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with acl_broker(tmp_path / "broker", deny=("decision/fire_alarm",)) as b:
        outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
        fire1 = decision(DecisionType.FIRE_ALARM, 1)
        fault = decision(DecisionType.FAULT, 2)
        await outbox.submit(fire1)
        await outbox.submit(fault)
        up = gateway(b.port, outbox)
        async with centre(b.port) as c, running(up):
            with caplog.at_level(logging.INFO, logger="agent.uplink"):
                # the fault on an allowed topic is delivered although the fire alarm
                # before it (higher priority) is refused
                await until(lambda: any(d["id"] == fault.id for d in c.decisions()), "the fault")
                ids = await stored_ids(outbox)
                assert fire1.id in ids, "a refused fire alarm was deleted from the outbox"
                assert not [d for d in c.decisions() if d["type"] == "fire_alarm"]
                assert up.published >= 1 and up.refused >= 1

                # a health fault naming topic and reason, and a FAULT decision the
                # centre receives (decision/fault is allowed here)
                st = up.status()
                assert f"{ROOT}/decision/fire_alarm" in st["fault"]
                assert "0x87 Not authorized" in st["fault"]
                assert set(st["refused"]) == {"decision/fire_alarm"}
                await until(
                    lambda: any(
                        d["type"] == "fault" and "refused publishing" in d["reason"]
                        for d in c.decisions()
                    ),
                    "the FAULT about the refusal",
                )
                got_fault = next(d for d in c.decisions() if "refused publishing" in d["reason"])
                assert got_fault["zone"] == "_gateway"
                assert got_fault["details"]["topic"] == f"{ROOT}/decision/fire_alarm"
                assert got_fault["details"]["reason_code"] == 0x87

                # retried with backoff, still one ERROR line for the episode
                await until(lambda: up.refused >= 4, "retries", timeout_s=10)
                fire2 = decision(DecisionType.FIRE_ALARM, 3)
                await outbox.submit(fire2)  # stored while refused: held behind fire1
                await asyncio.sleep(0.3)
                assert {fire1.id, fire2.id} <= set(await stored_ids(outbox))
                errors = [
                    r
                    for r in caplog.records
                    if r.levelno >= logging.ERROR and "refused" in r.getMessage()
                ]
                assert len(errors) == 1, [r.getMessage() for r in errors]
                line = errors[0].getMessage()
                assert f"{ROOT}/decision/fire_alarm" in line and "0x87 Not authorized" in line
                assert "user 'gw'" in line and "ACL" in line

                # the centre fixes the ACL: both fire alarms arrive, in order, once each
                b.set_acl(deny=())
                await until(lambda: outbox.status()["rows"] == 0, "the outbox to drain")
                await until(
                    lambda: any(
                        d["type"] == "restore" and "accepts publishing" in d["reason"]
                        for d in c.decisions()
                    ),
                    "the RESTORE",
                )
                await asyncio.sleep(0.5)  # time for any duplicate to show up
                fires = [d["id"] for d in c.decisions() if d["type"] == "fire_alarm"]
                assert fires == [fire1.id, fire2.id]
                st = up.status()
                assert st["fault"] is None and st["refused"] == {}
                assert any("accepts" in r.getMessage() for r in caplog.records)

            # the refusals are a metric
            agent = Agent(site=cast(Any, None), clock=SystemClock(), sink=outbox, parts=[up])
            agent.collect_metrics()
            assert METRICS.uplink_refused.get(topic="decision/fire_alarm") == up.refused
            assert METRICS.uplink_published.get() >= 4
        await outbox.close()
        # MQTT 5 with clean start: what the outbox design expects
        assert "as firegate-school-1-gw1 (p5, c1," in b.log()


async def test_refused_kinds_do_not_block_the_rest(tmp_path: Path) -> None:
    """Refused stats, snapshots and status hold back only themselves: fire alarms
    and faults keep flowing, and every held decision stays in the outbox."""
    deny = ("decision/stats", "evidence/#", "status")
    with acl_broker(tmp_path / "broker", deny=deny) as b:
        outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
        stats = [decision(DecisionType.STATS, n) for n in range(5)]
        for d in stats:
            await outbox.submit(d)
        up = gateway(b.port, outbox, inflight_max=2)
        async with centre(b.port) as c, running(up):
            await until(lambda: "decision/stats" in up.status()["refused"], "stats refused")
            # a backlog of refused stats does not delay a fire alarm or a fault
            fire = decision(DecisionType.FIRE_ALARM, 10, snapshot=b"\xff\xd8jpeg\xff\xd9")
            fault = decision(DecisionType.FAULT, 11)
            await outbox.submit(fire)
            await outbox.submit(fault)
            await until(
                lambda: {fire.id, fault.id} <= {d["id"] for d in c.decisions()},
                "the fire alarm and the fault",
            )
            await until(lambda: "evidence/+" in up.status()["refused"], "evidence refused")
            await until(lambda: up.refused_by_kind.get("decision/stats", 0) >= 3, "retries")
            refused = up.status()["refused"]
            assert set(refused) == {"decision/stats", "evidence/+", "status"}
            assert refused["evidence/+"]["topic"] == f"{ROOT}/evidence/{fire.id}"
            ids = await stored_ids(outbox)
            # every stats decision, and the fire alarm for its snapshot, are still stored
            assert {d.id for d in stats} | {fire.id} <= set(ids)
            assert fault.id not in ids
            assert not any("/evidence/" in m.topic for m in c.messages)
            assert not any(d["type"] == "stats" for d in c.decisions())
            assert not any(m.topic.endswith("/status") for m in c.messages)
            # one FAULT per refused kind (decision/fault itself is allowed here)
            await until(
                lambda: len([d for d in c.decisions() if "refused publishing" in d["reason"]]) == 3,
                "three FAULTs",
            )

            b.set_acl(deny=())
            await until(lambda: outbox.status()["rows"] == 0, "the outbox to drain")
            await until(lambda: any("/evidence/" in m.topic for m in c.messages), "evidence")
            await until(lambda: up.status()["refused"] == {}, "status accepted again", 20)
            got_stats = [d["id"] for d in c.decisions() if d["type"] == "stats"]
            assert got_stats == [d.id for d in stats]  # their own order kept
            ev = [m for m in c.messages if "/evidence/" in m.topic]
            assert [m.topic for m in ev] == [f"{ROOT}/evidence/{fire.id}"]
            assert ev[0].payload == b"\xff\xd8jpeg\xff\xd9"
            fire_copies = [d for d in c.decisions() if d["id"] == fire.id]
            assert len(fire_copies) == 1  # only its snapshot was held, not the decision again
        await outbox.close()


async def test_mqtt_311_still_delivers_against_a_plain_broker(
    tmp_path: Path, broker: Broker, collector: Collector
) -> None:
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    fire = decision(DecisionType.FIRE_ALARM, 1)
    await outbox.submit(fire)
    up = Uplink(
        uplink_config(broker.port, mqtt_version="3.1.1"), site(), outbox, SystemClock(), "t"
    )
    async with running(up):
        await collector.wait_for(lambda: any(d["id"] == fire.id for d in collector.decisions()))
        await until(lambda: outbox.status()["rows"] == 0, "the outbox to drain")
        assert up.status()["mqtt_version"] == "3.1.1" and up.status()["fault"] is None
    await outbox.close()
    # mosquitto names 3.1.1 "p2"; c1: clean session
    assert "as firegate-school-1-gw1 (p2, c1," in broker.log()


async def test_acked_client_reads_the_puback_reason_code(tmp_path: Path) -> None:
    """The hook itself, on both protocol versions (fails loudly if aiomqtt changes)."""
    with acl_broker(tmp_path / "broker", deny=("denied",)) as b:
        v5 = AckedClient(
            "127.0.0.1",
            b.port,
            username=GATEWAY[0],
            password=GATEWAY[1],
            **session_options("5"),
        )
        async with v5:
            assert await v5.publish_acked(f"{ROOT}/ok", b"x", timeout_s=5) == 0x10
            with pytest.raises(PublishRefused) as refused:
                await v5.publish_acked(f"{ROOT}/denied", b"x", timeout_s=5)
            assert refused.value.reason_code == 0x87 and refused.value.topic == f"{ROOT}/denied"
            assert "0x87 Not authorized" in str(refused.value)
            # several at once, each with its own answer
            results = await asyncio.gather(
                *(
                    v5.publish_acked(f"{ROOT}/{'denied' if i % 2 else 'ok'}", b"x", timeout_s=5)
                    for i in range(10)
                ),
                return_exceptions=True,
            )
            assert [isinstance(r, PublishRefused) for r in results] == [
                i % 2 == 1 for i in range(10)
            ]
            await v5.publish(f"{ROOT}/ok", b"x", qos=1)  # aiomqtt's own publish still completes
        # MQTT 3.1.1: the same refusal is acknowledged like a delivery; the known limit
        v311 = AckedClient(
            "127.0.0.1",
            b.port,
            username=GATEWAY[0],
            password=GATEWAY[1],
            **session_options("3.1.1"),
        )
        async with v311:
            assert await v311.publish_acked(f"{ROOT}/denied", b"x", timeout_s=5) == 0
        with pytest.raises(aiomqtt.MqttCodeError):
            await v311.publish_acked(f"{ROOT}/ok", b"x", timeout_s=5)  # not connected


@pytest.mark.parametrize(("version", "refusal"), [("5", 0x87), ("3.1.1", 0x80)])
async def test_refused_downlink_subscription_is_a_fault_and_tried_again(
    tmp_path: Path, version: str, refusal: int
) -> None:
    """A SUBACK refusal used to pass unnoticed: the link looked fine while no
    request from the centre could ever arrive. Now it is a fault (log, health,
    FAULT decision), the rest keeps flowing, and the subscription is tried again
    with each heartbeat until the broker allows it. (A scripted broker: mosquitto's
    ACL file grants every subscription.)"""
    calls: list[str] = []
    allowed = asyncio.Event()

    async def on_request(name: str, body: dict[str, Any]) -> None:
        calls.append(name)

    def suback(topic: str, n: int) -> int:
        return 1 if allowed.is_set() else refusal

    async with ScriptedBroker(suback) as b:
        outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
        cfg = uplink_config(b.port, downlink=True, mqtt_version=version)
        up = Uplink(cfg, site(), outbox, SystemClock(), "t", on_request=on_request)
        async with running(up):
            await until(lambda: "request/+" in up.status()["refused"], "subscription refused")
            fault = up.health_fault()
            assert fault is not None and f"subscription to {ROOT}/request/+" in fault
            assert f"0x{refusal:02x}" in fault
            assert up.state == "connected"
            fire = decision(DecisionType.FIRE_ALARM, 1)
            await outbox.submit(fire)

            def decisions() -> list[dict[str, Any]]:
                return [json.loads(p) for t, p in b.published if "/decision/" in t]

            await until(lambda: fire.id in {d["id"] for d in decisions()}, "the fire alarm")
            await until(
                lambda: any("refused the subscription" in d["reason"] for d in decisions()),
                "the FAULT",
            )
            allowed.set()
            await until(lambda: up.status()["refused"] == {}, "subscription accepted", 15)
            assert up.health_fault() is None
            await until(
                lambda: any("accepts the subscription" in d["reason"] for d in decisions()),
                "the RESTORE",
            )
            codes = [code for _, code in b.subscribes]
            assert codes[-1] == 1 and set(codes[:-1]) == {refusal}
            assert len(codes) <= 3  # tried with the connection and the heartbeats, no faster
            await b.send(
                f"{ROOT}/request/state", json.dumps({"id": "1", "time": time.time()}).encode()
            )
            await until(lambda: calls == ["state"], "the request handed on")
        await outbox.close()
