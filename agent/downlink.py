"""The downlink's gate: what anyone able to publish to the broker can make the gateway do.

Requests arrive on ``<topic_root>/request/<name>`` (only with ``uplink.downlink``
on). This module decides, per message and without ever raising, whether a
request is answered, and runs the answers one at a time:

* Only ``snapshot`` and ``state``; the payload a JSON object of at most
  ``REQUEST_MAX_BYTES`` and ``REQUEST_MAX_DEPTH`` levels, carrying ``id`` (the
  centre's request id) and ``time`` (when the centre sent it, ISO 8601 with a
  zone or Unix seconds) within ``REQUEST_MAX_AGE_S`` of the gateway's clock;
  ``from`` (who asks) is optional. Anything else, a retained message
  included, is ignored: counted and logged at most once a minute per reason.
* A replay (an id already answered) is answered again from the cache of
  answers, never run again; a request id is remembered for longer than a
  request's time stays acceptable, so a replay is always recognised.
* Answers are rate-limited per requester and in total; requests waiting for
  an answer are coalesced (one ``state`` answers every ``state`` request
  waiting, one snapshot every request for that camera) and bounded
  (``PENDING_MAX``): a flood costs a counter, not a task or a disk write each.
* An answer is published once (QoS 1) and not stored: it need not survive a
  power cut (the centre asks again), so it is never written to the outbox.

Nothing here changes what the gateway does about a fire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.clock import Clock
from agent.events import Decision

log = logging.getLogger("agent.uplink")

REQUESTS = ("snapshot", "state")  # the whole downlink vocabulary
REQUEST_MAX_BYTES = 4096
REQUEST_MAX_DEPTH = 4  # nesting of the JSON payload ({} is 1)
# The largest MQTT packet the uplink accepts from the broker: a request of
# REQUEST_MAX_BYTES plus its topic and properties. Sent as MQTT 5 Maximum
# Packet Size on CONNECT; larger packets are skipped unread (agent.mqtt).
MAX_PACKET_BYTES = REQUEST_MAX_BYTES + 4096
REQUEST_MAX_AGE_S = 300.0  # a request's time may differ from the gateway's clock by this
ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
REQUESTER_PATTERN = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
PENDING_MAX = 8  # distinct requests (state, snapshot of one camera) waiting for an answer
IDS_MAX = 4096  # request ids remembered (more than an accepted rate fills in the age window)
CACHE_MAX_BYTES = 4 * 1024 * 1024  # answers kept for replays
REQUESTERS_MAX = 64
PER_REQUESTER_RATE_S = 0.5  # answers per second per requester ...
PER_REQUESTER_BURST = 3.0  # ... after a burst of this many
TOTAL_RATE_S = 2.0  # answers per second, all requesters together
TOTAL_BURST = 10.0
LOG_EVERY_S = 60.0  # one line per reason for ignoring, at most this often

# (name, body with its id) -> the answer (a STATS decision), or None: no answer
RequestHook = Callable[[str, dict[str, Any]], Awaitable[Decision | None]]
# publishes an answer; returns the (topic, payload) pairs sent, for the replay cache
Publish = Callable[[Decision, list[str]], Awaitable[list[tuple[str, bytes]]]]
Republish = Callable[[list[tuple[str, bytes]]], Awaitable[None]]


class _Bucket:
    """A token bucket: ``rate_s`` tokens a second up to ``burst``."""

    def __init__(self, rate_s: float, burst: float, now: float) -> None:
        self.rate_s, self.burst, self.tokens, self.mono = rate_s, burst, burst, now

    def refill(self, now: float) -> float:
        """The tokens available at ``now``."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.mono) * self.rate_s)
        self.mono = now
        return self.tokens


@dataclass(slots=True)
class _Pending:
    name: str
    body: dict[str, Any]
    ids: list[str] = field(default_factory=list)


class Downlink:
    """Filters, de-duplicates, rate-limits and answers the centre's requests.

    ``offer`` is called per received message and never raises; ``serve``
    answers what was accepted, one at a time, while the link is up.
    """

    def __init__(self, clock: Clock, hook: RequestHook | None) -> None:
        self.clock = clock
        self.hook = hook
        self.ignored: dict[str, int] = {}  # reason -> messages ignored for it
        self.answered = 0
        self.replayed = 0
        self.coalesced = 0
        self._logged: dict[str, float] = {}  # reason -> when it was last logged (monotonic)
        self._ids: OrderedDict[str, float] = OrderedDict()  # id -> when accepted (monotonic)
        self._cache: OrderedDict[str, list[tuple[str, bytes]]] = OrderedDict()
        self._cache_bytes = 0
        self._replays: list[list[tuple[str, bytes]]] = []
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._requesters: OrderedDict[str, _Bucket] = OrderedDict()
        self._total = _Bucket(TOTAL_RATE_S, TOTAL_BURST, clock.monotonic())
        self._wake = asyncio.Event()

    def status(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "replayed": self.replayed,
            "coalesced": self.coalesced,
            "waiting": len(self._pending),
            "ignored": dict(self.ignored),
        }

    # ------------------------------------------------------------ per message

    def offer(self, name: str, payload: object, *, retain: bool) -> None:
        """One message received on ``request/<name>``. Never raises."""
        try:
            why = self._offer(name, payload, retain)
        except Exception as e:  # a bad request must never touch the link
            why = f"not understood ({type(e).__name__})"
        if why is not None:
            self._ignore(name, why)

    def _offer(self, name: str, payload: object, retain: bool) -> str | None:
        """None when accepted (queued, coalesced or replayed), else why it is ignored."""
        if retain:  # a retained request would run again at every connect
            return "retained"
        if name not in REQUESTS:
            return "unknown request (allowed: snapshot, state)"
        if not isinstance(payload, bytes | bytearray) or len(payload) > REQUEST_MAX_BYTES:
            return f"payload missing or larger than {REQUEST_MAX_BYTES} bytes"
        if _depth(payload) > REQUEST_MAX_DEPTH:
            return f"JSON nested deeper than {REQUEST_MAX_DEPTH} levels"
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            return "not JSON"
        if not isinstance(body, dict):
            return "payload is not a JSON object"
        req_id, sent, who = body.get("id"), body.get("time"), body.get("from", "centre")
        if not isinstance(req_id, str) or not ID_PATTERN.fullmatch(req_id):
            return "no valid id (1-64 of A-Z a-z 0-9 . _ : -)"
        if not isinstance(who, str) or not REQUESTER_PATTERN.fullmatch(who):
            return "invalid from (1-64 of A-Z a-z 0-9 . _ : @ -)"
        sent_wall = _wall_time(sent)
        if sent_wall is None:
            return "no valid time (ISO 8601 with a zone, or Unix seconds)"
        if abs(self.clock.wall() - sent_wall) > REQUEST_MAX_AGE_S:
            return (
                f"time more than {REQUEST_MAX_AGE_S:g} s from the gateway's clock "
                "(a stale or replayed request, or a wrong clock)"
            )
        camera = body.get("camera")
        if name == "snapshot" and (not isinstance(camera, str) or not 0 < len(camera) <= 64):
            return "snapshot without a camera name"
        now = self.clock.monotonic()
        self._forget_old_ids(now)
        if req_id in self._ids:
            cached = self._cache.get(req_id)
            if cached is None:
                return "replay of a request still waiting or not answered"
            if not self._admit(who, now):
                return "rate limit"
            self._replays.append(cached)
            self._wake.set()
            return None
        key = (name, camera if name == "snapshot" and isinstance(camera, str) else "")
        waiting = self._pending.get(key)
        if waiting is None and len(self._pending) >= PENDING_MAX:
            return f"too many requests waiting ({PENDING_MAX})"
        if not self._admit(who, now):
            return "rate limit"
        self._ids[req_id] = now
        if waiting is not None:
            waiting.ids.append(req_id)
            self.coalesced += 1
            return None
        clean: dict[str, Any] = {"id": req_id, "from": who}
        if name == "snapshot":
            clean["camera"] = camera
        self._pending[key] = _Pending(name, clean, [req_id])
        log.info("downlink: request %s id %s from %s", name, req_id, who)
        self._wake.set()
        return None

    def _admit(self, who: str, now: float) -> bool:
        bucket = self._requesters.get(who)
        if bucket is None:
            bucket = _Bucket(PER_REQUESTER_RATE_S, PER_REQUESTER_BURST, now)
            self._requesters[who] = bucket
            while len(self._requesters) > REQUESTERS_MAX:
                self._requesters.popitem(last=False)
        self._requesters.move_to_end(who)
        if bucket.refill(now) < 1.0 or self._total.refill(now) < 1.0:
            return False
        bucket.tokens -= 1.0
        self._total.tokens -= 1.0
        return True

    def _forget_old_ids(self, now: float) -> None:
        # twice the age window: a request's time can be early or late by REQUEST_MAX_AGE_S
        while self._ids and (
            len(self._ids) > IDS_MAX
            or now - next(iter(self._ids.values())) > 2 * REQUEST_MAX_AGE_S + 60
        ):
            old, _ = self._ids.popitem(last=False)
            self._drop_cached(old)

    def _ignore(self, name: str, why: str) -> None:
        self.ignored[why] = self.ignored.get(why, 0) + 1
        now = self.clock.monotonic()
        last = self._logged.get(why)
        if last is not None and now - last < LOG_EVERY_S:
            return
        self._logged[why] = now
        shown = name if len(name) <= 40 and name.isprintable() else f"{name[:40]!r}..."
        log.warning(
            "downlink: ignoring request %s: %s (%d ignored for this reason so far; "
            "logged at most once a minute)",
            shown,
            why,
            self.ignored[why],
        )

    def oversize(self, topic: str, size: int) -> None:
        """A packet larger than MAX_PACKET_BYTES was skipped unread (agent.mqtt)."""
        name = topic.rsplit("/", 1)[-1]
        self._ignore(name, f"packet of {size} bytes skipped unread (limit {MAX_PACKET_BYTES})")

    # -------------------------------------------------------------- answering

    async def serve(self, publish: Publish, republish: Republish) -> None:
        """Answer waiting requests one at a time, while the connection lasts."""
        if self._pending or self._replays:  # left by a connection that ended
            self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._replays:
                await republish(self._replays.pop(0))
                self.replayed += 1
            while self._pending:
                _, req = self._pending.popitem(last=False)
                await self._answer(req, publish)
                while self._replays:
                    await republish(self._replays.pop(0))
                    self.replayed += 1

    async def _answer(self, req: _Pending, publish: Publish) -> None:
        if self.hook is None:
            log.info("downlink: request %s received but nothing handles it", req.name)
            return
        try:
            answer = await self.hook(req.name, req.body)
        except Exception:
            log.exception("downlink: handler for %s failed", req.name)
            return
        if answer is None:
            return
        sent = await publish(answer, req.ids)
        self.answered += 1
        size = sum(len(t) + len(p) for t, p in sent)
        if size > CACHE_MAX_BYTES // 4:
            return  # too large to keep; a replay of it is ignored
        for req_id in req.ids:
            if req_id in self._ids:  # forgotten meanwhile: keep nothing for it
                self._cache[req_id] = sent
                self._cache_bytes += size
        while self._cache_bytes > CACHE_MAX_BYTES and self._cache:
            self._drop_cached(next(iter(self._cache)))

    def _drop_cached(self, req_id: str) -> None:
        sent = self._cache.pop(req_id, None)
        if sent is not None:
            self._cache_bytes -= sum(len(t) + len(p) for t, p in sent)


def _depth(raw: bytes | bytearray) -> int:
    """The deepest nesting of JSON brackets outside strings (a bound before parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _wall_time(value: object) -> float | None:
    """A request's ``time`` as Unix seconds, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()
