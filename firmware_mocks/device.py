"""A simulated Modbus device built from a device profile.

The register map comes from the profile file itself (``drivers.codec`` does
the encoding), so a profile and its mock cannot disagree. The device answers
only addresses its profile maps (points, commands, the identify register) and
unused registers inside a gap the profile allows a read to bridge
(``max_gap``); anything else gets exception 02, as a strict real device would.

Thread-safe: tests and timelines call ``set_point`` from one thread while
the bus serves requests in another.
"""

from __future__ import annotations

import enum
import itertools
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.siteconfig import load_profile
from config import BUILTIN_PROFILES
from drivers import codec, frames
from drivers.profile import ModbusProfile, Table


class Fault(enum.StrEnum):
    """What a simulated device (or its line) can do wrong, injected per device."""

    CRC = "crc"  # reply with a corrupted CRC
    NO_REPLY = "no_reply"  # stay silent
    LATE = "late"  # reply after ``late_s`` (longer than the master's timeout)
    WRONG_ID = "wrong_id"  # reply carries another device id (valid CRC)
    TRUNCATED = "truncated"  # reply cut short
    GARBAGE = "garbage"  # random bytes instead of the reply
    GARBAGE_PREFIX = "garbage_prefix"  # random bytes, then the correct reply


@dataclass
class _Injected:
    remaining: int | None  # None: until cleared


def load_modbus_profile(name_or_path: str | Path) -> ModbusProfile:
    """A built-in profile by name (``acrel-aim-r100``) or a profile file."""
    p = Path(name_or_path)
    if not p.suffix:
        p = BUILTIN_PROFILES / f"{name_or_path}.yaml"
    prof = load_profile(p)
    if not isinstance(prof, ModbusProfile):
        raise ValueError(f"{p} is a serial panel profile, not a Modbus profile")
    return prof


@dataclass
class SimDevice:
    """One simulated device: an id, a profile, and its four data tables."""

    device_id: int
    profile: ModbusProfile
    reply_delay_s: float = 0.0  # the device's own processing time before it answers
    late_s: float = 1.0
    registers: dict[Table, dict[int, int]] = field(default_factory=dict)
    bits: dict[Table, dict[int, bool]] = field(default_factory=dict)
    writes: list[tuple[int, int]] = field(default_factory=list)  # (wire address, value)
    commands_received: list[str] = field(default_factory=list)
    requests: int = 0
    # last word on what goes on the wire: frame in, bytes out (tests of garbage)
    reply_filter: Callable[[bytes], bytes] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[Fault, _Injected] = {}
        self._readable: dict[Table, set[int]] = {t: set() for t in Table}
        self._writable: set[int] = set()
        prof = self.profile
        for t in Table:
            if t.is_bit:
                self.bits.setdefault(t, {})
            else:
                self.registers.setdefault(t, {})
        for p in prof.points:
            a = prof.pdu_address(p.address)
            for i in range(p.count):
                self._readable[p.table].add(a + i)
                if p.table is Table.HOLDING:
                    self._writable.add(a + i)
            if p.table.is_bit:
                assert p.condition is not None
                self.bits[p.table][a] = not p.active_when  # the condition starts inactive
            else:
                for i in range(p.count):
                    self.registers[p.table].setdefault(a + i, 0)
        for c in prof.commands.values():
            a = prof.pdu_address(c.address)
            self._writable.add(a)
            if c.table is Table.HOLDING:
                self._readable[Table.HOLDING].add(a)
                self.registers[Table.HOLDING].setdefault(a, 0)
            else:
                self._readable[Table.COIL].add(a)
                self.bits[Table.COIL].setdefault(a, False)
        if prof.identify is not None:
            self._readable[prof.identify.table].add(prof.pdu_address(prof.identify.address))
            self.registers[prof.identify.table].setdefault(
                prof.pdu_address(prof.identify.address), 0
            )
            self._keep_identity()
        # unused registers inside a gap the profile lets a read bridge
        for t in Table:
            addrs = sorted(self._readable[t])
            for lo, hi in itertools.pairwise(addrs):
                if 1 < hi - lo <= prof.max_gap + 1:
                    self._readable[t].update(range(lo + 1, hi))

    # ------------------------------------------------------------ the test API

    def set_point(self, name: str, value: float) -> None:
        """Set a point to an engineering value (mA, degrees C), encoded as the profile says.

        Bool points take the raw bit (``set_point("smoke_alarm", 1)``); status
        words take the raw word, of which only the bits the profile's flags
        name are changed (other bits, such as the Acrel meter type, stay). The
        identification register of ``firegate scan`` keeps its model code.
        Raises KeyError for an unknown point and ValueError for a value the
        point's type cannot hold.
        """
        p = self.profile.point_by_name[name]
        a = self.profile.pdu_address(p.address)
        with self._lock:
            if p.table.is_bit:
                self.bits[p.table][a] = bool(value)
            elif p.flags:
                mask = sum({1 << f.bit for f in p.flags})
                old = codec.raw_from_words(
                    p, [self.registers[p.table].get(a + i, 0) for i in range(p.count)]
                )
                raw = (old & ~mask) | (int(value) & mask)
                self._set_words(p.table, a, codec.words_from_raw(p, raw))
            else:
                self._set_words(
                    p.table, a, codec.words_from_raw(p, codec.raw_from_engineering(p, value))
                )
            self._keep_identity()

    def _keep_identity(self) -> None:
        ident = self.profile.identify
        if ident is not None:
            regs = self.registers[ident.table]
            a = self.profile.pdu_address(ident.address)
            regs[a] = (regs.get(a, 0) & ~ident.mask & 0xFFFF) | (ident.value & ident.mask)

    def set_condition(self, name: str, active: bool) -> None:
        """Put a bool point's condition on or off (knows ``active_when``)."""
        p = self.profile.point_by_name[name]
        self.set_point(name, int(active == p.active_when))

    def set_flag(self, name: str, bit: int, on: bool) -> None:
        """Set one bit of a status word, keeping the others."""
        raw = self.get_raw(name)
        self.set_raw(name, raw | (1 << bit) if on else raw & ~(1 << bit))

    def set_raw(self, name: str, raw: int) -> None:
        """Set a point's raw pattern (e.g. a sentinel 0xE5E5)."""
        p = self.profile.point_by_name[name]
        a = self.profile.pdu_address(p.address)
        with self._lock:
            if p.table.is_bit:
                self.bits[p.table][a] = bool(raw)
            else:
                self._set_words(p.table, a, codec.words_from_raw(p, raw))

    def get_raw(self, name: str) -> int:
        p = self.profile.point_by_name[name]
        a = self.profile.pdu_address(p.address)
        with self._lock:
            if p.table.is_bit:
                return int(self.bits[p.table].get(a, False))
            words = [self.registers[p.table].get(a + i, 0) for i in range(p.count)]
        return codec.raw_from_words(p, words)

    def get_point(self, name: str) -> float:
        p = self.profile.point_by_name[name]
        raw = self.get_raw(name)
        return float(raw) if p.table.is_bit or p.flags else codec.engineering(p, raw)

    def set_register(self, table: Table, address: int, value: int) -> None:
        """Raw register access by wire (0-based) address."""
        with self._lock:
            self.registers[table][address] = value & 0xFFFF

    def get_register(self, table: Table, address: int) -> int:
        with self._lock:
            return self.registers[table].get(address, 0)

    def _set_words(self, table: Table, a: int, words: list[int]) -> None:
        for i, w in enumerate(words):
            self.registers[table][a + i] = w

    # ----------------------------------------------------------------- faults

    def inject(self, fault: Fault | str, count: int | None = None) -> None:
        """Misbehave on the next ``count`` requests (None: until ``clear_faults``)."""
        with self._lock:
            self._faults[Fault(fault)] = _Injected(count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self) -> Fault | None:
        """The fault that applies to the request being answered now (consumes one count)."""
        with self._lock:
            for f, inj in list(self._faults.items()):
                if inj.remaining is not None:
                    inj.remaining -= 1
                    if inj.remaining <= 0:
                        del self._faults[f]
                return f
        return None

    # ---------------------------------------------------------------- serving

    def handle(self, pdu: bytes) -> bytes:
        """Answer a request PDU with a reply PDU (normal or exception)."""
        self.requests += 1
        fc = pdu[0] if pdu else 0
        try:
            with self._lock:
                return self._handle(fc, pdu)
        except _Refuse as e:
            return bytes((fc | 0x80, e.code))

    def _handle(self, fc: int, pdu: bytes) -> bytes:
        if fc in frames.READ_FUNCTIONS:
            if len(pdu) != 5:
                raise _Refuse(3)
            addr, count = struct.unpack_from(">HH", pdu, 1)
            table = {1: Table.COIL, 2: Table.DISCRETE, 3: Table.HOLDING, 4: Table.INPUT}[fc]
            limit = frames.MAX_READ_BITS if table.is_bit else frames.MAX_READ_REGISTERS
            if not 1 <= count <= limit:
                raise _Refuse(3)
            rng = range(addr, addr + count)
            if not all(a in self._readable[table] for a in rng):
                raise _Refuse(2)
            if table.is_bit:
                data = bytearray((count + 7) // 8)
                for i, a in enumerate(rng):
                    if self.bits[table].get(a, False):
                        data[i // 8] |= 1 << (i % 8)
                return bytes((fc, len(data))) + bytes(data)
            regs = self.registers[table]
            return bytes((fc, 2 * count)) + struct.pack(
                f">{count}H", *(regs.get(a, 0) for a in rng)
            )
        if fc in (frames.WRITE_REGISTER, frames.WRITE_COIL):
            if len(pdu) != 5:
                raise _Refuse(3)
            addr, value = struct.unpack_from(">HH", pdu, 1)
            if addr not in self._writable:
                raise _Refuse(2)
            if fc == frames.WRITE_COIL:
                if value not in (0, 0xFF00):
                    raise _Refuse(3)
                self.bits[Table.COIL][addr] = value == 0xFF00
            else:
                self.registers[Table.HOLDING][addr] = value
            self.writes.append((addr, value))
            self._on_write(
                Table.HOLDING if fc == frames.WRITE_REGISTER else Table.COIL, addr, value
            )
            return pdu[:5]
        if fc == frames.WRITE_REGISTERS:
            if len(pdu) < 6:
                raise _Refuse(3)
            addr, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
            if nbytes != 2 * count or len(pdu) != 6 + nbytes:
                raise _Refuse(3)
            if not all(a in self._writable for a in range(addr, addr + count)):
                raise _Refuse(2)
            for i, v in enumerate(struct.unpack_from(f">{count}H", pdu, 6)):
                self.registers[Table.HOLDING][addr + i] = v
                self.writes.append((addr + i, v))
                self._on_write(Table.HOLDING, addr + i, v)
            return pdu[:5]
        raise _Refuse(1)

    def _on_write(self, table: Table, addr: int, value: int) -> None:
        """A write that matches a profile command does what the command says.

        ``reset`` clears every alarm and pre-alarm of the device (what a
        detector's reset does when the smoke has gone); other commands are
        only recorded.
        """
        for name, c in self.profile.commands.items():
            cval = value if table is Table.HOLDING else (0xFF00 if value else 0)
            if (
                self.profile.pdu_address(c.address) == addr
                and c.table is table
                and (c.value == cval or (table is Table.COIL and bool(c.value) == bool(value)))
            ):
                self.commands_received.append(name)
                if name == "reset":
                    for p in self.profile.points:
                        if (
                            p.table.is_bit
                            and p.condition is not None
                            and p.condition.value in ("alarm", "prealarm")
                        ):
                            self.bits[p.table][
                                self.profile.pdu_address(p.address)
                            ] = not p.active_when


class _Refuse(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
