"""Uplink and outbox benchmark against a real mosquitto started for the run.

    /work/venv/bin/python bench/uplink_bench.py [--backlog 10000] [--latency-n 300]

Prints:
1. latency from ``Outbox.submit`` (decision handed over) to a subscriber
   receiving it, while connected: median, p99, max (targets: median < 50 ms,
   every one within 10 s), next to a plain aiomqtt QoS 1 publish -> receive
   at the same pace;
2. throughput draining a backlog stored during an outage (decisions/s from the
   connection until every one is PUBACKed and deleted), next to a plain aiomqtt
   QoS 1 publish loop of the same payloads with the same in-flight window and
   MQTT version (target: uplink >= 0.9x), in ``--rounds`` paired rounds (the
   median ratio counts; the machine is shared); a subscriber in a process of
   its own reads both, as the centre would (in the bench's process it billed
   its JSON decoding to the uplink alone); MQTT 3.1.1 and one-at-a-time plain
   loops for reference;
3. outbox write cost per decision (submit, durable) next to a plain SQLite
   insert with the same settings (WAL, synchronous=FULL, one commit each), and
   the longest event-loop stall seen while submitting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402

from agent.clock import SystemClock  # noqa: E402
from agent.events import Decision, DecisionType  # noqa: E402
from agent.mqtt import PROTOCOLS  # noqa: E402
from agent.outbox import Outbox  # noqa: E402
from agent.siteconfig.models import MqttVersion  # noqa: E402
from agent.uplink import Topics, Uplink, decision_payload  # noqa: E402
from firmware_mocks.broker import free_port  # noqa: E402
from tests.uplink.uplink_support import (  # noqa: E402
    Broker,
    decision,
    loop_gaps,
    site,
    uplink_config,
)

TYPES = [
    DecisionType.FIRE_ALARM,
    DecisionType.ELECTRICAL_PREALARM,
    DecisionType.FAULT,
    DecisionType.RESTORE,
    DecisionType.STATS,
]


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class Receiver:
    """Records the arrival time of every decision id (perf_counter)."""

    def __init__(self, port: int, topic: str) -> None:
        self.port = port
        self.topic = topic
        self.arrived: dict[str, float] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"bench-rx-{id(self)}", clean_session=False
        ) as c:
            await c.subscribe(self.topic, qos=1)
            self.ready.set()
            async for m in c.messages:
                if isinstance(m.payload, bytes):
                    self.arrived.setdefault(json.loads(m.payload)["id"], time.perf_counter())


async def bench_latency(tmp: Path, port: int, n: int, interval_s: float) -> None:
    rx = Receiver(port, "firegate/+/+/decision/#")
    rtask = asyncio.create_task(rx.run())
    await rx.ready.wait()
    outbox = Outbox(tmp / "lat.db", 100_000, 10**9)
    up = Uplink(uplink_config(port), site(), outbox, SystemClock(), "bench")
    utask = asyncio.create_task(up.run())
    while up.state != "connected":  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    sent: dict[str, float] = {}
    for i in range(n):
        d = decision(TYPES[i % 5], i)
        sent[d.id] = time.perf_counter()
        await outbox.submit(d)
        await asyncio.sleep(interval_s)
    deadline = time.perf_counter() + 15
    while len(rx.arrived) < n and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    lat = [(rx.arrived[k] - t) * 1000 for k, t in sent.items() if k in rx.arrived]
    utask.cancel()
    await asyncio.gather(utask, return_exceptions=True)
    await outbox.close()

    # baseline: plain aiomqtt QoS 1 publish of the same payloads, same pace
    base: dict[str, float] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-plain-lat") as c:
        for i in range(n):
            d = decision(TYPES[i % 5], 100_000 + i)
            body = decision_payload(
                d.to_dict(), site_id="s", gateway_id="g", sent_wall=time.time(), topics=Topics("r")
            )
            base[d.id] = time.perf_counter()
            await c.publish("firegate/s/g/decision/plain", json.dumps(body), qos=1)
            await asyncio.sleep(interval_s)
    deadline = time.perf_counter() + 15
    while not set(base) <= set(rx.arrived) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    blat = [(rx.arrived[k] - t) * 1000 for k, t in base.items() if k in rx.arrived]
    rtask.cancel()
    await asyncio.gather(rtask, return_exceptions=True)

    print(
        f"\n1. latency submit -> subscriber, connected, {n} decisions every {interval_s * 1000:.0f} ms"
    )
    print(
        f"   uplink (outbox+uplink): received {len(lat)}/{n}; median {statistics.median(lat):.1f} ms, "
        f"p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms"
    )
    print(
        f"   plain aiomqtt publish : received {len(blat)}/{n}; median {statistics.median(blat):.1f} ms, "
        f"p99 {pct(blat, 99):.1f} ms, max {max(blat):.1f} ms"
    )
    ok = statistics.median(lat) < 50 and max(lat) < 10_000 and len(lat) == n
    print(f"   target median < 50 ms and all within 10 s: {'MET' if ok else 'NOT MET'}")


# The centre's subscriber for the drain, in a process of its own for both the
# uplink and the plain loops: in the bench's process its cost (one JSON decode
# per message on the same event loop) was billed to the uplink only.
SUBSCRIBER = """
import asyncio, json, sys
import aiomqtt

async def main(port, topic):
    seen = set()
    async with aiomqtt.Client("127.0.0.1", port, identifier=sys.argv[3]) as c:
        await c.subscribe(topic, qos=1)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        ask = loop.run_in_executor(None, sys.stdin.readline)
        msgs = aiter(c.messages)
        nxt = asyncio.ensure_future(anext(msgs))
        while True:
            await asyncio.wait({nxt, ask}, return_when=asyncio.FIRST_COMPLETED)
            if nxt.done():  # (never cancelled: that would end the generator)
                seen.add(json.loads(nxt.result().payload)["id"])
                nxt = asyncio.ensure_future(anext(msgs))
            if ask.done():
                if not ask.result():
                    nxt.cancel()
                    nxt.add_done_callback(lambda f: f.cancelled() or f.exception())
                    return
                print(len(seen), flush=True)
                ask = loop.run_in_executor(None, sys.stdin.readline)

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


class Subscriber:
    """The centre's subscriber (its own process); ``count()``: distinct ids received."""

    def __init__(self, port: int, topic: str, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(port), topic, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("subscriber did not start")

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    async def wait_for(self, n: int, timeout_s: float) -> int:
        deadline = time.perf_counter() + timeout_s
        got = await asyncio.to_thread(self.count)
        while got < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
            got = await asyncio.to_thread(self.count)
        return got

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def drain_uplink(tmp: Path, broker: Broker, n: int, window: int, k: int) -> tuple[float, int]:
    """Seconds from the uplink's connection until all ``n`` decisions stored during
    an outage are PUBACKed and deleted (the plain loops are timed from their
    connection too), and how many the subscriber got."""
    broker.stop()  # the outage: decisions pile up in the outbox
    outbox = Outbox(tmp / f"backlog-{k}.db", n + 1000, 10**10)
    for i in range(n):
        await outbox.submit(decision(TYPES[i % 5], k * 1_000_000 + i))
    await outbox.flush()
    broker.start()
    sub = Subscriber(broker.port, "firegate/+/+/decision/#", f"bench-rx-up-{k}")
    up = Uplink(uplink_config(broker.port, inflight_max=window), site(), outbox, SystemClock(), "b")
    utask = asyncio.create_task(up.run())
    t_start = time.perf_counter()
    while up.state != "connected" and time.perf_counter() - t_start < 30:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()  # CONNACK seen; next: the retained online status, the backlog
    while outbox.status()["rows"] > 0 and time.perf_counter() - t0 < 300:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    t_acked = time.perf_counter() - t0
    utask.cancel()
    await asyncio.gather(utask, return_exceptions=True)
    await outbox.close()
    got = await sub.wait_for(n, 30)
    sub.close()
    return t_acked, got


async def drain_plain(
    port: int, payloads: list[str], window: int | None, protocol: aiomqtt.ProtocolVersion, k: int
) -> tuple[float, int]:
    """The same payloads with plain aiomqtt QoS 1 publishes to a topic the same
    subscriber reads: ``window`` at once (None: one at a time)."""
    sub = Subscriber(port, "firegate/+/+/decision/#", f"bench-rx-plain-{k}")
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"bench-plain-{k}",
        protocol=protocol,
        max_inflight_messages=(window or 1) + 4,
    ) as c:
        c.pending_calls_threshold = (window or 1) + 8
        topic = "firegate/plain/gw/decision/fault"
        t1 = time.perf_counter()
        if window is None:
            for p in payloads:
                await c.publish(topic, p, qos=1)
        else:
            sem = asyncio.Semaphore(window)

            async def one(p: str) -> None:
                async with sem:
                    await c.publish(topic, p, qos=1)

            await asyncio.gather(*(one(p) for p in payloads))
        took = time.perf_counter() - t1
    got = await sub.wait_for(len(payloads), 30)
    sub.close()
    return took, got


async def bench_backlog(tmp: Path, broker: Broker, n: int, window: int, rounds: int) -> None:
    version = uplink_config(broker.port).mqtt_version
    proto = PROTOCOLS[version]
    other: MqttVersion = "3.1.1" if version == "5" else "5"
    print(
        f"\n2. draining a {n}-decision backlog after an outage (in-flight window {window}); "
        f"{rounds} rounds, each: the uplink and a plain aiomqtt loop of the same payloads "
        f"(MQTT {version} like the uplink), back to back in alternating order, then plain "
        f"MQTT {other} and one-at-a-time for reference; each timed from its connection; "
        "the same subscriber (own process) reads all of them"
    )
    ratios: list[float] = []
    for k in range(rounds):
        payloads = [
            json.dumps(
                decision_payload(
                    decision(TYPES[i % 5], 900_000_000 + k * 1_000_000 + i).to_dict(),
                    site_id="s",
                    gateway_id="g",
                    sent_wall=time.time(),
                    topics=Topics("r"),
                ),
                separators=(",", ":"),
                ensure_ascii=False,
            )
            for i in range(n)
        ]
        # the machine is shared and its load moves: uplink and plain run back to
        # back, in alternating order, and the ratio is taken per round
        if k % 2 == 0:
            t_up, got_up = await drain_uplink(tmp, broker, n, window, k)
            t_win, got_win = await drain_plain(broker.port, payloads, window, proto, 10 * k)
        else:
            t_win, got_win = await drain_plain(broker.port, payloads, window, proto, 10 * k)
            t_up, got_up = await drain_uplink(tmp, broker, n, window, k)
        t_oth, _ = await drain_plain(broker.port, payloads, window, PROTOCOLS[other], 10 * k + 1)
        t_seq, _ = await drain_plain(broker.port, payloads, None, proto, 10 * k + 2)
        ratios.append(t_win / t_up)
        print(
            f"   round {k + 1}: uplink {n / t_up:5.0f}/s (all PUBACKed and deleted in {t_up:.2f} s, "
            f"subscriber got {got_up}/{n}); plain window {window} MQTT {version} "
            f"{n / t_win:5.0f}/s (got {got_win}/{n}); plain window {window} MQTT {other} "
            f"{n / t_oth:5.0f}/s; plain one at a time {n / t_seq:5.0f}/s"
        )
        print(
            f"            uplink / plain windowed MQTT {version} = {t_win / t_up:.2f}; "
            f"/ MQTT {other} = {t_oth / t_up:.2f}; / one at a time = {t_seq / t_up:.2f}"
        )
    print(
        f"   uplink / plain windowed (same MQTT {version}, same window, same subscriber): "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f} "
        f"(target >= 0.9: {'MET' if statistics.median(ratios) >= 0.9 else 'NOT MET'})"
    )


def _plain_db(path: Path, sync: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={sync}")
    db.execute(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, priority INT, "
        "type TEXT, payload BLOB, snapshot BLOB, bytes INT, decision_sent INT, stored_wall REAL)"
    )
    db.execute("CREATE INDEX t_order ON t(priority, seq)")
    return db


def _plain_insert(db: sqlite3.Connection, d: Decision) -> float:
    t = time.perf_counter()
    p = json.dumps(d.to_dict(), separators=(",", ":")).encode()
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO t (id, priority, type, payload, snapshot, bytes, decision_sent, "
        "stored_wall) VALUES (?, ?, ?, ?, NULL, ?, 0, ?)",
        (d.id, d.priority, d.type.value, p, len(p), time.time()),
    )
    db.execute("COMMIT")
    return time.perf_counter() - t


async def bench_write(tmp: Path, n: int) -> None:
    """Blocks of 100 outbox submits and 100 plain FULL inserts alternate, so that
    the (noisy, shared) disk's fsync cost hits both alike."""
    outbox = Outbox(tmp / "write.db", n + 100, 10**10)
    await outbox.flush()
    full_db = _plain_db(tmp / "plain-full.db", "FULL")
    normal_db = _plain_db(tmp / "plain-normal.db", "NORMAL")
    per: list[float] = []
    full: list[float] = []
    normal: list[float] = []
    stalls: list[float] = []
    block = 100
    for b0 in range(0, n, block):
        async with loop_gaps() as gaps:
            for i in range(b0, b0 + block):
                d = decision(TYPES[i % 5], i)
                t = time.perf_counter()
                await outbox.submit(d)
                per.append(time.perf_counter() - t)
        stalls.append(max(gaps))
        for i in range(b0, b0 + block):
            full.append(_plain_insert(full_db, decision(TYPES[i % 5], i)))
    await outbox.close()
    # separately: on ext4 (data=ordered) an fsync also flushes other files' new
    # blocks, so interleaving unsynced writes would bill them to the FULL runs
    for i in range(n):
        normal.append(_plain_insert(normal_db, decision(TYPES[i % 5], i)))
    full_db.close()
    normal_db.close()
    us = 1e6
    med = statistics.median
    print(f"\n3. outbox write cost, {n} decisions, one durable commit each (interleaved blocks)")
    print(
        f"   Outbox.submit (own thread, WAL, FULL): median {med(per) * us:.0f} us, "
        f"p99 {pct(per, 99) * us:.0f} us, mean {statistics.mean(per) * us:.0f} us"
    )
    print(
        f"   plain sqlite3 insert (WAL, FULL)     : median {med(full) * us:.0f} us, "
        f"p99 {pct(full, 99) * us:.0f} us  -> submit / plain = {med(per) / med(full):.2f}"
    )
    print(
        f"   plain sqlite3 insert (WAL, NORMAL)   : median {med(normal) * us:.0f} us "
        "(no fsync per commit: the rest of FULL's cost is the fsync)"
    )
    print(
        f"   event loop while submitting (1 ms ticker): longest gap {max(stalls) * 1000:.1f} ms, "
        f"median block max {med(stalls) * 1000:.1f} ms; a plain insert on the loop would "
        f"block it for its whole p99 ({pct(full, 99) * 1000:.1f} ms)"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=10_000)
    ap.add_argument("--latency-n", type=int, default=300)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5, help="backlog drains, each with its baseline")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(tmp, free_port())
        broker.start()
        try:
            print(f"mosquitto on 127.0.0.1:{broker.port}; python {sys.version.split()[0]}")
            await bench_latency(tmp, broker.port, args.latency_n, args.interval_ms / 1000)
            await bench_backlog(tmp, broker, args.backlog, args.window, args.rounds)
            await bench_write(tmp, args.writes)
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
