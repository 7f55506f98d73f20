from __future__ import annotations

import json
import uuid

from agent.events import (
    PRIORITY,
    Decision,
    DecisionType,
    Evidence,
    Region,
    VideoClass,
    VideoDetection,
    iso,
)


def test_iso_is_utc_with_millis() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_764_000_000.1234) == "2025-11-24T16:00:00.123Z"


def test_decision_ids_are_uuids_and_stable() -> None:
    d = Decision(
        type=DecisionType.FIRE_ALARM,
        zone="kitchen",
        reason="two detectors",
        first_seen_wall=1000.0,
        first_seen_mono=50.0,
        wall=1012.5,
        mono=62.5,
        devices=("a", "b"),
        evidence=(Evidence(observation_id="o1", source="a", what="alarm", wall=1000.0, mono=50.0),),
        snapshot_jpeg=b"\xff\xd8",
    )
    uuid.UUID(d.id)
    other = Decision(**{**{f: getattr(d, f) for f in d.__dataclass_fields__}, "id": d.id})
    assert other.id == d.id
    body = d.to_dict()
    json.dumps(body)
    assert body["first_seen"] == iso(1000.0)
    assert body["confirmed_at"] == iso(1012.5)
    assert body["evidence"][0]["after_first_s"] == 0.0
    assert body["has_snapshot"] is True and "snapshot_jpeg" not in body


def test_priority_order_puts_fire_first() -> None:
    order = sorted(DecisionType, key=PRIORITY.__getitem__)
    assert order[0] is DecisionType.FIRE_ALARM and order[-1] is DecisionType.STATS


def test_video_detection_dict_does_not_embed_jpeg() -> None:
    v = VideoDetection(
        source="cam",
        zone="hall",
        wall=1.0,
        mono=1.0,
        cls=VideoClass.SMOKE,
        score=0.8,
        confirmed=True,
        regions=(Region(x=1, y=2, w=3, h=4, score=0.8, cls=VideoClass.SMOKE),),
        snapshot_jpeg=b"x" * 5000,
    )
    d = v.to_dict()
    assert d["snapshot_jpeg"] == 5000 and d["event"] == "VideoDetection"
    assert v.regions[0].area == 12
