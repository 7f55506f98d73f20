"""The province's side: provisioning 12,266 schools, and N real gateway uplinks
against one broker through a restart (the reconnect storm).

    .venv/bin/python bench/fleet.py provision [--rows 12266]
    .venv/bin/python bench/fleet.py share
    .venv/bin/python bench/fleet.py storm [--gateways 1000] [--broker mosquitto|nats]
                                          [--outage-s 5] [--consumers 3]

provision: a sheet of ``--rows`` schools (the standard template: one RS-485 line
with 4 detectors, a panel, a camera) through ``firegate provision``; prints
the time and how many configs check-config's loader accepted (target: 12,266
rows in under 60 s, every config valid).

share: whether mosquitto keeps what it owes an offline member of a shared
subscription, with and without a broker restart while the member is away
(a plain persistent subscriber alongside as the control).

storm: ``--gateways`` gateways in this one process, each the real agent.outbox
.Outbox (its own SQLite file) and agent.uplink.Uplink with the field's
settings (reconnect with full jitter: the first try within 40 s of a lost
link, every later one too (reconnect_max_s 40 s); a stored fire alarm tries at once, at most
every 3 s; heartbeat 60 s, keepalive 30 s), against a broker this script starts on its own ports
and folders, with ``--consumers`` centre consumers in one shared subscription
(``$share/centre/firegate/+/+/decision/#``, persistent sessions). Then:

1. steady state: fire alarms from random gateways, latency submit -> centre;
2. a district power cut during a broker restart: the broker stops for
   ``--outage-s``; meanwhile a quarter of the gateways decide a FAULT (mains
   lost) and a RESTORE, and one in fifty a FIRE_ALARM;
3. the broker returns: per second, how many gateways reconnect (the share of
   the fleet in the worst second; target <= 5 %), the time until all are back
   (target <= 60 s), also as the broker saw them (its log's "New client
   connected" lines per second: the gateways' process, saturated, can see a
   second's reconnects late and lump them into the next), the latency of
   fire alarms decided during the storm, and
   whether every decision taken during the outage reached the centre exactly
   once per shared-subscription group, and how soon after the broker's return
   the fire alarms decided during the outage arrived.

The gateways' side (2,000 Python uplinks) and the broker share this machine's
CPUs: figures are for this machine, see docs/fleet.md for the extrapolation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402

from agent.clock import SystemClock  # noqa: E402
from agent.commands.provision import provision  # noqa: E402
from agent.events import Decision, DecisionType  # noqa: E402
from agent.outbox import Outbox  # noqa: E402
from agent.siteconfig.models import SiteConfig, SiteInfo, UplinkConfig, ZoneConfig  # noqa: E402
from agent.uplink import Uplink  # noqa: E402
from firmware_mocks.broker import Mosquitto, free_port  # noqa: E402

PROVINCE_SITES = 12_266
# The seed's year: 80,000 alerts from 12,266 sites, 3 real fires (docs/fleet.md).
SEED_ALERTS_PER_SITE_DAY = 80_000 / PROVINCE_SITES / 365

# ------------------------------------------------------------------ provisioning

TEMPLATE = """\
version: 1
site: {site_id: template, gateway_id: gw-1}
zones:
  - id: kitchen
    policy: {coincidence_window_s: 60, persistence_s: 45, ceiling_s: 90}
  - id: hall
  - id: storeroom
  - id: electrical-room
buses:
  - name: rs485-1
    type: rtu
    port: /dev/firegate-rs485-1
    baudrate: 9600
    devices:
      - {name: kitchen-smoke-1, profile: calectro-ug3-o-mb-r, device_id: 3, zone: kitchen}
      - {name: kitchen-smoke-2, profile: calectro-ug3-o-mb-r, device_id: 4, zone: kitchen}
      - {name: hall-smoke, profile: calectro-ug3-o-mb-r, device_id: 5, zone: hall}
      - {name: main-board-leakage, profile: acrel-aim-r100, device_id: 1, zone: electrical-room}
  - name: panel
    type: panel
    port: /dev/ttyS0
    profile: generic-panel
    zone: storeroom
    points: {"1/23": hall}
cameras:
  - name: cam-storeroom
    zone: storeroom
    source: rtsp://viewer:secret@cam-{site_id}.school.lan/stream2
uplink: {host: placeholder, mqtt_version: 5}
"""


def bench_provision(rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fleet-provision-") as tmp:
        d = Path(tmp)
        sheet = d / "sites.csv"
        lines = ["site_id,gateway_id,school_name,zones,broker,credentials_file"]
        lines += [
            f"school-{i:05d},gw-1,School {i},kitchen;hall;storeroom;electrical-room,"
            f"mqtt{i % 3}.centre.example:8883,"
            for i in range(rows)
        ]
        sheet.write_text("\n".join(lines) + "\n")
        (d / "t.yaml").write_text(TEMPLATE)
        t0 = time.perf_counter()
        res = provision(sheet, d / "t.yaml", d / "out")
        wall = time.perf_counter() - t0
        n_files = sum(
            (d / "out" / r.site_id / r.gateway_id / "site.yaml").is_file() for r in res.valid
        )
        print(f"provision: {rows} rows -> {len(res.valid)} valid configs ({n_files} site.yaml)")
        print("  (removing the output folder...)")
    print(f"  broken rows: {len({line for line, _ in res.report.problems})}")
    print(f"  time: {wall:.1f} s ({wall / rows * 1000:.2f} ms/row, {os.cpu_count()} CPUs)")
    print(f"  target: {PROVINCE_SITES} rows < 60 s, all valid: ", end="")
    scaled = wall / rows * PROVINCE_SITES
    ok = scaled < 60 and len(res.valid) == rows
    print(f"{'MET' if ok else 'NOT MET'} ({scaled:.1f} s for {PROVINCE_SITES} at this rate)")


# ------------------------------------------------------------------ brokers


class Nats:
    """A three-node NATS cluster with JetStream and its MQTT listener on each node
    (MQTT 3.1.1 only). Gateways are spread over the nodes as a load balancer would."""

    name = "nats (3-node cluster, JetStream, MQTT 3.1.1)"
    mqtt_version = "3.1.1"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.nodes = 3
        self.client_ports = [free_port() for _ in range(self.nodes)]
        self.cluster_ports = [free_port() for _ in range(self.nodes)]
        self.ports = [free_port() for _ in range(self.nodes)]  # MQTT
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * self.nodes
        routes = ", ".join(f"nats://127.0.0.1:{p}" for p in self.cluster_ports)
        for i in range(self.nodes):
            d = folder / f"n{i}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "nats.conf").write_text(
                f"server_name: n{i}\nlisten: 127.0.0.1:{self.client_ports[i]}\n"
                f"jetstream {{ store_dir: '{d / 'js'}' }}\n"
                f"mqtt {{ listen: 127.0.0.1:{self.ports[i]} }}\n"
                f"cluster {{ name: fleet, listen: 127.0.0.1:{self.cluster_ports[i]}, "
                f"routes: [{routes}] }}\n"
            )

    def port_for(self, i: int) -> int:
        return self.ports[i % self.nodes]

    def start(self) -> None:
        for i in range(self.nodes):
            self._start(i)
        for i in range(self.nodes):
            _wait_port(self.ports[i], 30)
        time.sleep(2.0)  # JetStream meta leader election before MQTT sessions work

    def _start(self, i: int) -> None:
        d = self.folder / f"n{i}"
        log = (d / "nats.log").open("ab")
        self.procs[i] = subprocess.Popen(
            ["/usr/sbin/nats-server", "-c", str(d / "nats.conf")], stdout=log, stderr=log
        )

    def stop(self) -> None:
        for i, p in enumerate(self.procs):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            self.procs[i] = None

    def restart_down(self) -> None:
        self.stop()

    def restart_up(self) -> None:
        self.start()


class MosquittoBroker:
    name = "mosquitto 2.0 (one node, persistence on)"
    mqtt_version = "5"

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.m = Mosquitto(
            folder,
            port=self.port,
            persistence=True,
            config="max_queued_messages 100000\nmax_inflight_messages 0\n"
            "max_keepalive 600\nset_tcp_nodelay true\n",
        )

    def port_for(self, i: int) -> int:
        return self.port

    def start(self) -> None:
        self.m.start(timeout_s=30)

    def stop(self) -> None:
        self.m.stop()

    def restart_down(self) -> None:
        self.m.terminate()

    def restart_up(self) -> None:
        self.m.start(timeout_s=30)

    def connects_per_second(self, since_wall: float) -> Counter[int]:
        """Gateway connections the broker accepted, per second of its log from
        ``since_wall`` (mosquitto logs "<unix time>: New client connected ... as <id>")."""
        out: Counter[int] = Counter()
        log = self.m.folder / "mosquitto.log"
        for line in log.read_text(errors="replace").splitlines():
            ts, _, rest = line.partition(": ")
            if not rest.startswith("New client connected") or " as firegate-" not in rest:
                continue
            with contextlib.suppress(ValueError):
                t = int(ts)
                if t >= int(since_wall):
                    out[t - int(since_wall)] += 1
        return out


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")


# ------------------------------------------------------------------ the centre


@dataclass
class Centre:
    """``consumers`` members of one shared subscription, persistent sessions."""

    port_for: Any
    consumers: int
    mqtt_version: str
    shared: bool = True
    got: list[tuple[str, float, int]] = field(default_factory=list)  # (id, recv wall, member)
    ready: int = 0
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def topic(self) -> str:
        t = "firegate/+/+/decision/#"
        return f"$share/centre/{t}" if self.shared else t

    async def member(self, k: int) -> None:
        proto = (
            aiomqtt.ProtocolVersion.V5 if self.mqtt_version == "5" else aiomqtt.ProtocolVersion.V311
        )
        kw: dict[str, Any] = {}
        if proto is aiomqtt.ProtocolVersion.V5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            kw = {"clean_start": False, "properties": props}
        else:
            kw = {"clean_session": False}
        counted = False
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port_for(k),
                    identifier=f"centre-{k}",
                    protocol=proto,
                    keepalive=30,
                    **kw,
                ) as c:
                    await c.subscribe(self.topic, qos=1)
                    if not counted:
                        self.ready += 1
                        counted = True
                        if self.ready == self.consumers:
                            self.all_ready.set()
                    async for m in c.messages:
                        p = json.loads(m.payload)  # type: ignore[arg-type]
                        self.got.append((p["id"], time.time(), k))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)


# ------------------------------------------------------------------ the gateways


@dataclass
class Gateway:
    i: int
    outbox: Outbox
    uplink: Uplink
    task: asyncio.Task[None] | None = None


def _decision(t: DecisionType, gw: int, n: int, reason: str) -> Decision:
    now, mono = time.time(), time.monotonic()
    return Decision(
        type=t,
        zone="kitchen",
        reason=reason,
        first_seen_wall=now,
        first_seen_mono=mono,
        wall=now,
        mono=mono,
        devices=(f"smoke-{n}",),
        id=f"gw{gw}-{t.value}-{n}",
    )


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


async def storm(args: argparse.Namespace) -> None:
    logging.getLogger("agent").setLevel(logging.CRITICAL)  # 2,000 "link lost" lines say nothing
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.gateways * 6 + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))
    tmp = Path(tempfile.mkdtemp(prefix="fleet-storm-"))
    broker: Any = (
        MosquittoBroker(tmp / "broker") if args.broker == "mosquitto" else Nats(tmp / "nats")
    )
    print(f"broker: {broker.name}; {args.gateways} gateways; {args.consumers} centre consumers")
    broker.start()
    clock = SystemClock()
    gws: list[Gateway] = []
    try:
        shared = not args.no_share
        if shared and not await probe_share(broker.port_for(0), broker.mqtt_version):
            print(
                "  $share: this broker delivers nothing to a shared subscription; the centre "
                "falls back to one plain subscription per consumer (each gets every decision)"
            )
            shared = False
        centre = Centre(broker.port_for, args.consumers, broker.mqtt_version, shared=shared)
        members = [asyncio.create_task(centre.member(k)) for k in range(args.consumers)]
        await asyncio.wait_for(centre.all_ready.wait(), 60)
        zones = (ZoneConfig(id="kitchen"),)
        t0 = time.monotonic()
        for i in range(args.gateways):
            site = SiteConfig(
                site=SiteInfo(site_id=f"school-{i:05d}", gateway_id="gw-1"), zones=zones
            )
            cfg = UplinkConfig(
                host="127.0.0.1", port=broker.port_for(i), mqtt_version=broker.mqtt_version
            )
            ob = Outbox(tmp / "gw" / f"{i}.db", 10_000, 50_000_000, clock=clock)
            gws.append(Gateway(i, ob, Uplink(cfg, site, ob, clock, "bench")))
        (tmp / "gw").mkdir(exist_ok=True)
        for g in gws:
            g.task = asyncio.create_task(g.uplink.run())
        up = await _all_connected(gws, 120)
        print(
            f"start: {up}/{len(gws)} connected {time.monotonic() - t0:.1f} s after the first "
            "(all at once: a cold start, not spread)"
        )

        # every outbox open (SQLite file created, schema written) before anything is timed:
        # on a gateway that happens once at boot, here it would be 1,000 at once
        await asyncio.gather(*(g.outbox.next_batch(1) for g in gws))
        await asyncio.sleep(2.0)

        # 1. steady state
        ids_steady: dict[str, float] = {}
        for n in range(args.steady_alarms):
            g = random.choice(gws)
            d = _decision(DecisionType.FIRE_ALARM, g.i, n, "steady")
            ids_steady[d.id] = time.time()
            await g.outbox.submit(d)
            await asyncio.sleep(5.0 / args.steady_alarms)
        await _wait_ids(centre, set(ids_steady), 30)
        lat = _latencies(centre, ids_steady) or [float("nan")]
        print(
            f"steady: fire alarm submit -> centre: median {statistics.median(lat) * 1000:.0f} ms, "
            f"p99 {pct(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms (n={len(lat)})"
        )

        # 2. broker restart with a district power cut in it
        connects_before = {g.i: g.uplink.connects for g in gws}
        down_at = time.monotonic()
        broker.restart_down()
        outage: dict[str, float] = {}
        district = random.sample(gws, max(1, len(gws) // 4))
        for n, g in enumerate(district):
            for t, why in (
                (DecisionType.FAULT, "mains lost"),
                (DecisionType.RESTORE, "mains back"),
            ):
                d = _decision(t, g.i, 100_000 + n, why)
                outage[d.id] = time.time()
                await g.outbox.submit(d)
            if n % 12 == 0:  # one gateway in fifty of the fleet
                d = _decision(DecisionType.FIRE_ALARM, g.i, 200_000 + n, "during outage")
                outage[d.id] = time.time()
                await g.outbox.submit(d)
        left = args.outage_s - (time.monotonic() - down_at)
        if left > 0:
            await asyncio.sleep(left)
        print(
            f"outage: broker down {time.monotonic() - down_at:.1f} s; {len(outage)} decisions stored meanwhile"
        )
        back_wall = time.time()
        broker.restart_up()
        back = time.monotonic()

        # 3. the storm: sample reconnections per second; alarms decided during it
        per_s: Counter[int] = Counter()
        seen: set[int] = set()
        storm_ids: dict[str, float] = {}
        n = 0
        next_alarm = back
        while time.monotonic() - back < args.storm_max_s:
            now = time.monotonic()
            for g in gws:
                if (
                    g.i not in seen
                    and g.uplink.connects > connects_before[g.i]
                    and g.uplink.connected_since_wall
                ):
                    seen.add(g.i)
                    per_s[int(g.uplink.connected_since_wall - back_wall)] += 1
            if now >= next_alarm and n < args.storm_alarms:
                g = random.choice(gws)
                d = _decision(DecisionType.FIRE_ALARM, g.i, 300_000 + n, "during the storm")
                storm_ids[d.id] = time.time()
                await g.outbox.submit(d)
                n += 1
                next_alarm = now + 1.0
            if len(seen) == len(gws) and n >= min(args.storm_alarms, 5):
                break
            await asyncio.sleep(0.1)
        all_back_s = max(per_s) + 1 if per_s else float("nan")
        worst_s, worst = max(per_s.items(), key=lambda kv: kv[1]) if per_s else (0, 0)
        print(
            f"storm: {len(seen)}/{len(gws)} reconnected; last one in second {all_back_s:.0f} after "
            f"the broker was back (target <= 60 s)"
        )
        print(
            f"  worst second: {worst} reconnects ({worst / len(gws) * 100:.1f} % of the fleet, "
            f"second {worst_s}; target <= 5 %)"
        )
        print("  reconnects per second: " + " ".join(f"{s}:{per_s[s]}" for s in sorted(per_s)))
        seen_by_broker = broker.connects_per_second(back_wall) if hasattr(broker, "m") else None
        if seen_by_broker:
            b_worst_s, b_worst = max(seen_by_broker.items(), key=lambda kv: kv[1])
            print(
                f"  as the broker logged them: {sum(seen_by_broker.values())} gateway CONNECTs, "
                f"worst second {b_worst} ({b_worst / len(gws) * 100:.1f} %, second {b_worst_s}), "
                f"last in second {max(seen_by_broker)}"
            )
            print(
                "  broker's per second: "
                + " ".join(f"{s}:{seen_by_broker[s]}" for s in sorted(seen_by_broker))
            )
        not_back = [g for g in gws if g.i not in seen]
        if not_back:
            states = Counter(
                f"{g.uplink.state}, connects +{g.uplink.connects - connects_before[g.i]}, "
                f"{g.uplink.last_error[:60] or 'no error'}"
                for g in not_back
            )
            print(f"  not seen back ({len(not_back)}): {dict(states)}")
        want = set(outage) | set(storm_ids)
        await _wait_ids(centre, want, args.drain_max_s)
        got_ids = Counter(i for i, _, _ in centre.got)
        missing = [i for i in want if got_ids[i] == 0]
        twice = [i for i in want if got_ids[i] > 1]
        recv = {i: w for i, w, _ in centre.got}
        out_lat = [recv[i] - back_wall for i in outage if i in recv]
        print(
            f"outage decisions: {len(outage) - len([i for i in outage if i in missing])}/{len(outage)} "
            f"delivered; last {max(out_lat):.1f} s after the broker was back; missing {len([i for i in outage if i in missing])}"
            if out_lat
            else "outage decisions: none delivered"
        )
        fire_back = [recv[i] - back_wall for i in outage if "fire_alarm" in i and i in recv]
        if fire_back:
            print(
                f"outage fire alarms (decided while the broker was down): at the centre "
                f"median {statistics.median(fire_back):.2f} s, max {max(fire_back):.2f} s after "
                f"the broker was back, n={len(fire_back)}"
            )
        lat = _latencies(centre, storm_ids)
        if lat:
            print(
                f"storm alarms (decided while the fleet reconnects): median {statistics.median(lat):.2f} s, "
                f"max {max(lat):.2f} s, n={len(lat)} (10 s: GB 50116's limit at the centre)"
            )
        members_used = Counter(k for i, _, k in centre.got if i in want)
        if centre.shared:
            print(
                f"shared subscription ($share/centre, {args.consumers} members): "
                f"{len(twice)} of {len(want)} decision(s) received twice by the group, "
                f"{len(missing)} never; per member: {dict(sorted(members_used.items()))}"
            )
        else:
            print(
                f"plain subscriptions ({args.consumers} consumers, persistent): per consumer "
                f"{dict(sorted(members_used.items()))} of {len(want)}; {len(missing)} reached none"
            )
        lost = sum(1 for i in want if got_ids[i] == 0)
        rows = 0
        for g in gws:
            rows += g.outbox.status()["rows"]
        print(
            f"gateways' outboxes after the drain: {rows} decision row(s) left (heartbeat-free), lost {lost}"
        )
        for m in members:
            m.cancel()
    finally:
        # paho's sockets closing under cancelled tasks: nothing to report
        asyncio.get_running_loop().set_exception_handler(lambda _loop, _ctx: None)
        for g in gws:
            if g.task is not None:
                g.task.cancel()
        await asyncio.gather(*(g.task for g in gws if g.task is not None), return_exceptions=True)
        for g in gws:
            with contextlib.suppress(Exception):
                await g.outbox.close()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _proto(mqtt_version: str) -> aiomqtt.ProtocolVersion:
    return aiomqtt.ProtocolVersion.V5 if mqtt_version == "5" else aiomqtt.ProtocolVersion.V311


async def probe_share(port: int, mqtt_version: str) -> bool:
    """Does the broker deliver to a ``$share/`` subscription at all?"""
    proto = _proto(mqtt_version)
    try:
        async with (
            aiomqtt.Client("127.0.0.1", port, identifier="probe-sub", protocol=proto) as sub,
            aiomqtt.Client("127.0.0.1", port, identifier="probe-pub", protocol=proto) as pub,
        ):
            await sub.subscribe("$share/probe/fleet/probe", qos=1)
            await asyncio.sleep(0.5)
            await pub.publish("fleet/probe", b"x", qos=1)
            async with asyncio.timeout(3):
                async for _ in sub.messages:
                    return True
    except (aiomqtt.MqttError, TimeoutError):
        return False
    return False


def _latencies(centre: Centre, sent: dict[str, float]) -> list[float]:
    first: dict[str, float] = {}
    for i, w, _ in centre.got:
        if i in sent and i not in first:
            first[i] = w
    return [first[i] - sent[i] for i in first]


async def _wait_ids(centre: Centre, ids: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ids <= {i for i, _, _ in centre.got}:
            return
        await asyncio.sleep(0.2)


async def _all_connected(gws: list[Gateway], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = sum(1 for g in gws if g.uplink.connected_since_wall is not None)
        if n == len(gws):
            return n
        await asyncio.sleep(0.2)
    return sum(1 for g in gws if g.uplink.connected_since_wall is not None)


# ------------------------------------------------------------------ $share and restarts


async def _member_session(port: int, topic: str, got: list[bytes], listen_s: float) -> None:
    """One centre consumer with a persistent MQTT 5 session: subscribe, collect, leave."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier="member-1",
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=props,
    ) as c:
        await c.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(listen_s):
                async for m in c.messages:
                    got.append(bytes(m.payload))  # type: ignore[arg-type]


async def share_probe(n: int = 5) -> None:
    """Does mosquitto keep what it owes an offline member of a shared group, with and
    without a broker restart while the member is away? (A plain persistent
    subscription alongside, as the control.)"""
    for restart in (False, True):
        for topic in ("$share/centre/fleet/#", "fleet/#"):
            tmp = Path(tempfile.mkdtemp(prefix="fleet-share-"))
            b = Mosquitto(tmp, persistence=True)
            b.start()
            got: list[bytes] = []
            try:
                await _member_session(b.port, topic, got, 0.3)  # subscribe, then go away
                if restart:
                    b.terminate()
                    b.start()
                async with aiomqtt.Client("127.0.0.1", b.port, identifier="gateway") as pub:
                    for i in range(n):
                        await pub.publish("fleet/decision", str(i).encode(), qos=1)
                await _member_session(b.port, topic, got, 2.0)  # back: what was kept?
            finally:
                b.stop()
                shutil.rmtree(tmp, ignore_errors=True)
            kind = "$share member" if topic.startswith("$share") else "plain subscriber"
            when = "broker restarted while away" if restart else "no restart"
            print(f"{kind:<16} offline, {when:<28}: got {len(got)}/{n} on return")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("provision")
    p.add_argument("--rows", type=int, default=PROVINCE_SITES)
    sub.add_parser("share", help="mosquitto: $share members across a restart")
    s = sub.add_parser("storm")
    s.add_argument("--gateways", type=int, default=1000)
    s.add_argument("--broker", choices=("mosquitto", "nats"), default="mosquitto")
    s.add_argument("--consumers", type=int, default=3)
    s.add_argument("--no-share", action="store_true", help="one plain subscription per consumer")
    s.add_argument("--outage-s", type=float, default=5.0)
    s.add_argument("--steady-alarms", type=int, default=20)
    s.add_argument("--storm-alarms", type=int, default=20)
    s.add_argument("--storm-max-s", type=float, default=90.0)
    s.add_argument("--drain-max-s", type=float, default=60.0)
    args = ap.parse_args()
    if args.what == "provision":
        bench_provision(args.rows)
    elif args.what == "share":
        asyncio.run(share_probe())
    else:
        asyncio.run(storm(args))


if __name__ == "__main__":
    main()
