"""GB/T 26875.3 uplink latency on loopback, against the mock centre.

    .venv/bin/python bench/gb26875_bench.py [--n 200]

Prints, for N fire alarms handed to the outbox one at a time (each waits for
the previous one's confirm):

1. decision to the centre's confirm: from ``Outbox.submit`` (the durable
   commit included) to the centre sending its confirm frame; median, p99, max
   (target: median <= 50 ms);
2. the same from the moment ``submit`` returned (the uplink's own share);
   both also with MQTT beside it: ``submit`` then goes through the hand-off
   journal and commits to both outboxes (``BothOutboxes``; MQTT's not drained);
3. baselines measured in the same run: a plain TCP round trip of a frame of
   the same size and its 30-byte answer (asyncio streams, loopback), and one
   plain SQLite insert with the outbox's settings (WAL, synchronous=FULL);
   with the ratios of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.clock import SystemClock  # noqa: E402
from agent.events import DecisionType  # noqa: E402
from agent.gb26875.client import Gb26875Uplink  # noqa: E402
from agent.gb26875.codec import Command  # noqa: E402
from agent.gb26875.mapping import directory_for  # noqa: E402
from agent.gb26875.objects import TypeFlag  # noqa: E402
from agent.gb26875.sink import BothOutboxes  # noqa: E402
from agent.outbox import Outbox  # noqa: E402
from firmware_mocks.centre import MockCentre  # noqa: E402
from tests.gb26875.support import decision, make_site  # noqa: E402


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(0.99 * len(xs)))]
    return (
        f"median {statistics.median(xs) * 1e3:7.2f} ms  p99 {p99 * 1e3:7.2f} ms  "
        f"max {xs[-1] * 1e3:7.2f} ms"
    )


async def uplink_latency(n: int, tmp: Path, both: bool = False) -> tuple[list[float], list[float]]:
    tmp = tmp / ("both" if both else "gb")
    tmp.mkdir()
    centre = MockCentre()
    await centre.start()
    site = make_site(tmp, centre.port, 5.0, 600.0)
    assert site.config.gb26875 is not None
    outbox = Outbox(tmp / "state" / "outbox.db", max_rows=100_000, max_bytes=10**9)
    up = Gb26875Uplink(
        site.config.gb26875,
        site.config,
        outbox,
        SystemClock(),
        "bench",
        directory=directory_for(site),
    )
    task = asyncio.create_task(up.run())
    await centre.wait_for(lambda: bool(centre.data_units()), 10)
    mqtt = Outbox(tmp / "state" / "outbox-mqtt.db", max_rows=100_000, max_bytes=10**9)
    sink: Outbox | BothOutboxes = BothOutboxes(mqtt, outbox) if both else outbox

    def confirmed() -> int:
        return sum(
            1
            for r in centre.received
            if r.answer == Command.CONFIRM and r.unit and r.unit.type == TypeFlag.COMPONENT_STATE
        )

    total, after = [], []
    for i in range(n):
        t0 = time.perf_counter()
        await sink.submit(decision(DecisionType.FIRE_ALARM, i))
        t1 = time.perf_counter()
        await centre.wait_for(lambda i=i: confirmed() > i, 10)  # type: ignore[misc]
        t2 = time.perf_counter()
        total.append(t2 - t0)
        after.append(t2 - t1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await centre.stop()
    await outbox.close()
    await mqtt.close()
    if isinstance(sink, BothOutboxes):
        sink.journal.close()
    return total, after


async def socket_rtt(n: int) -> list[float]:
    frame = bytes(78)
    answer = bytes(30)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readexactly(len(frame))
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(frame)
        await writer.drain()
        await reader.readexactly(len(answer))
        out.append(time.perf_counter() - t0)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.05)  # let the server side see the end
    server.close()
    await server.wait_closed()
    return out


def sqlite_insert(n: int, tmp: Path) -> list[float]:
    db = sqlite3.connect(tmp / "plain.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)")
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        db.execute("INSERT INTO t (payload) VALUES (?)", (bytes(600),))
        out.append(time.perf_counter() - t0)
    db.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        total, after = await uplink_latency(args.n, tmp)
        total2, after2 = await uplink_latency(args.n, tmp, both=True)
        rtt = await socket_rtt(args.n)
        ins = sqlite_insert(args.n, tmp)
    med = statistics.median
    print(f"GB/T 26875.3 uplink, {args.n} fire alarms one at a time, loopback, mock centre")
    print(f"  decision -> centre's confirm (submit included): {stats(total)}")
    print(f"  submit returned -> centre's confirm:             {stats(after)}")
    print(f"  with MQTT beside it (journal + 2 outboxes):     {stats(total2)}")
    print(f"    submit returned -> centre's confirm:           {stats(after2)}")
    print(f"  baseline: plain TCP round trip (78 B -> 30 B):  {stats(rtt)}")
    print(f"  baseline: plain SQLite insert, WAL, FULL:       {stats(ins)}")
    print(
        f"  ratios of medians: total / (round trip + insert) = "
        f"{med(total) / (med(rtt) + med(ins)):.1f}; uplink share / round trip = "
        f"{med(after) / med(rtt):.1f}"
    )
    for what, xs in (("GB alone", total), ("beside MQTT", total2)):
        verdict = "meets" if med(xs) <= 0.050 else "MISSES"
        print(f"  target median <= 50 ms, {what}: {verdict} ({med(xs) * 1e3:.2f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
