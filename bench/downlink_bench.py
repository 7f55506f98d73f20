"""The downlink under attack: what hostile publishers cost the gateway (issue 14).

    .venv/bin/python bench/downlink_bench.py [--flood-s 10] [--big-mb 128]

A real mosquitto started for the run; the gateway's uplink (downlink on, an
answering hook like the agent's) in a child process, per MQTT version.
Prints, per version, the child's figures against its own idle baseline
measured in the same run:

1. idle RSS (the baseline);
2. a flood of requests at full speed for --flood-s (half `{}`, half valid
   requests with fresh ids): peak RSS and its ratio to idle, bytes the child
   wrote to disk (/proc/<pid>/io write_bytes: answers are never stored, the
   issue saw 364 MB per 30 s), requests sent, answers received, connects;
3. one --big-mb request, live then retained (then a reconnect): peak RSS (the
   issue saw 570 MB for 128 MB, and a crash loop for a retained one);
4. 20 requests nested 1,000 deep: connects (the issue: the uplink crashed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402

from firmware_mocks.broker import free_port  # noqa: E402
from tests.uplink.uplink_support import Broker  # noqa: E402

ROOT_TOPIC = "firegate/school-1/gw1"

CHILD = """
import asyncio, json, sys, time
from pathlib import Path
from agent.clock import SystemClock
from agent.events import DecisionType, gateway_decision
from agent.outbox import Outbox
from agent.uplink import Uplink
from tests.uplink.uplink_support import decision, site, uplink_config

async def main(db, port, version):
    async def hook(name, body):
        state = {f"part-{i}": {"state": "running", "polls": i} for i in range(20)}
        return gateway_decision(DecisionType.STATS, "state on request", part="agent",
                                wall=time.time(), mono=0.0, request=name, state=state)
    outbox = Outbox(Path(db), 1000, 10**8)
    cfg = uplink_config(port, downlink=True, mqtt_version=version, publish_timeout_s=10.0,
                        heartbeat_s=60.0)  # the shipped defaults
    up = Uplink(cfg, site(), outbox, SystemClock(), "bench", on_request=hook)
    task = asyncio.create_task(up.run())
    while up.state != "connected":
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    print("connected", flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        if line.strip() == "alarm":  # a fire alarm now: seconds until its PUBACK
            t0 = time.monotonic()
            await outbox.submit(decision(DecisionType.FIRE_ALARM, 1))
            while outbox.status()["rows"]:
                await asyncio.sleep(0.01)
            print(json.dumps({"alarm_s": time.monotonic() - t0}), flush=True)
            continue
        st = up.status()
        print(json.dumps({"connects": st["connects"], "downlink": st["downlink"],
                          "alive": not task.done()}), flush=True)
    task.cancel()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def written_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1]) / 1e6
    return 0.0


class Child:
    def __init__(self, folder: Path, port: int, version: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(folder / f"ob-{version}.db"), str(port), version],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "connected"
        self.peak = rss_mb(self.proc.pid)

    def sample(self) -> None:
        self.peak = max(self.peak, rss_mb(self.proc.pid))

    def status(self, command: str = "") -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


async def sampling(child: Child, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        child.sample()
        await asyncio.sleep(0.05)


async def flood(port: int, child: Child, seconds: float) -> tuple[int, int, float]:
    answers = 0
    sent = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-centre") as c:
        await c.subscribe(f"{ROOT_TOPIC}/decision/stats", qos=1)

        async def count() -> None:
            nonlocal answers
            async for _ in c.messages:
                answers += 1

        counter = asyncio.create_task(count())
        sampler = asyncio.create_task(sampling(child, seconds + 2))
        alarm = asyncio.create_task(asyncio.sleep(seconds / 2))
        alarm_s = -1.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(50):
                body = (
                    b"{}"
                    if sent % 2
                    else json.dumps({"id": f"b{sent}", "time": time.time()}).encode()
                )
                await c.publish(f"{ROOT_TOPIC}/request/state", body, qos=0)
                sent += 1
            await asyncio.sleep(0)
            if alarm.done() and alarm_s < 0:  # mid-flood, a fire alarm is raised
                alarm = asyncio.create_task(asyncio.to_thread(child.status, "alarm"))
                alarm_s = 0.0
        if alarm_s == 0.0:
            alarm_s = float((await alarm)["alarm_s"])  # type: ignore[arg-type]
        await sampler
        counter.cancel()
    return sent, answers, alarm_s


def publish_file(port: int, version: str, file: Path, retain: bool) -> None:
    v = "mqttv5" if version == "5" else "mqttv311"
    argv = ["mosquitto_pub", "-p", str(port), "-V", v, "-q", "1"]
    argv += ["-t", f"{ROOT_TOPIC}/request/state", "-f", str(file)]
    subprocess.run([*argv, *(["-r"] if retain else [])], check=True, timeout=120)


async def one_version(folder: Path, broker: Broker, version: str, args: argparse.Namespace) -> None:
    child = Child(folder, broker.port, version)
    idle = rss_mb(child.proc.pid)
    print(f"\nMQTT {version}: idle RSS {idle:.1f} MB (baseline)")

    child.peak = idle
    quiet = child.status("alarm")["alarm_s"]
    w0 = written_mb(child.proc.pid)
    sent, answers, alarm_s = await flood(broker.port, child, args.flood_s)
    st = child.status()
    print(
        f"  flood {args.flood_s:g} s: {sent} requests sent ({sent / args.flood_s:.0f}/s), "
        f"{answers} answers; peak RSS {child.peak:.1f} MB (x{child.peak / idle:.2f} idle); "
        f"disk written {written_mb(child.proc.pid) - w0:.2f} MB (the alarm's own write "
        f"included); connects {st['connects']}\n"
        f"  a fire alarm to its PUBACK: {quiet:.3f} s quiet, {alarm_s:.3f} s mid-flood"
    )

    big = folder / "big"
    big.write_bytes(b"{" + b" " * (args.big_mb * 1024 * 1024) + b"}")
    child.peak = rss_mb(child.proc.pid)
    sampler = asyncio.create_task(sampling(child, 1e9))
    await asyncio.to_thread(publish_file, broker.port, version, big, False)
    await asyncio.to_thread(publish_file, broker.port, version, big, True)
    await asyncio.sleep(1.5)
    st = child.status()
    sampler.cancel()
    print(
        f"  {args.big_mb} MB request, live and retained: peak RSS {child.peak:.1f} MB "
        f"(x{child.peak / idle:.2f} idle); connects {st['connects']}, alive {st['alive']}"
    )
    child.stop()
    again = Child(folder, broker.port, version)  # the retained one at the next connect
    again.peak = rss_mb(again.proc.pid)
    await sampling(again, 2.0)
    st = again.status()
    print(
        f"  reconnect with it retained: peak RSS {again.peak:.1f} MB; "
        f"connects {st['connects']}, alive {st['alive']}"
    )
    empty = folder / "empty"
    empty.write_bytes(b"")
    await asyncio.to_thread(publish_file, broker.port, version, empty, True)

    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-nest") as c:
        for _ in range(20):
            await c.publish(f"{ROOT_TOPIC}/request/state", b"[" * 1000 + b"]" * 1000, qos=1)
    await asyncio.sleep(1.0)
    st = again.status()
    print(f"  20 requests nested 1,000 deep: connects {st['connects']}, alive {st['alive']}")
    again.stop()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flood-s", type=float, default=10.0)
    p.add_argument("--big-mb", type=int, default=128)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        broker = Broker(folder, free_port())
        broker.start()
        try:
            for version in ("5", "3.1.1"):
                await one_version(folder, broker, version, args)
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
