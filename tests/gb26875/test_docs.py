"""docs/gb26875.md stays true: its byte-level examples are what the gateway sends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.events import DecisionType
from agent.gb26875.codec import Command, Frame, decode
from agent.gb26875.mapping import CentreState, directory_for
from tests.gb26875.support import decision, gateway, make_site

DOC = Path(__file__).resolve().parents[2] / "docs" / "gb26875.md"
WALL = datetime(2026, 9, 21, 2, 30, 5, tzinfo=UTC).timestamp()  # 10:30:05 in Beijing


def doc_frames() -> list[bytes]:
    lines = [ln.strip() for ln in DOC.read_text(encoding="utf-8").splitlines()]
    return [bytes.fromhex(ln) for ln in lines if ln.startswith("40 40 ")]


def test_every_documented_frame_decodes_and_reencodes() -> None:
    frames = doc_frames()
    assert len(frames) == 12
    for raw in frames:
        assert decode(raw).encode() == raw


def test_documented_frames_are_what_the_mapping_produces(tmp_path: Path) -> None:
    site = make_site(tmp_path, 9000)
    assert site.config.gb26875 is not None
    state = CentreState(site.config.gb26875, directory_for(site))
    at = {"confirmed_at": datetime.fromtimestamp(WALL, tz=UTC).isoformat()}

    def payload(d: object) -> dict[str, object]:
        return {**d.to_dict(), **at}  # type: ignore[attr-defined]

    units = [
        *state.units_for(payload(decision(DecisionType.FIRE_ALARM, 1)), WALL),
        *state.units_for(
            payload(decision(DecisionType.RESTORE, 2, devices=(), of="fire_alarm")), WALL
        ),
        *state.units_for(payload(decision(DecisionType.FAULT, 3)), WALL),
        *state.units_for(payload(decision(DecisionType.RESTORE, 4, of="fault")), WALL),
        *state.units_for(
            payload(
                decision(
                    DecisionType.ELECTRICAL_PREALARM,
                    5,
                    zone="store",
                    devices=("leakage",),
                    quantity="temperature_c",
                    value=71.5,
                )
            ),
            WALL,
        ),
        *state.units_for(payload(gateway(DecisionType.FAULT)), WALL),
    ]
    t = state.time(WALL)
    sent = [
        Frame(i + 2, Command.SEND_DATA, 889, 88888, t, u.encode()).encode()
        for i, u in enumerate(units)
    ]
    docs = doc_frames()
    fire, fault, restore, pre_state, pre_value, gw = docs[2:8]

    # the doc's serials are 2..7 in the order fire, fault, restore, pre-alarm x2, gateway
    def same(a: bytes, b: bytes) -> bool:
        return a[4:-3] == b[4:-3]  # all but serial number and checksum

    assert same(sent[0], fire)
    assert same(sent[1], restore)  # the zone's fire cleared: the same state bytes as a restore
    assert same(sent[2], fault)
    assert same(sent[3], restore)
    assert same(sent[4], pre_state)
    assert same(sent[5], pre_value)
    assert same(sent[6], gw)
