"""Health of the running agent: the systemd watchdog, the status file, metrics.

Three things live here:

* ``Metrics``: a small registry of counters, gauges and histograms that any
  part may update (``agent.health.METRICS`` and the standard metrics below,
  e.g. ``POLLS.inc(bus="rs485-1", device="kitchen-smoke-1")``), rendered in the
  Prometheus text format (version 0.0.4). Updating a metric is a dict update:
  cheap enough for every poll and every frame.
* ``Health``: a part that watches every other part. Each part sets
  ``progress_mono = clock.monotonic()`` whenever its loop completes an
  iteration (see /work/notes/COMMON.md). While every running part has shown
  progress within ``stall_after_s``, Health feeds the systemd watchdog
  (``WATCHDOG=1``); once one stalls (a bus worker stuck in a read, a dead
  uplink task) it stops, and systemd restarts the service after
  ``WatchdogSec``. A part that crashed is the supervisor's business (it
  restarts it and reports a fault), not a stall. If the event loop itself is
  blocked Health cannot run either, so the watchdog catches that too.
* The status file ``<state_dir>/status.json``, rewritten atomically every
  ``status_interval_s`` for ``firegate status``, and an opt-in metrics
  endpoint on 127.0.0.1 only.

What a part's ``status()`` may contain, so that ``firegate status`` can show
it by section (all optional; anything else is shown under the part)::

    {"devices": {"<device name>": {"state": "online", ...}},
     "cameras": {"<camera name>": {"state": "ok", ...}},
     "zones":   {"<zone id>":     {"state": "normal", ...}},
     "outbox":  {"depth": 0, "oldest_age_s": 0.0, ...}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.clock import Clock
from agent.diskwriter import writer_for
from agent.events import iso
from agent.logs import redact
from agent.notify import Notifier
from agent.statusfile import (  # re-exported: the status file's format lives there
    SECTIONS,
    STATUS_FILE_NAME,
    STATUS_FORMAT,
    problems,
)
from agent.statusfile import read_status as read_status  # re-exported for readers
from agent.supervisor import PartState

if TYPE_CHECKING:
    from agent.siteconfig import LoadedSite

log = logging.getLogger(__name__)

METRICS_HOST = "127.0.0.1"  # fixed: metrics are never exposed beyond the gateway itself
MAX_LABEL_SETS = 2000  # per metric; a bug that puts ids in labels must not eat the memory


# ------------------------------------------------------------------------ metrics

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_: str, labels: Sequence[str]) -> None:
        self.name = name
        self.help = help_
        self.labelnames = tuple(labels)
        self._warned = False

    def _key(self, labels: Mapping[str, str]) -> LabelValues | None:
        if set(labels) != set(self.labelnames):
            raise ValueError(
                f"metric {self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}"
            )
        key = tuple(str(labels[n]) for n in self.labelnames)
        if key not in self._store() and len(self._store()) >= MAX_LABEL_SETS:
            if not self._warned:
                log.warning(
                    "metric %s has %d label sets; dropping new ones", self.name, MAX_LABEL_SETS
                )
                self._warned = True
            return None
        return key

    def _store(self) -> dict[LabelValues, Any]:
        raise NotImplementedError

    def _labels(self, key: LabelValues, extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A count that only goes up (polls, errors, decisions)."""

    kind = "counter"

    def __init__(self, name: str, help_: str, labels: Sequence[str]) -> None:
        super().__init__(name, help_, labels)
        self.values: dict[LabelValues, float] = {}

    def _store(self) -> dict[LabelValues, float]:
        return self.values

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot go down (inc by {amount})")
        key = self._key(labels)
        if key is not None:
            self.values[key] = self.values.get(key, 0.0) + amount

    def set_total(self, total: float, **labels: str) -> None:
        """Mirror a count kept elsewhere (e.g. the supervisor's restarts); it must not go down."""
        key = self._key(labels)
        if key is not None:
            self.values[key] = max(self.values.get(key, 0.0), total)

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(str(labels[n]) for n in self.labelnames), 0.0)

    def render(self) -> list[str]:
        return [
            f"{self.name}{self._labels(k)} {_number(v)}" for k, v in sorted(self.values.items())
        ]


class Gauge(_Metric):
    """A value that goes up and down (outbox depth, device state 1/0)."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, labels: Sequence[str]) -> None:
        super().__init__(name, help_, labels)
        self.values: dict[LabelValues, float] = {}

    def _store(self) -> dict[LabelValues, float]:
        return self.values

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        if key is not None:
            self.values[key] = float(value)

    def get(self, **labels: str) -> float | None:
        return self.values.get(tuple(str(labels[n]) for n in self.labelnames))

    def remove(self, **labels: str) -> None:
        """Forget one label set (a device removed from the config, a part gone)."""
        self.values.pop(tuple(str(labels[n]) for n in self.labelnames), None)

    def render(self) -> list[str]:
        return [
            f"{self.name}{self._labels(k)} {_number(v)}" for k, v in sorted(self.values.items())
        ]


@dataclass
class _HistogramValue:
    buckets: list[int]
    count: int = 0
    sum: float = 0.0


class Histogram(_Metric):
    """Observed durations in buckets (detector latency), for quantiles in Prometheus."""

    kind = "histogram"

    def __init__(
        self, name: str, help_: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help_, labels)
        if "le" in self.labelnames:
            raise ValueError("'le' is reserved for histogram buckets")
        if list(buckets) != sorted(set(buckets)):
            raise ValueError(f"histogram {name}: buckets must be increasing: {list(buckets)}")
        self.buckets = tuple(float(b) for b in buckets)
        self.values: dict[LabelValues, _HistogramValue] = {}

    def _store(self) -> dict[LabelValues, _HistogramValue]:
        return self.values

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        if key is None:
            return
        h = self.values.get(key)
        if h is None:
            h = self.values[key] = _HistogramValue([0] * len(self.buckets))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                h.buckets[i] += 1
        h.count += 1
        h.sum += value

    def get(self, **labels: str) -> tuple[int, float]:
        """(count, sum) for one label set."""
        h = self.values.get(tuple(str(labels[n]) for n in self.labelnames))
        return (0, 0.0) if h is None else (h.count, h.sum)

    def render(self) -> list[str]:
        out: list[str] = []
        for key, h in sorted(self.values.items(), key=lambda kv: kv[0]):
            for bound, n in zip(self.buckets, h.buckets, strict=True):
                out.append(f"{self.name}_bucket{self._labels(key, f'le={_q(_number(bound))}')} {n}")
            out.append(f"{self.name}_bucket{self._labels(key, 'le=' + _q('+Inf'))} {h.count}")
            out.append(f"{self.name}_sum{self._labels(key)} {_number(h.sum)}")
            out.append(f"{self.name}_count{self._labels(key)} {h.count}")
        return out


def _q(text: str) -> str:
    return f'"{text}"'


class Metrics:
    """A registry of metrics, rendered together.

    The standard firegate metrics are attributes (``metrics.polls`` ...);
    parts may register more with ``counter``/``gauge``/``histogram``.
    Registering a name again with the same type and labels returns the
    existing metric.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        # refresh gauges just before rendering, by owner: a new Health replaces the old one's
        self.collectors: dict[str, Callable[[], None]] = {}
        self.polls = self.counter(
            "firegate_polls_total", "Device polls completed, answered or not.", ("bus", "device")
        )
        self.poll_errors = self.counter(
            "firegate_poll_errors_total",
            "Device polls that failed, by kind (timeout, crc, exception, ...).",
            ("bus", "device", "error"),
        )
        self.device_condition = self.gauge(
            "firegate_device_condition",
            "1 while a device or camera is in a condition (alarm, fault, offline, ...), else 0.",
            ("device", "condition"),
        )
        self.detector_latency = self.histogram(
            "firegate_detector_latency_seconds",
            "Time the smoke/fire model took for one frame.",
            ("camera",),
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.frames = self.counter("firegate_frames_total", "Frames analysed.", ("camera",))
        self.outbox_depth = self.gauge(
            "firegate_outbox_depth", "Decisions stored and not yet acknowledged by the broker."
        )
        self.decisions = self.counter(
            "firegate_decisions_total", "Decisions taken, by type.", ("type",)
        )
        self.uplink_published = self.counter(
            "firegate_uplink_published_total",
            "Decisions the broker accepted (PUBACK); a decision sent again counts again.",
        )
        self.uplink_refused = self.counter(
            "firegate_uplink_refused_total",
            "Publishes the broker refused (MQTT 5 PUBACK reason code 0x80 or above, e.g. "
            "0x87 Not authorized by its ACL), by kind of topic (decision/<type>, evidence/+, "
            "status, heartbeat); each try counts.",
            ("topic",),
        )
        self.part_up = self.gauge("firegate_part_up", "1 while a part is running.", ("part",))
        self.part_progress_age = self.gauge(
            "firegate_part_progress_age_seconds",
            "Seconds since a part last completed a loop iteration.",
            ("part",),
        )
        self.part_restarts = self.counter(
            "firegate_part_restarts_total", "Restarts of a part after a crash.", ("part",)
        )
        self.watchdog_healthy = self.gauge(
            "firegate_watchdog_healthy", "1 while every part makes progress (watchdog fed)."
        )
        self.process_start = self.gauge(
            "process_start_time_seconds", "Start time of the process since the epoch."
        )
        self.process_rss = self.gauge(
            "process_resident_memory_bytes", "Resident memory of the agent in bytes."
        )
        self.process_cpu = self.counter(
            "process_cpu_seconds_total", "CPU time (user and system) of the agent in seconds."
        )
        self.asyncio_tasks = self.gauge(
            "firegate_asyncio_tasks",
            "Asyncio tasks alive in the agent: steady in a healthy agent, growth is a leak "
            "(bench/soak.py).",
        )

    def _register(self, metric: _Metric) -> Any:
        old = self._metrics.get(metric.name)
        if old is not None:
            if type(old) is not type(metric) or old.labelnames != metric.labelnames:
                raise ValueError(f"metric {metric.name} is already registered differently")
            return old
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_: str, labels: Sequence[str] = ()) -> Counter:
        c: Counter = self._register(Counter(name, help_, labels))
        return c

    def gauge(self, name: str, help_: str, labels: Sequence[str] = ()) -> Gauge:
        g: Gauge = self._register(Gauge(name, help_, labels))
        return g

    def histogram(
        self, name: str, help_: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> Histogram:
        h: Histogram = self._register(Histogram(name, help_, labels, buckets))
        return h

    def render(self) -> str:
        """The whole registry in the Prometheus text exposition format 0.0.4."""
        for collect in list(self.collectors.values()):
            try:
                collect()
            except Exception:  # a broken collector must not break the endpoint
                log.exception("metrics collector failed")
        lines: list[str] = []
        for m in self._metrics.values():
            help_text = m.help.replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"# HELP {m.name} {help_text}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            lines.extend(m.render())
        return "\n".join(lines) + "\n"


# The process-wide registry; parts update it, e.g. ``POLLS.inc(bus=b, device=d)``.
METRICS = Metrics()
POLLS = METRICS.polls
POLL_ERRORS = METRICS.poll_errors
DEVICE_CONDITION = METRICS.device_condition
DETECTOR_LATENCY = METRICS.detector_latency
FRAMES = METRICS.frames
OUTBOX_DEPTH = METRICS.outbox_depth
DECISIONS = METRICS.decisions


def _process_usage() -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of this process from /proc, or None off Linux."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/self/statm", "rb") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return cpu_s, rss_pages * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------- health


@dataclass(frozen=True)
class PartHealth:
    """What Health concluded about one part at one moment."""

    name: str
    running: bool
    progress_age_s: float | None  # None: the part does not report progress
    stalled: bool
    restarts: int = 0
    faulted: bool = False
    last_error: str = ""


@dataclass(frozen=True)
class HealthReport:
    parts: tuple[PartHealth, ...]

    @property
    def stalled(self) -> list[str]:
        return [p.name for p in self.parts if p.stalled]

    @property
    def healthy(self) -> bool:
        return not self.stalled


@dataclass
class _Stall:
    since_wall: float
    parts: list[str] = field(default_factory=list)


class Health:
    """The part that feeds the systemd watchdog and writes the status file.

    ``parts`` is watched live (pass the agent's own list; Health skips itself),
    so parts added after construction are watched too. Give the supervisor's
    ``states`` with ``bind_supervisor`` to tell crashed parts (restarting,
    not stalled) from stuck ones and to report restarts.
    A part may set its own ``stall_after_s`` attribute when its loop is
    legitimately slower than the site-wide default.
    """

    name = "health"

    def __init__(
        self,
        parts: Sequence[object],
        *,
        clock: Clock,
        notifier: Notifier | None = None,
        metrics: Metrics = METRICS,
        stall_after_s: float = 60.0,
        status_file: Path | None = None,
        status_interval_s: float = 5.0,
        metrics_port: int | None = None,
        identity: Mapping[str, str] | None = None,
    ) -> None:
        if stall_after_s <= 0 or status_interval_s <= 0:
            raise ValueError("stall_after_s and status_interval_s must be positive")
        self.parts = parts
        self.clock = clock
        self.notifier = notifier if notifier is not None else Notifier()
        self.metrics = metrics
        self.stall_after_s = stall_after_s
        self.status_file = status_file
        self.status_interval_s = status_interval_s
        self.metrics_port = metrics_port
        self.identity = dict(identity or {})
        self.progress_mono = clock.monotonic()
        self.states: Mapping[str, PartState] = {}
        self.watchdog_feeds = 0
        self.last_report = HealthReport(())
        self._start_mono = clock.monotonic()
        self._start_wall = clock.wall()
        self._stall: _Stall | None = None
        self._status_error = ""
        self._server: asyncio.Server | None = None
        self._metrics_error = ""
        self._last_summary = ""
        self._unmonitored_warned: set[str] = set()
        self._stopped = ""  # set by stopped(): how the agent ended
        metrics.collectors["health"] = self._collect

    @classmethod
    def for_site(cls, site: LoadedSite, parts: Sequence[object], clock: Clock, **kw: Any) -> Health:
        """Health configured from the site config's ``health:`` and ``storage:`` sections."""
        c = site.config
        return cls(
            parts,
            clock=clock,
            stall_after_s=c.health.stall_after_s,
            status_file=c.storage.state_dir / STATUS_FILE_NAME,
            status_interval_s=c.health.status_interval_s,
            metrics_port=c.health.metrics_port,
            identity={"site_id": c.site.site_id, "gateway_id": c.site.gateway_id},
            **kw,
        )

    def bind_supervisor(self, states: Mapping[str, PartState]) -> None:
        self.states = states

    # ----------------------------------------------------------- the pure check

    def _watched(self) -> list[object]:
        return [p for p in self.parts if p is not self]

    def check(self, now_mono: float | None = None) -> HealthReport:
        """Which parts are stalled at ``now_mono`` (default: the clock's now)."""
        now = self.clock.monotonic() if now_mono is None else now_mono
        out = []
        for p in self._watched():
            name = str(getattr(p, "name", type(p).__name__))
            st = self.states.get(name)
            running = st.running if st is not None else True
            progress = getattr(p, "progress_mono", None)
            limit = float(getattr(p, "stall_after_s", self.stall_after_s))
            if not isinstance(progress, int | float):
                if name not in self._unmonitored_warned:
                    log.warning("part %s has no progress_mono: the watchdog cannot see it", name)
                    self._unmonitored_warned.add(name)
                age = None
            else:
                # a part just (re)started gets a full stall_after_s before it must show progress
                since = max(float(progress), st.last_start_mono if st else self._start_mono)
                age = max(0.0, now - since)
            out.append(
                PartHealth(
                    name=name,
                    running=running,
                    progress_age_s=age,
                    stalled=running and age is not None and age > limit,
                    restarts=st.restarts if st else 0,
                    faulted=st.faulted if st else False,
                    last_error=st.last_error if st else "",
                )
            )
        return HealthReport(tuple(out))

    def summary(self, report: HealthReport, sections: Mapping[str, Any] | None = None) -> str:
        """One line for ``systemctl status``: the same verdict as ``firegate status``
        (``STALLED: ...``, ``DEGRADED: ...`` when a part restarts, a device is
        offline or a camera has a fault), then the counts."""
        n = len(report.parts)
        if self._stopped:
            return f"stopped {self._stopped}"
        if report.stalled:
            ages = {p.name: p.progress_age_s or 0.0 for p in report.parts}
            return "STALLED: " + ", ".join(
                f"{name} (no progress for {ages[name]:.0f} s)" for name in report.stalled
            )
        faulted = [p.name for p in report.parts if p.faulted or not p.running]
        text = f"{n - len(faulted)}/{n} parts running"
        sections = self._sections() if sections is None else sections
        for key in SECTIONS:
            if sections[key]:
                text += f"; {len(sections[key])} {key}"
        d = self.metrics.outbox_depth.get()
        if d is not None:
            text += f"; outbox {d:g}"
        parts = {p.name: {"running": p.running, "faulted": p.faulted} for p in report.parts}
        found = problems({"parts": parts, **sections})
        if found:
            text = "DEGRADED: " + "; ".join(found) + " | " + text
        return text

    def stopped(self, clean: bool) -> None:
        """The agent has stopped (every part has ended): say so in the status file
        and to systemd, so that nobody reads "stopping" with parts still running."""
        self._stopped = "cleanly" if clean else "not cleanly (a part did not end in time)"
        self.notifier.status(f"stopped {self._stopped}")
        self.write_status(self.check(), stopping=True)

    # ------------------------------------------------------------- the loop

    async def run(self) -> None:
        await self._start_metrics()
        report = self.check()
        self.notifier.ready(self.summary(report))
        wd = self.notifier.watchdog_interval_s
        if self.notifier.enabled:
            log.info(
                "under systemd: watchdog %s, stall after %.0f s",
                f"every {wd:g} s" if wd else "off",
                self.stall_after_s,
            )
        # feed at a third of the watchdog interval (real seconds) so one late tick is harmless
        tick_s = min(self.status_interval_s, 5.0)
        if wd:
            tick_s = min(tick_s, wd / 3 * self.clock.speed)
        # The status file's freshness is judged by another process against the real
        # clock, so its schedule and time stamp are real time even under a ScaledClock.
        next_status = time.monotonic()
        try:
            while True:
                report = self.tick()
                now = time.monotonic()
                if now >= next_status:
                    self.queue_status(report)
                    next_status = now + self.status_interval_s
                    await self._start_metrics()  # retries a port that was busy
                self.progress_mono = self.clock.monotonic()
                await self.clock.sleep(tick_s)
        except asyncio.CancelledError:
            self.notifier.stopping("stopping")
            self.queue_status(self.last_report, stopping=True)
            if self.status_file is not None:  # the last word on disk, if the disk answers
                await asyncio.to_thread(writer_for(self.status_file.parent).wait_idle, 2.0)
            raise
        finally:
            if self._server is not None:
                self._server.close()
                self._server = None

    def tick(self) -> HealthReport:
        """One health check: feed the watchdog if every part makes progress."""
        report = self.check()
        self.last_report = report
        if report.healthy:
            if self._stall is not None:
                log.warning("all parts make progress again; watchdog fed again")
                self._stall = None
            if self.notifier.watchdog():
                self.watchdog_feeds += 1
        elif self._stall is None or self._stall.parts != report.stalled:
            self._stall = _Stall(self.clock.wall(), report.stalled)
            log.error(
                "no progress from %s: not feeding the watchdog (systemd will restart the agent)",
                ", ".join(report.stalled),
            )
        summary = self.summary(report)
        if summary != self._last_summary:
            self.notifier.status(summary)
            self._last_summary = summary
        return report

    # ---------------------------------------------------------- status file

    def _part_status(self, p: object) -> dict[str, Any]:
        fn = getattr(p, "status", None)
        if not callable(fn):
            return {}
        try:
            st = fn()
            return dict(st) if isinstance(st, Mapping) else {"status": st}
        except Exception as e:  # one broken status() must not hide the others
            return {"status_error": f"{type(e).__name__}: {e}"}

    def _sections(self, statuses: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        if statuses is None:
            statuses = {str(getattr(p, "name", "?")): self._part_status(p) for p in self._watched()}
        out: dict[str, Any] = {k: {} for k in SECTIONS}
        out["outbox"] = None
        for part, st in statuses.items():
            for key in SECTIONS:
                items = st.get(key)
                if isinstance(items, Mapping):
                    for item, value in items.items():
                        out[key][str(item)] = {
                            "part": part,
                            **(value if isinstance(value, Mapping) else {"state": value}),
                        }
            if isinstance(st.get("outbox"), Mapping):
                out["outbox"] = {"part": part, **st["outbox"]}
        return out

    def snapshot(
        self, report: HealthReport | None = None, *, stopping: bool = False
    ) -> dict[str, Any]:
        """The status document (what ``firegate status`` reads), JSON-ready."""
        report = report if report is not None else self.check()
        now_w = time.time()  # real time: see run()
        statuses = {str(getattr(p, "name", "?")): self._part_status(p) for p in self._watched()}
        parts = {}
        for ph in report.parts:
            st = {
                k: v for k, v in statuses.get(ph.name, {}).items() if k not in (*SECTIONS, "outbox")
            }
            parts[ph.name] = {
                "running": ph.running,
                "stalled": ph.stalled,
                "progress_age_s": None
                if ph.progress_age_s is None
                else round(ph.progress_age_s, 1),
                "restarts": ph.restarts,
                "faulted": ph.faulted,
                "last_error": ph.last_error,
                "status": st,
            }
        wd = self.notifier.watchdog_interval_s
        sections = self._sections(statuses)
        doc: dict[str, Any] = {
            "format": STATUS_FORMAT,
            "version": __version__,
            "pid": os.getpid(),
            **self.identity,
            "written_at": iso(now_w),
            "written_wall": now_w,
            "interval_s": self.status_interval_s,
            "started_at": iso(self._start_wall),
            "uptime_s": round(self.clock.monotonic() - self._start_mono, 1),
            "stopping": stopping,
            "stopped": self._stopped or None,
            "healthy": report.healthy,
            "stalled": report.stalled,
            "summary": self.summary(report, sections),
            "watchdog": {
                "systemd": self.notifier.enabled,
                "interval_s": wd,
                "stall_after_s": self.stall_after_s,
                "feeds": self.watchdog_feeds,
            },
            "metrics": {
                "port": self.metrics_port if self._server is not None else None,
                "error": self._metrics_error,
            },
            "parts": parts,
            **sections,
        }
        doc["problems"] = [] if self._stopped else problems(doc)
        return doc

    def write_status(self, report: HealthReport | None = None, *, stopping: bool = False) -> bool:
        """Write the status file atomically. Never raises; False when it could not."""
        if self.status_file is None:
            return False
        try:
            doc = self.snapshot(report, stopping=stopping)
        except (OSError, TypeError, ValueError) as e:
            log.warning("cannot build status file %s: %s", self.status_file, e)
            return False
        return self._write_doc(doc)

    def queue_status(self, report: HealthReport | None = None, *, stopping: bool = False) -> None:
        """``write_status`` on the state folder's writer thread: a stalled disk
        never stops the loop (the runner reports the stall as a FAULT)."""
        if self.status_file is None:
            return
        try:
            doc = self.snapshot(report, stopping=stopping)
        except (TypeError, ValueError) as e:
            log.warning("cannot build status file %s: %s", self.status_file, e)
            return
        writer_for(self.status_file.parent).put(STATUS_FILE_NAME, lambda: self._write_doc(doc))

    def _write_doc(self, doc: Mapping[str, Any]) -> bool:
        assert self.status_file is not None
        try:
            write_json_atomic(self.status_file, doc)
        except (OSError, TypeError, ValueError) as e:
            msg = f"{type(e).__name__}: {e}"
            if msg != self._status_error:
                log.warning("cannot write status file %s: %s", self.status_file, msg)
                self._status_error = msg
            return False
        if self._status_error:
            log.info("status file %s written again", self.status_file)
            self._status_error = ""
        return True

    def status(self) -> dict[str, Any]:
        r = self.last_report
        return {
            "healthy": r.healthy,
            "stalled": r.stalled,
            "watchdog_feeds": self.watchdog_feeds,
            "status_file_error": self._status_error,
        }

    # --------------------------------------------------------------- metrics

    def _collect(self) -> None:
        m = self.metrics
        report = self.last_report
        for p in report.parts:
            m.part_up.set(1.0 if p.running else 0.0, part=p.name)
            if p.progress_age_s is not None:
                m.part_progress_age.set(p.progress_age_s, part=p.name)
            m.part_restarts.set_total(p.restarts, part=p.name)
        m.watchdog_healthy.set(1.0 if report.healthy else 0.0)
        with contextlib.suppress(RuntimeError):  # collected outside the loop (a test)
            m.asyncio_tasks.set(len(asyncio.all_tasks()))
        m.process_start.set(self._start_wall)
        usage = _process_usage()
        if usage is not None:
            m.process_cpu.set_total(usage[0])
            m.process_rss.set(usage[1])

    async def _start_metrics(self) -> None:
        if self.metrics_port is None or self._server is not None:
            return
        try:
            self._server = await asyncio.start_server(
                self._serve_metrics, METRICS_HOST, self.metrics_port
            )
        except OSError as e:
            msg = f"cannot listen on {METRICS_HOST}:{self.metrics_port}: {e.strerror or e}"
            if msg != self._metrics_error:
                log.error("metrics: %s (will retry)", msg)
                self._metrics_error = msg
            return
        self._metrics_error = ""
        log.info("metrics on http://%s:%d/metrics", METRICS_HOST, self.metrics_port)

    async def _serve_metrics(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            # real-time I/O timeout: a stuck client must not hold a connection open
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            request = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(request) != 3 or request[0] not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif request[1].split("?", 1)[0] != "/metrics":
                status, body, ctype = "404 Not Found", b"see /metrics\n", "text/plain"
            else:
                status = "200 OK"
                body = self.metrics.render().encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if request and request[0] != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a broken or slow client; nothing to report
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def write_json_atomic(path: Path, doc: Mapping[str, Any], mode: int = 0o640) -> None:
    """Write JSON so that a reader sees the old file or the new one, never half of one.

    No fsync: the status file is rewritten every few seconds and losing the
    last one in a power cut costs nothing, while syncing would wear an SD card.
    """
    # the one redaction of every output: what `firegate status` and others read
    data = redact(json.dumps(doc, default=str, separators=(",", ":"), sort_keys=False)).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # exactly ``mode``: the agent runs with umask 077
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def attach(parts: list[Any], site: LoadedSite, clock: Clock, **kw: Any) -> Health:
    """Create Health for ``parts`` (the agent's own list) and append it to them."""
    health = Health.for_site(site, parts, clock, **kw)
    parts.append(health)
    return health


def iter_parts(doc: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    parts = doc.get("parts")
    return parts.items() if isinstance(parts, Mapping) else ()
