"""What the uplink publishes for a stored decision is spliced from the stored JSON
(agent.uplink.wire_payload) instead of decoded and encoded again per publish;
it must be the very text the long way gives, redaction included."""

from __future__ import annotations

import json
import random
from pathlib import Path

from agent.events import GATEWAY_ZONE, Decision, DecisionType, gateway_decision
from agent.logs import _SECRET, _URL, redact, redact_url
from agent.outbox import Outbox, Pending
from agent.uplink import Topics, decision_payload, wire_payload
from tests.uplink.uplink_support import T0, decision

TOPICS = Topics("firegate/school-1/gw1")


def long_way(p: Pending, sent_wall: float) -> str:
    body = decision_payload(
        p.payload, site_id="school-1", gateway_id="gw1", sent_wall=sent_wall, topics=TOPICS
    )
    return redact(json.dumps(body, separators=(",", ":"), ensure_ascii=False))


def odd_decisions() -> list[Decision]:
    base = decision(DecisionType.FAULT, 1)
    return [
        decision(DecisionType.FIRE_ALARM, 2),
        decision(DecisionType.STATS, 3, snapshot=b"\xff\xd8jpeg"),
        Decision(
            type=DecisionType.ELECTRICAL_PREALARM,
            zone="教学楼 3F",
            reason='panel said "FIRE L1" \\ password=hunter2; see rtsp://admin:s3cret@10.0.0.9/live',
            first_seen_wall=T0,
            first_seen_mono=1.0,
            wall=T0 + 1.25,
            mono=2.25,
            devices=("det-1", "Ωmeter"),
            details={"current_a": 0.1 + 0.2, "nested": {"token": "abc", "list": [1, 2.5e-9]}},
        ),
        Decision(
            type=base.type,
            zone="z1",
            reason='a reason with "schema": 9 and "sent_at": inside a string',
            first_seen_wall=T0,
            first_seen_mono=1.0,
            wall=T0,
            mono=1.0,
            details={"api_key": "k-123", "Pwd": "x"},
        ),
        gateway_decision(DecisionType.FAULT, "outbox cap reached", part="outbox", wall=T0, mono=1),
    ]


async def test_spliced_wire_form_is_the_long_way_text(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "ob.db", 1000, 10**8)
    try:
        for d in odd_decisions():
            await outbox.submit(d)
        pending = await outbox.next_batch(100)
    finally:
        await outbox.close()
    assert len(pending) == len(odd_decisions())
    assert all(p.raw for p in pending)  # the stored text came along
    for p in pending:
        for sent in (T0 + 5, T0 + 5.123456):
            got = wire_payload(
                p, site_id="school-1", gateway_id="gw1", sent_wall=sent, topics=TOPICS
            )
            assert got == long_way(p, sent), p.payload
            json.loads(got)
    own = [p for p in pending if p.payload["zone"] == GATEWAY_ZONE]
    assert own and all(p.own for p in own)


def test_without_stored_text_or_with_a_clashing_key_it_encodes_the_long_way() -> None:
    d = decision(DecisionType.FIRE_ALARM, 7).to_dict()
    plain = Pending(d["id"], 0, "fire_alarm", d, False, False)  # no raw: the long way
    clash = {**d, "priority": 99}
    raw = json.dumps(clash, separators=(",", ":"))
    odd = Pending(d["id"], 0, "fire_alarm", clash, False, False, raw=raw)
    for p in (plain, odd):
        got = wire_payload(p, site_id="school-1", gateway_id="gw1", sent_wall=T0, topics=TOPICS)
        assert got == long_way(p, T0)
        assert json.loads(got)["priority"] == 0


def test_iso_formats_once_per_second_and_gives_the_datetime_text() -> None:
    """agent.events.iso keeps the formatted second (the uplink stamps every
    publish): the text is datetime's, its rounding to the microsecond included."""
    from datetime import UTC, datetime

    from agent.events import iso

    def reference(wall: float) -> str:
        return (
            datetime.fromtimestamp(wall, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    rng = random.Random(7)
    walls = [rng.uniform(0, 4e9) for _ in range(20_000)]
    walls += [T0 + k / 1000 for k in range(3000)]  # every millisecond of 3 s, in order
    walls += [T0 + 0.9999996, T0 + 0.9999994, T0 + 0.0000005, T0 + 0.0000015, T0, 0.0]
    for w in walls:
        assert iso(w) == reference(w), w


def _redact_reference(text: str) -> str:
    """agent.logs.redact without its fast path: both expressions, always."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m[0]), text)
    return _SECRET.sub(r"\1\2***", text)


def test_redact_fast_path_changes_nothing() -> None:
    rng = random.Random(18)
    parts = [
        "PassWord",
        "passwd",
        "PWD",
        "loginPASS",
        "Secret",
        "TOKEN",
        "api-key",
        "Api_Key",
        "apikey",
        "pas",
        "ke",
        "y",
        "=",
        ": ",
        ":",
        " ",
        '"',
        ",",
        "x9",
        "教",
        "ſ",  # matches "s" under re.IGNORECASE: never on the fast path (not ASCII)
        "K",  # Kelvin sign, matches "k"
        "rtsp://u:p@h/",
    ]
    texts = ["".join(rng.choice(parts) for _ in range(rng.randint(1, 12))) for _ in range(20_000)]
    texts += ["paſsword=1", "api-Key=2", "tok en=3", "nothing to see", ""]
    changed = 0
    for t in texts:
        want = _redact_reference(t)
        assert redact(t) == want, t
        changed += want != t
    assert changed > 1000  # the sample does hold secrets
