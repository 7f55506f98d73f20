"""Pure parts: CRC and framing, read planning, decoding, evaluation."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from agent.events import Condition
from drivers import codec, frames
from drivers.bus import next_due
from drivers.profile import ModbusProfile, Point


def profile(points: list[dict[str, object]], **kw: object) -> ModbusProfile:
    return ModbusProfile.model_validate(
        {
            "vendor": "t",
            "model": "t",
            "device_kind": "electrical_fire",
            "addressing": "zero_based",
            "points": points,
            **kw,
        }
    )


def reg(name: str, address: int, **kw: object) -> dict[str, object]:
    return {"name": name, "table": "holding", "address": address, "quantity": "temperature_c", **kw}


@given(st.binary(max_size=300))
def test_crc_matches_pymodbus(data: bytes) -> None:
    # pymodbus gives the CRC as the two wire bytes read big-endian
    assert struct.pack("<H", frames.crc16(data)) == struct.pack(">H", FramerRTU.compute_CRC(data))


def test_frames_roundtrip_and_checks() -> None:
    pdu = frames.read_request(frames.READ_HOLDING, 0x4A, 2)
    assert frames.rtu_frame(1, pdu).hex() == "0103004a0002e5dd"
    reply = bytes((3, 4, 0, 7, 0xFF, 0xFE))
    assert frames.parse_reply(pdu, reply).registers == (7, 0xFFFE)
    with pytest.raises(frames.FrameError):
        frames.parse_reply(pdu, bytes((3, 2, 0, 7)))  # short
    with pytest.raises(frames.DeviceException) as e:
        frames.parse_reply(pdu, bytes((0x83, 2)))
    assert "illegal data address" in str(e.value)
    buf = b"\x00\x55" + frames.rtu_frame(2, reply) + frames.rtu_frame(1, reply)
    s, end = frames.find_rtu_reply(buf, 1, pdu)  # type: ignore[misc]
    assert buf[s:end] == frames.rtu_frame(1, reply)
    bad = bytearray(frames.rtu_frame(1, reply))
    bad[-1] ^= 1
    assert frames.find_rtu_reply(bad, 1, pdu) is None


def test_wire_time_model() -> None:
    # devices.md: a read of 10 registers at 9600 baud is about 46 ms, ~22 reads/s
    t = frames.transaction_wire_s(9600, 8, 25)
    assert 0.045 < t < 0.047
    assert frames.silence_s(115200) == 0.00175


def test_plan_merges_contiguous_and_bridges_allowed_gaps() -> None:
    pts = [reg("a", 0), reg("b", 1), reg("c", 5), reg("d", 6, type="f32"), reg("e", 40)]
    assert [(b.start, b.count) for b in codec.plan_reads(profile(pts))] == [(0, 2), (5, 3), (40, 1)]
    assert [(b.start, b.count) for b in codec.plan_reads(profile(pts, max_gap=3))] == [
        (0, 8),
        (40, 1),
    ]
    assert [(b.start, b.count) for b in codec.plan_reads(profile(pts, max_gap=40, max_read=8))] == [
        (0, 8),
        (40, 1),
    ]
    many = [reg(f"p{i}", i) for i in range(130)]
    assert [(b.start, b.count) for b in codec.plan_reads(profile(many))] == [(0, 125), (125, 5)]
    mixed = [
        reg("x", 3),
        {"name": "y", "table": "discrete", "address": 3, "type": "bool", "condition": "alarm"},
    ]
    plan = codec.plan_reads(profile(mixed))
    assert {(b.table.value, b.pdu[0]) for b in plan} == {("holding", 3), ("discrete", 2)}


@pytest.mark.parametrize("order", ["big", "little"])
def test_float_word_order(order: str) -> None:
    p = Point.model_validate(reg("t", 0, type="f32", word_order=order))
    hi, lo = struct.unpack(">HH", struct.pack(">f", 71.5))
    words = [hi, lo] if order == "big" else [lo, hi]
    assert codec.engineering(p, codec.raw_from_words(p, words)) == 71.5
    assert codec.words_from_raw(p, codec.raw_from_engineering(p, 71.5)) == words


def test_signed_scaled_and_range_checked() -> None:
    p = Point.model_validate(reg("t", 0, type="s16", scale=0.1))
    assert codec.engineering(p, 0xFFD3) == pytest.approx(-4.5)
    with pytest.raises(ValueError):
        codec.raw_from_engineering(p, 5000.0)  # 50000 does not fit s16: never clamped
    q = Point.model_validate(reg("u", 0, type="s32"))
    assert codec.engineering(q, codec.raw_from_engineering(q, -70000)) == -70000


def test_evaluate_sentinel_nan_flags_or() -> None:
    prof = profile(
        [
            reg(
                "leak",
                0,
                unit="mA",
                quantity="residual_current_ma",
                sub_point="l1",
                sentinels={0xFAFA: "open circuit"},
                setpoint_point="sp",
            ),
            {"name": "sp", "table": "holding", "address": 1, "sub_point": "l1"},
            reg("temp", 2, type="f32", sub_point="t1"),
            {
                "name": "flags",
                "table": "holding",
                "address": 4,
                "flags": [
                    {"bit": 0, "condition": "fault", "point": "l1", "detail": "short"},
                    {"bit": 1, "condition": "fault", "point": "l1", "detail": "open"},
                    {"bit": 2, "condition": "prealarm", "point": "t1", "detail": "hot"},
                ],
            },
        ]
    )
    nan = struct.unpack(">I", struct.pack(">f", math.nan))[0]
    ev = codec.evaluate(prof, {"leak": 0xFAFA, "sp": 300, "temp": nan, "flags": 0b011})
    assert ev.readings == ()
    assert ev.states[("l1", Condition.FAULT)] == (True, "open circuit; short; open")
    assert ev.states[("t1", Condition.FAULT)] == (True, "not a number")
    assert ev.states[("t1", Condition.PREALARM)] == (False, "")
    ev = codec.evaluate(
        prof,
        {
            "leak": 120,
            "sp": 300,
            "temp": codec.raw_from_engineering(prof.point_by_name["temp"], 30.0),
            "flags": 0b100,
        },
    )
    assert [(r.point.name, r.value, r.setpoint) for r in ev.readings] == [
        ("leak", 120.0, 300.0),
        ("temp", 30.0, None),
    ]
    assert ev.states[("l1", Condition.FAULT)] == (False, "")
    assert ev.states[("t1", Condition.PREALARM)] == (True, "hot")


@given(
    due=st.floats(0, 1e5),
    interval=st.floats(0.1, 3600),
    late=st.floats(-10, 1e4),
)
def test_next_due_is_on_the_grid_and_never_catches_up(
    due: float, interval: float, late: float
) -> None:
    now = due + late
    nxt = next_due(due, interval, now)
    assert nxt > now or nxt == due + interval
    k = (nxt - due) / interval
    assert abs(k - round(k)) < 1e-6 * max(1.0, k)  # on the device's grid
    assert nxt - max(now, due) <= interval * (1 + 1e-9) + 1e-6  # the next free grid point
