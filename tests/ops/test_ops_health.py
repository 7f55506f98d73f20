"""The health part: watchdog fed only while parts progress, status file, metrics."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.clock import SystemClock
from agent.health import Health, Metrics, read_status
from agent.notify import Notifier
from agent.supervisor import PartState, Supervisor
from firmware_mocks.broker import free_port

NotifySocket = Any  # the notify_socket fixture (conftest.py)


class Worker:
    """A part whose loop can be made to hang, like a bus read that never returns."""

    def __init__(self, name: str, clock: SystemClock, period_s: float = 0.02) -> None:
        self.name = name
        self.clock = clock
        self.period_s = period_s
        self.progress_mono = clock.monotonic()
        self.stuck = False
        self.unstuck = asyncio.Event()

    async def run(self) -> None:
        while True:
            if self.stuck:
                await self.unstuck.wait()
                self.stuck = False
                self.unstuck.clear()
            self.progress_mono = self.clock.monotonic()
            await self.clock.sleep(self.period_s)

    def status(self) -> dict[str, Any]:
        return {"stuck": self.stuck, "devices": {f"{self.name}-dev": {"state": "online"}}}


class Crasher:
    name = "crasher"
    progress_mono = 0.0

    async def run(self) -> None:
        raise RuntimeError("port vanished")


def watchdog_count(msgs: list[dict[str, str]]) -> int:
    return sum(1 for m in msgs if m.get("WATCHDOG") == "1")


async def test_watchdog_fed_only_while_every_part_progresses(
    notify_socket: NotifySocket, tmp_path: Path
) -> None:
    clock = SystemClock()
    bus, uplink = Worker("bus-rs485-1", clock), Worker("uplink", clock)
    parts: list[Any] = [bus, uplink]
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "300000"}
    health = Health(
        parts,
        clock=clock,
        notifier=Notifier(env=env),
        metrics=Metrics(),
        stall_after_s=0.5,
        status_file=tmp_path / "status.json",
        status_interval_s=0.1,
    )
    parts.append(health)
    sup = Supervisor(parts, clock=clock)
    health.bind_supervisor(sup.states)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))

    await asyncio.sleep(0.6)
    first = notify_socket.drain()
    assert first[0].get("READY") == "1"
    assert watchdog_count(first) >= 3  # fed about every 0.1 s (a third of 0.3 s)

    uplink.stuck = True  # the uplink task hangs
    await asyncio.sleep(0.8)  # > stall_after_s + one tick: the stall is seen by now
    notify_socket.drain()
    await asyncio.sleep(1.0)
    during = notify_socket.drain()
    assert watchdog_count(during) == 0, "fed the watchdog while a part was stalled"
    assert health.last_report.stalled == ["uplink"]
    status = read_status(tmp_path / "status.json")
    assert status["healthy"] is False and status["stalled"] == ["uplink"]
    assert status["parts"]["uplink"]["stalled"] is True
    stalled_msgs = [m["STATUS"] for m in notify_socket.messages if "STATUS" in m]
    assert any(s.startswith("STALLED: uplink") for s in stalled_msgs)

    uplink.unstuck.set()  # it recovers: feeding resumes
    await asyncio.sleep(0.6)
    after = notify_socket.drain()
    assert watchdog_count(after) >= 2
    assert health.last_report.healthy

    stop.set()
    assert await task
    final = notify_socket.drain()
    assert {"STOPPING": "1", "STATUS": "stopping"} in final
    assert read_status(tmp_path / "status.json")["stopping"] is True


async def test_a_crashed_part_is_the_supervisors_business_not_a_stall(
    notify_socket: NotifySocket,
) -> None:
    clock = SystemClock()
    parts: list[Any] = [Worker("bus", clock), Crasher()]
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "300000"}
    health = Health(
        parts, clock=clock, notifier=Notifier(env=env), metrics=Metrics(), stall_after_s=0.3
    )
    parts.append(health)
    sup = Supervisor(parts, clock=clock, backoff_initial_s=30)  # stays down while we look
    health.bind_supervisor(sup.states)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await asyncio.sleep(0.4)
    notify_socket.drain()
    await asyncio.sleep(0.6)  # crasher is down far longer than stall_after_s
    assert watchdog_count(notify_socket.drain()) >= 3
    r = health.last_report
    crasher = next(p for p in r.parts if p.name == "crasher")
    assert r.healthy and not crasher.running and crasher.restarts == 1
    assert "restarting: crasher" in health.summary(r)
    stop.set()
    await task


class FakeClock:
    speed = 1.0

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class Slow:
    name = "panel"
    stall_after_s = 600.0  # a part may declare a longer loop

    def __init__(self, progress: float) -> None:
        self.progress_mono = progress


class NoProgress:
    name = "legacy"


class Plain:
    def __init__(self, name: str, progress: float) -> None:
        self.name = name
        self.progress_mono = progress


def test_check_is_pure_over_the_clock() -> None:
    clock = FakeClock()
    a, slow, legacy = Plain("a", clock.now), Slow(clock.now), NoProgress()
    h = Health(
        [a, slow, legacy],
        clock=clock,
        notifier=Notifier(env={}),
        metrics=Metrics(),
        stall_after_s=60,
    )
    assert h.check().healthy
    clock.now += 61
    r = h.check()
    assert r.stalled == ["a"]  # slow has 600 s; legacy is not watched (and says so)
    ages = {p.name: p.progress_age_s for p in r.parts}
    assert ages == {"a": 61.0, "panel": 61.0, "legacy": None}
    clock.now += 600
    assert h.check().stalled == ["a", "panel"]
    a.progress_mono = slow.progress_mono = clock.now
    assert h.check().healthy
    # a part just restarted gets a full stall_after_s from its start, whatever its old progress
    h.bind_supervisor({"a": PartState("a", running=True, last_start_mono=clock.now + 100)})
    a.progress_mono = 0.0
    clock.now += 130
    assert h.check().healthy  # a: 30 s since its restart; panel: 130 s of its 600
    clock.now += 40
    assert h.check().stalled == ["a"]


def test_status_file_sections_and_broken_status(tmp_path: Path) -> None:
    clock = FakeClock()

    class Engine(Plain):
        def status(self) -> dict[str, Any]:
            return {"zones": {"kitchen": {"state": "verifying", "since_s": 12.0}}, "ticks": 5}

    class Outbox(Plain):
        def status(self) -> dict[str, Any]:
            return {"outbox": {"depth": 3, "oldest_age_s": 40.5}}

    class Broken(Plain):
        def status(self) -> dict[str, Any]:
            raise KeyError("oops")

    parts = [Engine("engine", clock.now), Outbox("outbox", clock.now), Broken("cam", clock.now)]
    f = tmp_path / "status.json"
    h = Health(
        parts,
        clock=clock,
        notifier=Notifier(env={}),
        metrics=Metrics(),
        status_file=f,
        identity={"site_id": "s1", "gateway_id": "gw"},
    )
    assert h.write_status()
    doc = read_status(f)
    assert doc["site_id"] == "s1" and doc["healthy"] is True
    assert doc["zones"] == {"kitchen": {"part": "engine", "state": "verifying", "since_s": 12.0}}
    assert doc["outbox"] == {"part": "outbox", "depth": 3, "oldest_age_s": 40.5}
    assert doc["parts"]["engine"]["status"] == {"ticks": 5}
    assert "KeyError" in doc["parts"]["cam"]["status"]["status_error"]
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left
    assert f.stat().st_mode & 0o777 == 0o640


def test_status_write_failure_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    h = Health(
        [],
        clock=FakeClock(),
        notifier=Notifier(env={}),
        metrics=Metrics(),
        status_file=blocker / "status.json",
    )
    assert h.write_status() is False
    assert "NotADirectoryError" in h.status()["status_file_error"]


def test_metrics_text_format_parses_with_prometheus_client() -> None:
    m = Metrics()
    m.polls.inc(bus="rs485-1", device="kitchen-smoke-1")
    m.polls.inc(2, bus="rs485-1", device='odd "name"\\x')
    m.poll_errors.inc(bus="rs485-1", device="kitchen-smoke-1", error="timeout")
    m.device_condition.set(1, device="kitchen-smoke-1", condition="alarm")
    for s in (0.004, 0.03, 0.2, 7.0):
        m.detector_latency.observe(s, camera="cam-1")
    m.outbox_depth.set(17)
    m.decisions.inc(type="fire_alarm")
    text = m.render()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples
    }
    assert samples[("firegate_polls_total", (("bus", "rs485-1"), ("device", 'odd "name"\\x')))] == 2
    assert samples[("firegate_outbox_depth", ())] == 17
    assert samples[("firegate_decisions_total", (("type", "fire_alarm"),))] == 1
    assert fams["firegate_detector_latency_seconds"].type == "histogram"
    buckets = {
        s.labels["le"]: s.value
        for s in fams["firegate_detector_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert (
        buckets["0.01"] == 1 and buckets["0.25"] == 3 and buckets["5"] == 3 and buckets["+Inf"] == 4
    )
    assert math.isclose(
        samples[("firegate_detector_latency_seconds_sum", (("camera", "cam-1"),))], 7.234
    )


def test_metrics_misuse_is_an_error() -> None:
    m = Metrics()
    with pytest.raises(ValueError):
        m.polls.inc(device="x")  # missing the bus label
    with pytest.raises(ValueError):
        m.polls.inc(-1, bus="b", device="d")
    with pytest.raises(ValueError):
        m.gauge("firegate_polls_total", "again, as another type")
    assert m.counter("firegate_polls_total", "", ("bus", "device")) is m.polls


def test_metrics_label_sets_are_capped() -> None:
    import agent.health as h

    m = Metrics()
    for i in range(h.MAX_LABEL_SETS + 50):
        m.frames.inc(camera=f"c{i}")
    assert len(m.frames.values) == h.MAX_LABEL_SETS


async def http_get(port: int, path: str) -> tuple[str, str]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.split("\r\n")[0], body


async def test_metrics_endpoint_on_localhost(tmp_path: Path) -> None:
    clock = SystemClock()
    port = free_port()
    m = Metrics()
    parts: list[Any] = [Worker("bus", clock)]
    h = Health(
        parts,
        clock=clock,
        notifier=Notifier(env={}),
        metrics=m,
        metrics_port=port,
        status_interval_s=0.1,
    )
    parts.append(h)
    m.polls.inc(bus="b", device="d")
    tasks = [asyncio.create_task(p.run()) for p in parts]
    try:
        for _ in range(50):
            if h._server is not None:
                break
            await asyncio.sleep(0.02)
        assert h._server is not None
        assert {s.getsockname()[0] for s in h._server.sockets} == {"127.0.0.1"}
        line, body = await http_get(port, "/metrics")
        assert line == "HTTP/1.1 200 OK"
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"firegate_polls", "firegate_part_up", "process_resident_memory_bytes"} <= names
        assert 'firegate_part_up{part="bus"} 1' in body
        line, _ = await http_get(port, "/")
        assert line.startswith("HTTP/1.1 404")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_busy_metrics_port_does_not_stop_health() -> None:
    clock = SystemClock()
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    h = Health([], clock=clock, notifier=Notifier(env={}), metrics=Metrics(), metrics_port=port)
    t = asyncio.create_task(h.run())
    await asyncio.sleep(0.2)
    assert not t.done()
    assert "cannot listen" in h.snapshot()["metrics"]["error"]
    t.cancel()
    await asyncio.gather(t, return_exceptions=True)
    blocker.close()


def test_status_document_is_json(tmp_path: Path) -> None:
    h = Health([Plain("a", 0.0)], clock=FakeClock(), notifier=Notifier(env={}), metrics=Metrics())
    json.dumps(h.snapshot())
