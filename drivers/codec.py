"""What a profile means on the wire: read planning, decoding and encoding.

Pure functions over a ``ModbusProfile``. The drivers use the decoding half,
the firmware mocks the encoding half, so a profile and its mock never
disagree (the round trip is tested for every built-in profile).

* ``plan_reads``: the requests a poll of one device needs, merged into
  contiguous blocks (at most ``max_read`` registers, gaps of at most
  ``max_gap`` unused registers bridged).
* ``raw_from_words`` / ``engineering``: registers -> raw pattern -> value.
* ``evaluate``: raw values of one poll -> readings and conditions, with
  sentinels turned into faults (never into readings) and flags that map to
  the same point and condition OR-ed together.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.events import Condition
from drivers import frames
from drivers.profile import DataType, ModbusProfile, Point, Table, WordOrder

_READ_FC = {
    Table.COIL: frames.READ_COILS,
    Table.DISCRETE: frames.READ_DISCRETE,
    Table.HOLDING: frames.READ_HOLDING,
    Table.INPUT: frames.READ_INPUT,
}


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request of a poll: ``count`` registers (or bits) from ``start`` (wire address)."""

    table: Table
    start: int
    count: int
    points: tuple[Point, ...]
    pdu: bytes = field(default=b"", compare=False)

    @staticmethod
    def make(table: Table, start: int, count: int, points: Iterable[Point]) -> ReadBlock:
        pdu = frames.read_request(_READ_FC[table], start, count)
        return ReadBlock(table, start, count, tuple(points), pdu)


def plan_reads(profile: ModbusProfile) -> tuple[ReadBlock, ...]:
    """The fewest reads that cover every point, per the profile's merging rules.

    Points of one table are sorted by address and packed greedily: a point
    joins the current block if the unused registers between them are at
    most ``max_gap`` and the block stays within ``max_read`` registers
    (2000 bits for coil/discrete tables). Overlapping points share a block.
    """
    blocks: list[ReadBlock] = []
    for table in Table:
        pts = sorted(
            (p for p in profile.points if p.table is table),
            key=lambda p: profile.pdu_address(p.address),
        )
        if not pts:
            continue
        limit = frames.MAX_READ_BITS if table.is_bit else profile.max_read
        cur: list[Point] = []
        start = end = 0  # end is exclusive
        for p in pts:
            a = profile.pdu_address(p.address)
            b = a + p.count
            if cur and a - end <= profile.max_gap and max(end, b) - start <= limit:
                cur.append(p)
                end = max(end, b)
                continue
            if cur:
                blocks.append(ReadBlock.make(table, start, end - start, cur))
            cur, start, end = [p], a, b
        blocks.append(ReadBlock.make(table, start, end - start, cur))
    return tuple(blocks)


# ------------------------------------------------------------------- decoding


def raw_from_words(point: Point, words: Sequence[int]) -> int:
    """The point's raw unsigned pattern; 32-bit values high word first (ABCD)."""
    if point.type.registers == 1:
        return words[0] & 0xFFFF
    hi, lo = (words[0], words[1]) if point.word_order is WordOrder.BIG else (words[1], words[0])
    return ((hi & 0xFFFF) << 16) | (lo & 0xFFFF)


def words_from_raw(point: Point, raw: int) -> list[int]:
    """Inverse of ``raw_from_words``: the registers as they sit in the device."""
    if point.type.registers == 1:
        return [raw & 0xFFFF]
    hi, lo = (raw >> 16) & 0xFFFF, raw & 0xFFFF
    return [hi, lo] if point.word_order is WordOrder.BIG else [lo, hi]


def number_from_raw(point: Point, raw: int) -> float:
    """Raw pattern -> the number the device meant, before scale and offset."""
    t = point.type
    if t is DataType.U16 or t is DataType.U32:
        return float(raw)
    if t is DataType.S16:
        return float(raw - 0x10000 if raw & 0x8000 else raw)
    if t is DataType.S32:
        return float(raw - 0x1_0000_0000 if raw & 0x8000_0000 else raw)
    if t is DataType.F32:
        return float(struct.unpack(">f", struct.pack(">I", raw & 0xFFFF_FFFF))[0])
    raise ValueError(f"{t.value} has no numeric value")


def engineering(point: Point, raw: int) -> float:
    """The value in the point's unit: number * scale + offset."""
    return number_from_raw(point, raw) * point.scale + point.offset


def raw_from_engineering(point: Point, value: float) -> int:
    """The raw pattern a device holds for an engineering value (used by mocks).

    Raises ValueError if the value does not fit the point's type: a mock
    never silently clamps a value a test asked for.
    """
    n = (value - point.offset) / point.scale
    t = point.type
    if t is DataType.F32:
        return int(struct.unpack(">I", struct.pack(">f", n))[0])
    i = round(n)
    lo, hi = {
        DataType.U16: (0, 0xFFFF),
        DataType.S16: (-0x8000, 0x7FFF),
        DataType.U32: (0, 0xFFFF_FFFF),
        DataType.S32: (-0x8000_0000, 0x7FFF_FFFF),
    }[t]
    if not lo <= i <= hi:
        raise ValueError(f"{point.name}: {value} does not fit {t.value} (raw {i})")
    return i & (0xFFFF if t.registers == 1 else 0xFFFF_FFFF)


def block_raws(
    profile: ModbusProfile, block: ReadBlock, registers: Sequence[int], bits: Sequence[bool]
) -> dict[str, int]:
    """Raw values of the block's points from one reply (bits as 0/1)."""
    out: dict[str, int] = {}
    for p in block.points:
        off = profile.pdu_address(p.address) - block.start
        if p.table.is_bit:
            out[p.name] = int(bits[off])
        else:
            out[p.name] = raw_from_words(p, registers[off : off + p.count])
    return out


# ----------------------------------------------------------------- evaluation

StateKey = tuple[str, Condition]  # (point, condition)


@dataclass(frozen=True, slots=True)
class PointReading:
    point: Point
    value: float
    setpoint: float | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one successful poll says: measured values and condition states."""

    readings: tuple[PointReading, ...]
    states: dict[StateKey, tuple[bool, str]]


def reading_point(p: Point) -> str:
    """The event ``point`` of a measured value: its sub-point, else its name."""
    return p.sub_point or p.name


def _measure(p: Point, raw: int) -> tuple[float | None, str]:
    """(value, fault text): a sentinel or a non-finite float is a fault, not a value."""
    if raw in p.sentinels:
        return None, p.sentinels[raw]
    v = engineering(p, raw)
    if not math.isfinite(v):
        return None, "not a number"
    return v, ""


def evaluate(profile: ModbusProfile, raws: Mapping[str, int]) -> Evaluation:
    """Turn one poll's raw values into readings and condition states.

    States are keyed by (point, condition); several sources of the same key
    (two flag bits of a loop, a sentinel and a flag) are OR-ed, and the
    detail lists the active ones. Every key the profile can produce is
    present, so the first poll gives the engine the whole truth.
    """
    states: dict[StateKey, tuple[bool, list[str]]] = {}

    def put(key: StateKey, active: bool, detail: str) -> None:
        was, details = states.get(key, (False, []))
        if active and detail:
            details.append(detail)
        states[key] = (was or active, details)

    readings: list[PointReading] = []
    for p in profile.points:
        if p.name not in raws:
            continue
        raw = raws[p.name]
        if p.type is DataType.BOOL:
            assert p.condition is not None
            put((p.sub_point, p.condition), bool(raw) == p.active_when, p.detail)
        elif p.flags:
            for f in p.flags:
                on = bool(raw >> f.bit & 1) == f.active_when
                put((f.point or p.sub_point, f.condition), on, f.detail)
        elif p.quantity is not None:
            value, fault = _measure(p, raw)
            if p.sentinels or p.type is DataType.F32:
                # only a value that can say "sensor fault" has a fault state
                put((reading_point(p), Condition.FAULT), value is None, fault)
            if value is None:
                continue
            setpoint = None
            if p.setpoint_point is not None and p.setpoint_point in raws:
                sp = profile.point_by_name[p.setpoint_point]
                setpoint, _ = _measure(sp, raws[sp.name])
            readings.append(PointReading(p, value, setpoint))
    return Evaluation(
        tuple(readings),
        {k: (a, "; ".join(dict.fromkeys(d))) for k, (a, d) in states.items()},
    )
