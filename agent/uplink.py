"""The uplink: delivers the outbox's decisions to the monitoring centre's MQTT broker.

A decision counts as delivered only when the broker's PUBACK arrives and
accepts it: ``agent.mqtt.AckedClient.publish_acked`` publishes with QoS 1
(paho-mqtt calls ``on_publish`` for QoS 1 only from its PUBACK handler; for
QoS 0 it would fire on write) and, under MQTT 5 (``mqtt_version``, the
default), raises ``PublishRefused`` when the PUBACK's reason code is a
failure (0x87 Not authorized: the broker's ACL denies the topic). Only an
accepted PUBACK removes the decision from the outbox. Under MQTT 3.1.1 a
broker acknowledges a publish it refused like any other (mosquitto does), so
there a refusal cannot be seen.

Topics, under ``topic_root`` (default ``firegate/<site_id>/<gateway_id>``):

* ``decision/<type>``: one topic per decision type (fire_alarm,
  electrical_prealarm, fault, restore, stats); QoS 1, not retained; the
  versioned JSON payload of ``agent/schemas/decision.schema.json``.
* ``evidence/<decision id>``: the JPEG snapshot of a decision; QoS 1.
* ``zone/<zone>/state``: a zone's state (``zone_state`` decisions: verifying,
  confirmed, held), QoS 1, retained: the centre shows it, never pages on it.
* ``status``: retained ``online`` (agent version, start time) at connect; the
  last will sets it to ``offline`` (retained) when the link dies; a clean stop
  publishes ``offline`` itself.
* ``heartbeat``: every ``heartbeat_s``, with the outbox backlog; QoS 1.
* ``request/<name>`` (only when ``downlink`` is on): ``snapshot`` and
  ``state`` requests from the centre, filtered, rate-limited and answered by
  ``agent.downlink.Downlink`` (answers on ``decision/stats``, published once,
  never stored); nothing else is accepted, and nothing from the network
  changes the site's safety behaviour. Requests and their answers use a
  connection of their own (client id ``<client_id>-downlink``, no will),
  opened while the alarms' connection is up: the broker sends a client's
  packets in order, so on a shared connection a flood of requests delayed a
  fire alarm's PUBACK behind it. No packet larger than
  ``agent.downlink.MAX_PACKET_BYTES`` is taken from the broker (see
  ``agent.mqtt``).

Delivery order is the outbox's: strict priority, oldest first within one.
Up to ``inflight_max`` decisions await their PUBACK at once; a fire alarm
stored while a backlog drains is the next message published. A publish
without PUBACK within ``publish_timeout_s`` ends the connection; the decision
stays stored and is sent again (same id) on the next one. Reconnects use full
jitter (``reconnect_delay_s``): the first try after a lost link comes at a
random moment within ``reconnect_window_s``, the window doubling with each
failed try up to ``reconnect_max_s``, so that a broker restart does not bring
a province's gateways back in one second. A fire alarm does not wait for it:
while one waits in the outbox the next try comes no later than
``ALARM_RETRY_S`` after the last one began, and one stored during the wait
cuts it short (at most one try per ``ALARM_RETRY_S``: a flapping broker is
not hammered). A refused login or a TLS error is one clear log
line per episode, a health fault in ``status()``, and a FAULT decision kept in
the outbox (a RESTORE follows once connected); nothing is dropped meanwhile.

A refused publish (MQTT 5) holds back its kind of topic, not the link and not
the rest of the queue. The kinds are ``decision/<type>`` (one per decision
type, so one per priority), ``evidence/+`` (every snapshot), ``status`` and
``heartbeat``. While a kind is refused its decisions stay in the outbox and
are not published, except one try at a time: the oldest one, after a backoff
that starts at ``reconnect_min_s`` and doubles up to ``reconnect_max_s`` (an
ACL stays wrong until someone fixes it, so there is no point in hammering).
Every other kind keeps flowing in the outbox's order: a refused fault does not
delay a fire alarm, and a refused fire alarm does not stop the faults. Within
a refused kind nothing overtakes the oldest decision (its try goes first and
the rest follow it in order once it is accepted), so the outbox's order
within a priority holds; across priorities, decisions of the other kinds are
delivered before the held ones, which is the point. ``status`` is tried again
with each heartbeat, ``heartbeat`` at its own pace. An episode, from the first
refusal of a kind to its first accepted try, is one ERROR line naming the
topic and the reason, a health fault in ``status()``, and a FAULT decision
(itself held if the broker refuses faults too); the accepted try logs once
and stores a RESTORE.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import re
import sqlite3
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from agent.clock import Clock
from agent.downlink import (
    MAX_PACKET_BYTES,
    REQUEST_MAX_BYTES,
    REQUESTS,
    Downlink,
    RequestHook,
)
from agent.events import PRIORITY, Decision, DecisionType, gateway_decision, iso
from agent.logs import redact
from agent.mqtt import (
    AckedClient,
    PublishRefused,
    SubscribeRefused,
    reraise_if_cancelled,
    session_options,
)
from agent.outbox import SNAPSHOT, Outbox, OutboxError, Pending
from agent.siteconfig.models import SiteConfig, UplinkConfig

log = logging.getLogger(__name__)
MQTT_LOG = logging.getLogger(f"{__name__}.mqtt")  # paho-mqtt's own messages
INCOMING_QUEUE_MAX = 256  # received messages waiting for the listener


class _QueueFullOncePerMinute(logging.Filter):
    """aiomqtt warns once per message dropped from a full incoming queue: under a
    flood that is thousands of lines a second. Keep one a minute, with a count."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self._last = -60.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Message queue is full"):
            return True
        self.dropped += 1
        now = time.monotonic()
        if now - self._last < 60.0:
            return False
        self._last = now
        record.msg = (
            "downlink: more requests than the gateway reads; dropped %d so far "
            "(logged at most once a minute)"
        )
        record.args = (self.dropped,)
        return True


QUEUE_FULL = _QueueFullOncePerMinute()
MQTT_LOG.addFilter(QUEUE_FULL)

PAYLOAD_SCHEMA = 1  # "schema" of every JSON payload; bump on an incompatible change
__all__ = ["REQUESTS", "REQUEST_MAX_BYTES", "RequestHook", "Uplink"]
READ_AHEAD = 256  # decisions read from the outbox per look while a backlog drains
# The next look starts while this many are still read ahead: the drain does not
# wait for the outbox thread (busy with a group's delete commit) between looks.
READ_LOW = READ_AHEAD // 2
IDLE_WAKE_S = 2.0
# A connection that lasted this long (or delivered something) resets the
# reconnect backoff; one that drops at once (kicked, flapping) keeps backing off.
STABLE_S = 30.0  # bound on every wait, so progress_mono moves while idle

_LOGIN_CODES = {4, 5, 134, 135}  # MQTT 3.1.1 CONNACK 4/5, MQTT 5 reason 0x86/0x87

# Kinds of topic a broker may refuse (relative to topic_root); see the module docstring
EVIDENCE_KIND = "evidence/+"
STATUS_KIND = "status"
HEARTBEAT_KIND = "heartbeat"
DOWNLINK_KIND = "request/+"  # the downlink subscription (refused by SUBACK, not PUBACK)
DOWNLINK_SUFFIX = "-downlink"  # client id of the requests' own connection: <client_id>-downlink
RETRY_MIN_WAIT_S = 0.01  # a due retry with no free slot waits for a PUBACK, not in a loop
# While a fire alarm waits in the outbox, tries of the connection come at least
# this often (and not more often): it reaches the centre within seconds of the
# broker's return, whatever the reconnect jitter, without hammering a broker.
ALARM_RETRY_S = 3.0
ALARM_PART = DecisionType.FIRE_ALARM.value  # the highest priority (PRIORITY 0)
RECONNECT_EXP_MAX = 32  # the window stops doubling long before; no float overflow


def reconnect_delay_s(
    config: UplinkConfig, failures: int, rng: random.Random | None = None
) -> float:
    """The wait before the next connection try after ``failures`` (>= 1) in a row.

    Full jitter: uniform between ``reconnect_min_s`` and a window that is
    ``reconnect_window_s`` for the first retry and doubles with each further
    failure, never beyond ``reconnect_max_s``.
    """
    n = min(max(failures, 1) - 1, RECONNECT_EXP_MAX)
    window = min(config.reconnect_max_s, config.reconnect_window_s * 2**n)
    return (rng or random).uniform(min(config.reconnect_min_s, window), window)


def _action(kind: str) -> str:
    """What the broker refuses or accepts for ``kind``, as in "refused <action> <topic>"."""
    return "the subscription to" if kind == DOWNLINK_KIND else "publishing to"


def _part_of(kind: str) -> str | None:
    """The outbox part (``Pending.part``) a kind of topic holds back; None: no outbox rows."""
    if kind == EVIDENCE_KIND:
        return SNAPSHOT
    return kind.removeprefix("decision/") if kind.startswith("decision/") else None


@dataclass(slots=True)
class _Refused:
    """One refusal episode of one kind of topic: from its first refused publish
    to the first accepted one."""

    topic: str  # the refused topic (for evidence/+: the latest one tried)
    why: str  # e.g. "0x87 Not authorized"
    since_wall: float
    delay_s: float  # before the next try; doubles per refused try up to reconnect_max_s
    retry_mono: float
    refusals: int = 1
    trying: bool = False  # one try of this kind is in flight


@dataclass(frozen=True, slots=True)
class _Sent:
    """A decision published and waiting for its PUBACK (``AckedClient.publish_soon``)."""

    topic: str
    mid: int
    fut: asyncio.Future[Any]


@dataclass(frozen=True, slots=True)
class Topics:
    root: str

    def decision(self, type_: str) -> str:
        return f"{self.root}/decision/{type_}"

    def evidence(self, decision_id: str) -> str:
        return f"{self.root}/evidence/{decision_id}"

    def zone_state(self, zone: str) -> str:
        return f"{self.root}/zone/{zone}/state"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def heartbeat(self) -> str:
        return f"{self.root}/heartbeat"

    @property
    def requests(self) -> str:
        return f"{self.root}/request/+"

    def request_name(self, topic: str) -> str | None:
        prefix = f"{self.root}/request/"
        return topic[len(prefix) :] if topic.startswith(prefix) else None


def topics_for(config: UplinkConfig, site: SiteConfig) -> Topics:
    root = config.topic_root.format(site_id=site.site.site_id, gateway_id=site.site.gateway_id)
    return Topics(root.rstrip("/"))


def client_id_for(config: UplinkConfig, site: SiteConfig) -> str:
    return config.client_id or f"firegate-{site.site.site_id}-{site.site.gateway_id}"


def read_password(config: UplinkConfig) -> str | None:
    """The broker password: from the config, or the first line of ``password_file``
    (its line ending dropped). Raises OSError when the file cannot be read."""
    if config.password is not None:
        return config.password.get_secret_value()
    if config.password_file is not None:
        return config.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    return None


def tls_context_for(config: UplinkConfig) -> ssl.SSLContext | None:
    """The TLS context for ``config.tls`` (None without TLS). Raises OSError or
    ssl.SSLError when the CA, certificate or key file is missing or unusable."""
    if config.tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(config.tls.ca_file))
    if config.tls.cert_file is not None and config.tls.key_file is not None:
        ctx.load_cert_chain(str(config.tls.cert_file), str(config.tls.key_file))
    return ctx


def decision_payload(
    stored: dict[str, Any], *, site_id: str, gateway_id: str, sent_wall: float, topics: Topics
) -> dict[str, Any]:
    """The versioned wire form of a stored ``Decision.to_dict()``.

    ``first_seen`` and ``confirmed_at`` are the original times; ``sent_at`` is
    this attempt's publish time (a re-send has a later one, the same ``id``).
    """
    out: dict[str, Any] = {"schema": PAYLOAD_SCHEMA, **stored}
    out["site_id"] = site_id
    out["gateway_id"] = gateway_id
    out["priority"] = PRIORITY[DecisionType(stored["type"])]
    out["sent_at"] = iso(sent_wall)
    out["evidence_topic"] = topics.evidence(stored["id"]) if stored.get("has_snapshot") else None
    return out


# Keys decision_payload adds to the stored dict: a stored payload that holds one
# of them already is encoded the long way (a dict keeps one value per key).
_WIRE_KEYS = ("schema", "site_id", "gateway_id", "priority", "sent_at", "evidence_topic")
_CLASH = re.compile("|".join(f'"{k}":' for k in _WIRE_KEYS))
# Decision.to_dict() ends with has_snapshot: which of these the stored text ends
# with says it without decoding it (a nested key cannot end the text so).
_NO_SNAPSHOT_END = ',"has_snapshot":false}'
_SNAPSHOT_END = ',"has_snapshot":true}'


@functools.lru_cache(maxsize=64)
def _wire_ids(site_id: str, gateway_id: str, type_: str) -> str:
    """The per-uplink, per-type keys of the wire form, as JSON members."""
    return (
        f'"site_id":{json.dumps(site_id, ensure_ascii=False)},'
        f'"gateway_id":{json.dumps(gateway_id, ensure_ascii=False)},'
        f'"priority":{PRIORITY[DecisionType(type_)]}'
    )


def wire_payload(
    p: Pending, *, site_id: str, gateway_id: str, sent_wall: float, topics: Topics
) -> str:
    """``redact(json.dumps(decision_payload(p.payload, ...)))``, the text published
    for ``p``, built without decoding and encoding the stored payload again.

    The outbox stores ``Decision.to_dict()`` as compact JSON (``p.raw``); its
    wire form is that object with ``schema`` in front and the per-send keys
    behind it, in decision_payload's order, so the stored text is spliced in
    between (tests/uplink/test_uplink_wire.py checks that both give the same
    text). Redacting the pieces or the whole is the same: no secret pattern
    of agent.logs crosses a JSON string's quotes. ``p.payload`` is decoded
    only when the text does not say whether there is a snapshot.
    """
    raw = p.raw
    if len(raw) < 3 or raw[0] != "{" or raw[-1] != "}" or _CLASH.search(raw):
        body = decision_payload(
            p.payload,
            site_id=site_id,
            gateway_id=gateway_id,
            sent_wall=sent_wall,
            topics=topics,
        )
        return redact(json.dumps(body, separators=(",", ":"), ensure_ascii=False))
    if raw.endswith(_NO_SNAPSHOT_END):
        snapshot = False
    elif raw.endswith(_SNAPSHOT_END):
        snapshot = True
    else:
        snapshot = bool(p.payload.get("has_snapshot"))
    evidence = json.dumps(topics.evidence(p.id), ensure_ascii=False) if snapshot else "null"
    return redact(
        f'{{"schema":{PAYLOAD_SCHEMA},{raw[1:-1]},{_wire_ids(site_id, gateway_id, p.type)},'
        f'"sent_at":"{iso(sent_wall)}","evidence_topic":{evidence}}}'
    )


class UplinkConfigError(Exception):
    """The uplink's own settings cannot be used (password file, certificate files)."""


class _NoPuback(Exception):
    pass


class Uplink:
    """A Part: keeps a connection to the broker and drains the outbox through it."""

    name = "uplink"

    def __init__(
        self,
        config: UplinkConfig,
        site: SiteConfig,
        outbox: Outbox,
        clock: Clock,
        version: str,
        *,
        on_request: RequestHook | None = None,
    ) -> None:
        self.config = config
        self.site = site
        self.outbox = outbox
        self.clock = clock
        self.version = version
        self.on_request = on_request
        self.topics = topics_for(config, site)
        self.client_id = client_id_for(config, site)
        self.progress_mono = clock.monotonic()
        self.started_wall = clock.wall()
        self.state = "starting"  # connecting | connected | backoff
        self.fault: str | None = None  # health fault: login refused, TLS error, config
        self.last_error = ""
        self.connected_since_wall: float | None = None
        self.connects = 0
        self.downlink_connects = 0  # of the requests' own connection
        self.published = 0  # decisions PUBACKed (re-sends counted again)
        self.refused = 0  # publishes the broker refused (each try counted)
        self.refused_by_kind: dict[str, int] = {}
        self._refused: dict[str, _Refused] = {}  # kinds of topic refused now, by kind
        self._released = False  # a refused kind was accepted again: the drain looks again
        self.resent_after_timeout = 0
        self.last_puback_wall: float | None = None
        # (decision, PUBACK wall time) of the last deliveries: their confirmed_at
        # is read (payload decoded, time parsed) only when status() asks; per
        # PUBACK that cost the drain ~10 us each
        self._latency_s: deque[tuple[Pending, float]] = deque(maxlen=256)
        self._fault_reported: str | None = None
        self._request_tasks: set[asyncio.Task[None]] = set()
        self.downlink = Downlink(clock, on_request)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        lat = sorted(
            x
            for p, at in self._latency_s
            if isinstance(c := p.payload.get("confirmed_at"), str)
            and (x := _age_s(c, at)) is not None
        )
        now = self.clock.monotonic()
        return {
            "state": self.state,
            "broker": f"{self.config.host}:{self.config.effective_port}",
            "mqtt_version": self.config.mqtt_version,
            "client_id": self.client_id,
            "fault": self.health_fault(),
            "last_error": self.last_error,
            "refused": {
                kind: {
                    "topic": r.topic,
                    "reason": r.why,
                    "since": iso(r.since_wall),
                    "refusals": r.refusals,
                    "next_try_in_s": round(max(0.0, r.retry_mono - now), 1),
                }
                for kind, r in self._refused.items()
            },
            "refused_total": self.refused,
            "connected_since": None
            if self.connected_since_wall is None
            else iso(self.connected_since_wall),
            "connects": self.connects,
            "published": self.published,
            "last_puback": None if self.last_puback_wall is None else iso(self.last_puback_wall),
            "latency_median_s": round(lat[len(lat) // 2], 4) if lat else None,
            "queued": self.outbox.status()["rows"],
            "outbox": self.outbox.status(),  # `firegate status` shows it as its own section
            **({"downlink": self.downlink.status()} if self.config.downlink else {}),
        }

    def health_fault(self) -> str | None:
        """The link's fault (login, TLS, settings) and every refused kind of topic, or None."""
        faults = [self.fault] if self.fault else []
        faults += [
            f"broker refuses the subscription to {r.topic} ({r.why}); "
            "requests from the centre do not arrive"
            if kind == DOWNLINK_KIND
            else f"broker refuses {r.topic} ({r.why}); held in the outbox"
            for kind, r in self._refused.items()
        ]
        return "; ".join(faults) or None

    # -------------------------------------------------------------------- loop

    async def run(self) -> None:
        failures = 0
        while True:
            self.progress_mono = tried_mono = self.clock.monotonic()
            self.state = "connecting"
            link_errors = _LinkErrors()
            MQTT_LOG.addHandler(link_errors)
            connected_mono: float | None = None
            published_before = self.published
            try:
                client = self._client()
                async with client:
                    # aiomqtt waits for the CONNACK with asyncio.wait_for, which on
                    # Python 3.11 drops a cancellation that lands with the CONNACK
                    # (CPython gh-86296): a stop asked for meanwhile is honoured here
                    reraise_if_cancelled()
                    connected_mono = self.clock.monotonic()
                    await self._session(client)
            except asyncio.CancelledError:
                self.state = "stopped"
                self.connected_since_wall = None
                raise
            except UplinkConfigError as e:
                self._health_fault(f"uplink settings: {e}")
            except (aiomqtt.MqttError, _NoPuback, OSError) as e:
                reraise_if_cancelled()  # a stop that aiomqtt reported as an MqttError
                self._classify(e, link_errors.last)
            finally:
                MQTT_LOG.removeHandler(link_errors)
            self.connected_since_wall = None
            if connected_mono is not None and (
                self.published > published_before
                or self.clock.monotonic() - connected_mono >= STABLE_S
            ):
                failures = 0  # a link that delivered or held a while starts afresh
            failures += 1
            delay = reconnect_delay_s(self.config, failures)
            self.state = "backoff"
            log.debug("uplink: reconnecting in %.1f s", delay)
            await self._backoff(delay, tried_mono)

    async def _backoff(self, seconds: float, tried_mono: float) -> None:
        """Wait ``seconds`` before the next try, but no later than ``ALARM_RETRY_S``
        after the last try began (``tried_mono``) while a fire alarm waits in the
        outbox; one stored during the wait ends it then (at once, if that is past)."""
        end = self.clock.monotonic() + seconds
        alarm_end = tried_mono + ALARM_RETRY_S
        changed = self.outbox.changed
        changed.set()  # look once at the start: a fire alarm may wait already
        while True:
            self.progress_mono = self.clock.monotonic()
            if changed.is_set():
                changed.clear()
                if end > alarm_end and await self._fire_alarm_waits():
                    log.debug("uplink: a fire alarm waits; the next try does not wait longer")
                    end = alarm_end
            left = end - self.clock.monotonic()
            if left <= 0:
                return
            sleep = asyncio.ensure_future(self.clock.sleep(min(left, IDLE_WAKE_S)))
            stored = asyncio.ensure_future(changed.wait())
            try:
                await asyncio.wait((sleep, stored), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                stored.cancel()

    async def _fire_alarm_waits(self) -> bool:
        """A fire alarm is stored and not yet delivered (its snapshot does not count)."""
        try:
            return bool(await self.outbox.next_batch(1, only=ALARM_PART))
        except (OutboxError, sqlite3.Error, OSError) as e:  # the outbox reports it itself
            log.debug("uplink: cannot look for a waiting fire alarm: %s", e)
            return False

    def _client(self, *, downlink: bool = False) -> AckedClient:
        """The alarms' connection, or (``downlink``) the requests' own: client id
        ``<client_id>-downlink``, no will (the status is the alarms' connection's)."""
        cfg = self.config
        try:
            password = read_password(cfg)
        except OSError as e:
            raise UplinkConfigError(
                f"cannot read password_file {cfg.password_file}: {e.strerror}; "
                "check the path and that the firegate user may read it"
            ) from None
        try:
            tls_context = tls_context_for(cfg)
        except (OSError, ssl.SSLError) as e:
            assert cfg.tls is not None
            raise UplinkConfigError(
                f"TLS files unusable (ca_file {cfg.tls.ca_file}, cert_file "
                f"{cfg.tls.cert_file}, key_file {cfg.tls.key_file}): {e}"
            ) from None
        offline = self._status_payload("offline", reason="connection lost")
        client = AckedClient(
            cfg.host,
            cfg.effective_port,
            identifier=self.client_id + (DOWNLINK_SUFFIX if downlink else ""),
            username=cfg.username,
            password=password,
            keepalive=cfg.keepalive_s,
            # The outbox, not the broker session, holds what is unacknowledged:
            # a clean session per connection, every unacked decision re-sent by us.
            **session_options(cfg.mqtt_version),
            timeout=cfg.publish_timeout_s,
            tls_context=tls_context,
            max_inflight_messages=cfg.inflight_max + 4,  # room for status and heartbeat
            will=None
            if downlink
            else aiomqtt.Will(self.topics.status, offline, qos=1, retain=True),
            logger=MQTT_LOG,
            # Nothing the gateway expects from the broker is larger; a bigger
            # packet is refused before it is buffered (see agent.mqtt).
            max_packet_bytes=MAX_PACKET_BYTES,
            on_oversize=self.downlink.oversize,
            # a flood of requests waits here at most this deep (each <= MAX_PACKET_BYTES);
            # the rest is dropped (aiomqtt's warning is logged once a minute)
            max_queued_incoming_messages=INCOMING_QUEUE_MAX,
        )
        client.pending_calls_threshold = cfg.inflight_max + 8  # not a warning per backlog
        return client

    def _status_payload(self, state: str, **extra: Any) -> bytes:
        body = {
            "schema": PAYLOAD_SCHEMA,
            "state": state,
            "site_id": self.site.site.site_id,
            "gateway_id": self.site.site.gateway_id,
            "client_id": self.client_id,
            "version": self.version,
            "started_at": iso(self.started_wall),
            "time": iso(self.clock.wall()),
            **extra,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    async def _session(self, client: AckedClient) -> None:
        self.state = "connected"
        self.connects += 1
        self.connected_since_wall = self.clock.wall()
        log.info(
            "uplink connected to %s:%d as %s",
            self.config.host,
            self.config.effective_port,
            self.client_id,
        )
        await self._publish_online(client)
        if self._fault_reported is not None:
            await self._report(DecisionType.RESTORE, f"uplink connected again ({self.fault})")
            self._fault_reported = None
        self.fault = None
        self.last_error = ""
        try:
            # The group runs in a task of its own. On Python 3.11 a TaskGroup whose
            # child fails while the group waits in __aexit__ (a dropped connection
            # ends _listen) cancels its parent task and never takes that back: the
            # parent's cancelling() stays above zero for good (CPython gh-116720,
            # fixed in later versions). Here that parent is a throwaway task, not
            # the uplink's, so a later clean stop and any guard that asks "am I
            # being cancelled?" see the truth. Cancelling the uplink cancels it too.
            await asyncio.create_task(self._serve(client), name="uplink-session")
        except BaseExceptionGroup as eg:
            raise _first(eg) from None
        finally:
            # A clean stop says so itself; the will covers every other ending.
            if _cancelling():
                with contextlib.suppress(Exception):
                    await client.publish_acked(
                        self.topics.status,
                        self._status_payload("offline", reason="shutdown"),
                        retain=True,
                        timeout_s=1.0,
                    )

    async def _serve(self, client: AckedClient) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._listen(client))
            tg.create_task(self._heartbeat(client))
            tg.create_task(self._drain(client))
            if self.config.downlink:
                tg.create_task(self._downlink_link())

    async def _downlink_link(self) -> None:
        """The centre's requests on a connection of their own, for as long as the
        alarms' connection is up: a flood of requests queues there (the broker
        sends a client's packets in order), never in front of a fire alarm's
        PUBACK. Its failures are logged and retried; they never end the alarms'
        connection."""
        failures = 0
        while True:
            try:
                async with self._client(downlink=True) as dl:
                    self.downlink_connects += 1
                    failures = 0
                    # a task of its own, as _session does (CPython gh-116720)
                    await asyncio.create_task(self._downlink_serve(dl), name="uplink-downlink")
            except BaseExceptionGroup as eg:
                reraise_if_cancelled()
                e = _first(eg)
                if not isinstance(e, (aiomqtt.MqttError, OSError)):
                    raise e from None
                self._downlink_lost(e)
            except (aiomqtt.MqttError, OSError, UplinkConfigError) as e:
                reraise_if_cancelled()
                self._downlink_lost(e)
            failures += 1
            await self.clock.sleep(reconnect_delay_s(self.config, failures))

    def _downlink_lost(self, e: BaseException) -> None:
        log.warning(
            "downlink: connection %s%s to the broker lost or refused (%s); requests from "
            "the centre wait, alarms are not affected; retrying",
            self.client_id,
            DOWNLINK_SUFFIX,
            e,
        )

    async def _downlink_serve(self, dl: AckedClient) -> None:
        await self._subscribe_downlink(dl)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._listen(dl))
            tg.create_task(
                self.downlink.serve(
                    lambda d, ids: self._publish_answer(dl, d, ids),
                    lambda sent: self._republish(dl, sent),
                )
            )
            while True:  # a refused subscription is tried again at the heartbeat's pace
                await self.clock.sleep(self.config.heartbeat_s)
                if DOWNLINK_KIND in self._refused:
                    await self._subscribe_downlink(dl)

    async def _publish_online(self, client: AckedClient) -> None:
        """The retained ``online`` status; a refusal is reported, the link goes on."""
        try:
            await client.publish_acked(
                self.topics.status,
                self._status_payload("online"),
                retain=True,
                timeout_s=self.config.publish_timeout_s,
            )
        except PublishRefused as e:
            self._on_refused(STATUS_KIND, e, retry=True)
        else:
            self._on_accepted(STATUS_KIND)

    async def _listen(self, client: AckedClient) -> None:
        """Ends (raises) when the connection drops; hands downlink requests on."""
        async for message in client.messages:
            name = self.topics.request_name(str(message.topic))
            if name is None or not self.config.downlink:
                continue
            self.downlink.offer(name, message.payload, retain=message.retain)

    async def _publish_answer(
        self, client: AckedClient, answer: Decision, request_ids: list[str]
    ) -> list[tuple[str, bytes]]:
        """Publish the answer to a request (and its snapshot) once, not stored: it
        need not survive a power cut. Returns what was sent, for replays."""
        stored = answer.to_dict()
        stored["details"] = {**stored["details"], "request_ids": request_ids}
        site = self.site.site
        body = decision_payload(
            stored,
            site_id=site.site_id,
            gateway_id=site.gateway_id,
            sent_wall=self.clock.wall(),
            topics=self.topics,
        )
        sent = [
            (
                self.topics.decision(answer.type.value),
                redact(json.dumps(body, separators=(",", ":"), ensure_ascii=False)).encode(),
            )
        ]
        if answer.snapshot_jpeg is not None:
            sent.append((self.topics.evidence(answer.id), answer.snapshot_jpeg))
        await self._republish(client, sent)
        return sent

    async def _republish(self, client: AckedClient, sent: list[tuple[str, bytes]]) -> None:
        for topic, payload in sent:
            try:
                await client.publish_acked(topic, payload, timeout_s=self.config.publish_timeout_s)
            except PublishRefused as e:
                log.warning("downlink: the broker refused the answer on %s (%s)", topic, e.why)
                return

    async def _subscribe_downlink(self, client: AckedClient) -> None:
        """Subscribe to the centre's requests; a refusal is reported, the link goes on."""
        try:
            await client.subscribe_checked(
                self.topics.requests,
                qos=1,
                timeout_s=self.config.publish_timeout_s,
                live_only=True,  # retained requests never arrive, or arrive marked
            )
        except SubscribeRefused as e:
            self._on_refused(DOWNLINK_KIND, e, retry=True)
        else:
            self._on_accepted(DOWNLINK_KIND)

    async def _heartbeat(self, client: AckedClient) -> None:
        while True:
            reraise_if_cancelled()  # one a library swallowed (see _drain)
            if STATUS_KIND in self._refused:
                await self._publish_online(client)
            ob = self.outbox.status()
            body = {
                "schema": PAYLOAD_SCHEMA,
                "time": iso(self.clock.wall()),
                "uptime_s": round(self.clock.wall() - self.started_wall, 1),
                "queued": ob["rows"],
                "queued_by_type": ob["by_type"],
                "outbox_fault": ob["cap_reached"] or ob["write_failing"],
            }
            try:
                await client.publish_acked(
                    self.topics.heartbeat,
                    json.dumps(body, separators=(",", ":")),
                    timeout_s=self.config.publish_timeout_s,
                )
            except PublishRefused as e:
                self._on_refused(HEARTBEAT_KIND, e, retry=True)
            else:
                self._on_accepted(HEARTBEAT_KIND)
            await self.clock.sleep(self.config.heartbeat_s)

    async def _drain(self, client: AckedClient) -> None:
        """Keep up to ``inflight_max`` decisions awaiting PUBACK, in outbox order.

        One wake-up event for everything (a PUBACK, a newly stored decision,
        the idle bound) keeps the cost per message independent of the window.
        Refused kinds of topic are held back but for one try after their
        backoff (see the module docstring).

        Every decision is published in the outbox's order, in the turn that
        takes it from the read-ahead. One without a snapshot (nearly every
        one) has no task of its own: its PUBACK's callback deletes it and
        publishes the next ones read ahead, in the same turn of the event
        loop, while nothing new was stored (a fire alarm stored meanwhile
        makes this loop read again, and go first). A task per decision (with
        its own timer) cost a backlog's drain about four turns of the loop per
        PUBACK. A decision with a snapshot waits for its PUBACK in a task that
        then sends the snapshot; so do a snapshot left from an earlier
        connection and the one try of a refused kind. The oldest publish
        without a task and without PUBACK after ``publish_timeout_s`` ends
        the connection, as a task's own timeout does.
        """
        window = self.config.inflight_max
        timeout_s = self.config.publish_timeout_s
        loop = asyncio.get_running_loop()
        inflight: dict[str, asyncio.Task[None]] = {}  # deliveries with a task
        quick: dict[str, int] = {}  # deliveries without one: decision id -> packet id
        # quick publishes in publishing order: (PUBACK deadline in loop time, decision, future)
        sent: deque[tuple[float, Pending, asyncio.Future[Any]]] = deque()
        failed: list[BaseException] = []  # a quick publish paho could not queue
        wake = asyncio.Event()
        new = True  # something was stored since the last look: look now
        ready: deque[Pending] = deque()  # read ahead, in send order
        dry = False  # the last look found no more than it got
        over = False  # this connection's drain has ended
        reading: asyncio.Task[list[Pending]] | None = None  # the next look, under way
        read_want = 0
        launched: set[str] | None = None  # published while a look was under way
        for r in self._refused.values():
            r.trying = False  # a try cut short by the last connection is over

        async def relay_stored() -> None:
            nonlocal new
            while True:
                await self.outbox.changed.wait()
                self.outbox.changed.clear()
                new = True
                wake.set()

        def finished(_task: asyncio.Task[None]) -> None:
            wake.set()

        def start(p: Pending, retry: str | None = None, out: _Sent | None = None) -> None:
            task = asyncio.create_task(self._deliver(client, p, retry, out))
            task.add_done_callback(finished)
            inflight[p.id] = task

        def launch(p: Pending) -> None:
            """Publish ``p``'s decision now; its PUBACK goes to ``acked``, or to a
            task that sends the snapshot next. Raises if paho cannot queue it."""
            if launched is not None:  # a look under way may return it again
                launched.add(p.id)
            if p.decision_sent:  # only its snapshot is left
                start(p)
                return
            out = self._publish_decision(client, p)
            if p.has_snapshot:
                start(p, out=out)
                return
            quick[p.id] = out.mid
            sent.append((loop.time() + timeout_s, p, out.fut))
            out.fut.add_done_callback(functools.partial(acked, p, out.topic))

        def acked(p: Pending, topic: str, fut: asyncio.Future[Any]) -> None:
            """``p``'s PUBACK came (a turn of the loop ago)."""
            quick.pop(p.id, None)
            if fut.cancelled():
                return  # the connection ended first: it stays stored, sent again
            reason = fut.result()
            if reason.is_failure:  # stays stored; tried again after the backoff
                self._on_refused(
                    f"decision/{p.type}",
                    PublishRefused(topic, reason.value, str(reason)),
                    retry=False,
                )
            else:
                self._delivered(p)
                self.outbox.acked(p.id)
            if over:
                return
            # The next ones from the read-ahead, in this turn; the loop itself
            # when there is more to do than that (look again, a refused kind).
            try:
                if not new and not self._released:
                    held = self._held_parts() if self._refused else ()
                    while ready and len(inflight) + len(quick) < window:
                        q = ready.popleft()
                        if q.id not in quick and q.id not in inflight and q.part not in held:
                            launch(q)
            except Exception as e:  # (paho refused to queue it: the link is gone)
                failed.append(e)
            if new or failed or self._released or len(inflight) + len(quick) < window:
                wake.set()

        relay = asyncio.create_task(relay_stored())
        try:
            while True:
                # A cancellation (the connection dropped, or a stop) that a
                # library's asyncio.wait_for swallowed (Python 3.11, CPython
                # gh-86296) is honoured at the next turn: a drain that went on
                # would keep its TaskGroup, and the uplink, "connected" for good.
                reraise_if_cancelled()
                self.progress_mono = self.clock.monotonic()
                wake.clear()
                if failed:
                    raise failed[0]
                for id_, task in list(inflight.items()):
                    if task.done():
                        del inflight[id_]
                        task.result()  # a failed publish ends the connection
                while sent and sent[0][2].done():
                    sent.popleft()
                if sent and loop.time() >= sent[0][0]:
                    p = sent[0][1]
                    self.resent_after_timeout += 1
                    raise _NoPuback(
                        f"no PUBACK for {p.type} {p.id} within {timeout_s:g} s; "
                        "reconnecting, it will be sent again"
                    )
                if self._released:  # a refused kind is accepted again: its backlog goes now
                    self._released = False
                    new = True
                free = window - len(inflight) - len(quick)
                # One try per refused kind whose backoff is over (its oldest decision),
                # before the read-ahead: a backlog must not starve a fire alarm's try.
                now = self.clock.monotonic()
                for kind, r in list(self._refused.items()):  # it changes while we await
                    part = _part_of(kind)
                    if free <= 0 or part is None or r.trying or now < r.retry_mono:
                        continue
                    oldest = await self.outbox.next_batch(1, exclude=[*inflight, *quick], only=part)
                    if self._refused.get(kind) is not r:
                        continue  # its episode ended while we looked
                    if not oldest:  # nothing of this kind waits now; look again later
                        r.retry_mono = now + r.delay_s
                        continue
                    r.trying = True
                    start(oldest[0], retry=kind)
                    free -= 1
                # Read ahead in the outbox's order; look again at once when
                # something new was stored (a fire alarm goes next), else in
                # the background once the read-ahead runs low. PUBACKs keep
                # publishing from it meanwhile: what they took is not taken twice.
                held = self._held_parts()
                if reading is not None and (new or reading.done()):
                    if new:  # a whole look follows
                        reading.cancel()
                    else:
                        more = reading.result()  # an outbox error ends the drain
                        taken = {*inflight, *quick, *(q.id for q in ready), *(launched or ())}
                        ready.extend(q for q in more if q.id not in taken)
                        dry = len(more) < read_want
                    reading, launched = None, None
                if free > 0 and new:
                    new = False
                    want = max(free, READ_AHEAD)
                    # Nothing more from the old read-ahead while this look is under
                    # way: what was just stored (a fire alarm) may go before all of it.
                    ready = deque()
                    launched = set()
                    batch = await self.outbox.next_batch(
                        want, exclude=[*inflight, *quick], held=held
                    )
                    ready = deque(q for q in batch if q.id not in launched)
                    launched = None
                    dry = len(batch) < want
                    free = window - len(inflight) - len(quick)  # PUBACKs came meanwhile
                elif reading is None and not dry and len(ready) < max(free, READ_LOW):
                    read_want = READ_AHEAD
                    launched = set()
                    reading = asyncio.create_task(
                        self.outbox.next_batch(
                            read_want,
                            exclude=[*inflight, *quick, *(q.id for q in ready)],
                            held=held,
                        )
                    )
                    reading.add_done_callback(lambda _: wake.set())
                while free > 0 and ready:
                    p = ready.popleft()
                    if p.id in inflight or p.id in quick or p.part in held:
                        continue  # held: refused since it was read
                    launch(p)
                    free -= 1
                # Wait for a PUBACK (a task's end, or a quick one that needs this
                # loop), something stored, the oldest quick publish's deadline,
                # or (with room in the window) the idle bound; no timer to arm
                # and cancel per PUBACK while a backlog drains.
                wait_s: float | None = None
                if free > 0:
                    if not inflight and not quick:  # drained: the last deletes need not wait
                        self.outbox.delete_acked_now()
                    wait_s = self._idle_wait_s(free) / self.clock.speed
                if sent:
                    due_s = sent[0][0] - loop.time()
                    wait_s = due_s if wait_s is None else min(wait_s, due_s)
                if wait_s is None:
                    await wake.wait()
                    continue
                try:
                    async with asyncio.timeout(max(0.0, wait_s)):
                        await wake.wait()
                except TimeoutError:
                    new = new or free > 0  # look again now and then, whatever happened
        finally:
            over = True
            relay.cancel()
            if reading is not None:
                reading.cancel()
            for task in inflight.values():
                task.cancel()
            for _, _, fut in sent:
                fut.cancel()
            for mid in quick.values():
                client.forget(mid)
            await asyncio.gather(
                relay,
                *([reading] if reading is not None else []),
                *inflight.values(),
                return_exceptions=True,
            )

    def _held_parts(self) -> set[str]:
        """The outbox parts not to hand out now: those of every refused kind."""
        return {p for kind in self._refused if (p := _part_of(kind)) is not None}

    def _idle_wait_s(self, free: int) -> float:
        """Until the next due retry of a refused kind (with a free slot), at most IDLE_WAKE_S."""
        due = [
            r.retry_mono
            for kind, r in self._refused.items()
            if not r.trying and _part_of(kind) is not None
        ]
        if free <= 0 or not due:
            return IDLE_WAKE_S
        return min(IDLE_WAKE_S, max(RETRY_MIN_WAIT_S, min(due) - self.clock.monotonic()))

    async def _deliver(
        self,
        client: AckedClient,
        p: Pending,
        retry: str | None = None,
        sent: _Sent | None = None,
    ) -> None:
        """Publish what is left of ``p`` (decision, then snapshot); remove it from the
        outbox once everything was accepted. A refused publish leaves it stored.

        ``retry``: the refused kind of topic this publish tries again; its answer
        ends the episode (accepted) or lengthens the backoff (refused again).
        ``sent``: the decision was published already (by the drain, in its
        turn), this waits for its PUBACK.
        """
        try:
            await self._publish_parts(client, p, retry, sent)
        finally:
            r = self._refused.get(retry) if retry is not None else None
            if r is not None:
                r.trying = False  # answered, or nothing to try (snapshot gone): due again later

    async def _publish_parts(
        self, client: AckedClient, p: Pending, retry: str | None, sent: _Sent | None
    ) -> None:
        timeout_s = self.config.publish_timeout_s
        try:
            if not p.decision_sent:
                kind = f"decision/{p.type}"
                if sent is None:
                    sent = self._publish_decision(client, p)
                try:
                    await client.wait_acked(sent.topic, sent.mid, sent.fut, timeout_s=timeout_s)
                except PublishRefused as e:
                    self._on_refused(kind, e, retry=retry == kind)
                    return  # stays stored; tried again after the backoff
                if retry == kind:
                    self._on_accepted(kind)
                self._delivered(p)
                if p.has_snapshot:
                    await self.outbox.mark_decision_sent(p.id)
            if p.has_snapshot:
                if EVIDENCE_KIND in self._refused and retry != EVIDENCE_KIND:
                    return  # snapshots are held while refused; this one waits its turn
                jpeg = await self.outbox.snapshot(p.id)
                if jpeg is not None:
                    try:
                        await client.publish_acked(
                            self.topics.evidence(p.id), jpeg, timeout_s=timeout_s
                        )
                    except PublishRefused as e:
                        self._on_refused(EVIDENCE_KIND, e, retry=retry == EVIDENCE_KIND)
                        return
                    if retry == EVIDENCE_KIND:
                        self._on_accepted(EVIDENCE_KIND)
        except aiomqtt.MqttError as e:
            if "timed out" in str(e).lower():
                self.resent_after_timeout += 1
                raise _NoPuback(
                    f"no PUBACK for {p.type} {p.id} within {timeout_s:g} s; "
                    "reconnecting, it will be sent again"
                ) from None
            raise
        self.outbox.acked(p.id)

    def _publish_decision(self, client: AckedClient, p: Pending) -> _Sent:
        """Publish ``p``'s decision now (QoS 1), without waiting for its PUBACK."""
        topic, retain = self.topics.decision(p.type), False
        if p.type == DecisionType.ZONE_STATE:  # one retained state per zone
            topic, retain = self.topics.zone_state(str(p.payload.get("zone", "_"))), True
        wire = wire_payload(
            p,
            site_id=self.site.site.site_id,
            gateway_id=self.site.site.gateway_id,
            sent_wall=self.clock.wall(),
            topics=self.topics,
        )
        mid, fut = client.publish_soon(topic, wire, retain=retain)
        return _Sent(topic, mid, fut)

    def _delivered(self, p: Pending) -> None:
        now = self.clock.wall()
        self.published += 1
        self.last_puback_wall = now
        if p.type == DecisionType.FIRE_ALARM and log.isEnabledFor(logging.INFO):
            # (the zone is in the payload, decoded only for this line)
            log.info("uplink: fire alarm %s zone %s delivered (PUBACK)", p.id, p.payload["zone"])
        self._latency_s.append((p, now))

    # ---------------------------------------------------------- refused topics

    def _on_refused(self, kind: str, e: PublishRefused, *, retry: bool) -> None:
        """The broker refused a publish of ``kind``: start or lengthen its episode."""
        self.refused += 1
        self.refused_by_kind[kind] = self.refused_by_kind.get(kind, 0) + 1
        now = self.clock.monotonic()
        r = self._refused.get(kind)
        if r is not None:
            r.refusals += 1
            r.topic, r.why = e.topic, e.why
            if retry:  # another try refused: wait longer (others in flight do not count)
                r.trying = False
                r.delay_s = min(self.config.reconnect_max_s, r.delay_s * 2)
                r.retry_mono = now + r.delay_s
            log.debug("uplink: %s refused again (%s)", e.topic, e.why)
            return
        delay = min(self.config.reconnect_min_s, self.config.reconnect_max_s)
        self._refused[kind] = _Refused(e.topic, e.why, self.clock.wall(), delay, now + delay)
        cfg = self.config
        user = f"user {cfg.username!r}" if cfg.username else "anonymous"
        what = (
            f"broker {cfg.host}:{cfg.effective_port} refused {_action(kind)} {e.topic} "
            f"({e.why}) for {user}"
        )
        backoff = f"tried again with backoff (up to {cfg.reconnect_max_s:g} s)"
        then = {
            STATUS_KIND: "the online status is tried again with each heartbeat",
            HEARTBEAT_KIND: "heartbeats are tried again at their interval",
            EVIDENCE_KIND: f"snapshots stay in the outbox and are {backoff}",
            DOWNLINK_KIND: "requests from the monitoring centre (snapshot, state) do not "
            "arrive; the subscription is tried again with each heartbeat",
        }.get(kind, f"these decisions stay in the outbox and are {backoff}")
        rights = (
            f"subscribe rights on {self.topics.requests}"
            if kind == DOWNLINK_KIND
            else f"publish rights on {self.topics.root}/#"
        )
        log.error(
            "uplink: %s; %s, everything else keeps flowing; check the broker's ACL: "
            "this gateway needs %s",
            what,
            then,
            rights,
        )
        self._report_soon(
            DecisionType.FAULT,
            f"{what}; held in the gateway until the broker accepts it",
            topic=e.topic,
            reason_code=e.reason_code,
        )

    def _on_accepted(self, kind: str) -> None:
        """A publish of ``kind`` was accepted: its refusal episode, if any, is over."""
        r = self._refused.pop(kind, None)
        if r is None:
            return
        self._released = True
        log.info(
            "uplink: broker accepts %s again (refused %d time(s) since %s); what was held follows",
            r.topic,
            r.refusals,
            iso(r.since_wall),
        )
        self._report_soon(
            DecisionType.RESTORE,
            f"broker accepts {_action(kind)} {r.topic} again",
            topic=r.topic,
            refusals=r.refusals,
        )

    # ------------------------------------------------------------------ faults

    def _classify(self, e: BaseException, link_error: str | None = None) -> None:
        rc = getattr(e, "rc", None)
        code = getattr(rc, "value", rc)
        if isinstance(e, MqttConnectError) and code in _LOGIN_CODES:
            self._health_fault(
                f"broker {self.config.host}:{self.config.effective_port} refused the login "
                f"as {self.config.username!r} ({e}); check username and password"
            )
        elif (
            isinstance(e.__context__, ssl.SSLError)
            or "ssl" in str(e).lower()
            or (link_error is not None and "ssl" in link_error.lower())
        ):
            if link_error is not None and "ssl" in link_error.lower():
                # e.g. the broker refused our certificate after the handshake
                e = aiomqtt.MqttError(link_error)
            self._health_fault(
                f"TLS with {self.config.host}:{self.config.effective_port} failed ({e}); "
                "check ca_file, the broker's certificate and the client certificate"
            )
        else:
            self.fault = None if self._fault_reported is None else self.fault
            if str(e) != self.last_error:
                log.warning(
                    "uplink: broker %s:%d not reachable or link lost: %s; decisions stay "
                    "in the outbox and are sent on reconnect",
                    self.config.host,
                    self.config.effective_port,
                    e,
                )
            self.last_error = str(e)

    def _health_fault(self, what: str) -> None:
        if what != self.fault:
            log.error("uplink: %s; decisions stay in the outbox", what)
        self.fault = what
        self.last_error = what
        if self._fault_reported is None:
            self._fault_reported = what
            self._report_soon(DecisionType.FAULT, what)

    def _report_soon(self, type_: DecisionType, reason: str, **details: Any) -> None:
        """Store a gateway decision without waiting for the outbox's disk."""
        task = asyncio.create_task(self._report(type_, reason, **details))
        self._request_tasks.add(task)
        task.add_done_callback(self._request_tasks.discard)

    async def _report(self, type_: DecisionType, reason: str, **details: Any) -> None:
        await self.outbox.submit(
            gateway_decision(
                type_,
                reason,
                part="uplink",
                wall=self.clock.wall(),
                mono=self.clock.monotonic(),
                **details,
            )
        )


def _first(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (not a cancellation)."""
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            return _first(e)
        if not isinstance(e, asyncio.CancelledError):
            return e
    return eg.exceptions[0]


class _LinkErrors(logging.Handler):
    """Keeps the last error paho-mqtt logged during one connection attempt.

    A broker that rejects the client certificate (TLS 1.3 does that after the
    handshake) makes aiomqtt wait for a CONNACK that never comes and report a
    timeout; the SSL error itself only reaches paho's log.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _age_s(confirmed: str, at_wall: float) -> float | None:
    """Seconds from ``confirmed`` (ISO text) to ``at_wall``; None if unreadable."""
    try:
        return max(0.0, at_wall - _parse_iso(confirmed))
    except ValueError:
        return None


def _parse_iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
