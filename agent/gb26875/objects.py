"""The application data unit of GB/T 26875.3-2011 and its information objects.

An application data unit is a type flag (1 byte), an object count (1 byte),
then ``count`` information objects of that type, each laid out as in
section 8.2 of the standard (multi-byte integers low byte first, text in
GB 18030, padded with NUL to its fixed width). ``decode_unit`` is strict:
the bytes must hold exactly ``count`` objects of the type, or it raises
``ObjectError`` (a ``FrameError``: the receiver denies the frame).

Only the types the gateway sends or answers are modelled; other type flags
decode to ``Unsupported`` (kept as bytes) so that the caller can deny them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from agent.gb26875.codec import FrameError, TimeLabel


class ObjectError(FrameError):
    """An application data unit that does not match its type's layout."""


class TypeFlag(enum.IntEnum):
    """Type flags of the application data unit (GB/T 26875.3 table 3), those used here."""

    SYSTEM_STATE = 1  # building fire-facility system state
    COMPONENT_STATE = 2  # fire-facility component operating state
    COMPONENT_ANALOG = 3  # component analog value
    SYSTEM_OPERATION = 4  # fire-facility operating information
    DEVICE_STATE = 21  # the transmission device's own operating state
    DEVICE_OPERATION = 24  # its operating information
    DEVICE_VERSION = 25  # its software version
    DEVICE_CONFIG = 26  # its configuration
    DEVICE_TIME = 28  # its clock
    READ_SYSTEM_STATE = 61
    READ_COMPONENT_STATE = 62
    READ_COMPONENT_ANALOG = 63
    READ_DEVICE_STATE = 81
    READ_DEVICE_VERSION = 85
    READ_DEVICE_CONFIG = 86
    READ_DEVICE_TIME = 88
    INITIALISE = 89
    SYNC_CLOCK = 90
    ON_DUTY_CHECK = 91


# Component / system state bits (8.2.1.1, 8.2.1.2)
STATE_NORMAL = 1 << 0  # 1: normal operation, 0: test
STATE_FIRE = 1 << 1
STATE_FAULT = 1 << 2
STATE_ISOLATED = 1 << 3  # 屏蔽
STATE_SUPERVISORY = 1 << 4  # 监管
STATE_STARTED = 1 << 5
STATE_FEEDBACK = 1 << 6
STATE_DELAY = 1 << 7
STATE_POWER_FAULT = 1 << 8

# Transmission device state bits (8.2.1.8)
DEVICE_NORMAL = 1 << 0
DEVICE_FIRE = 1 << 1
DEVICE_FAULT = 1 << 2
DEVICE_MAIN_POWER_FAULT = 1 << 3
DEVICE_BACKUP_POWER_FAULT = 1 << 4
DEVICE_CHANNEL_FAULT = 1 << 5  # channel to the monitoring centre
DEVICE_LINE_FAULT = 1 << 6  # lines to the monitored facilities

# Analog value types (8.2.1.3) used by the mapping, with their resolution
ANALOG_TEMPERATURE = 3  # 0.1 C
ANALOG_VOLTAGE = 8  # 0.1 V
ANALOG_CURRENT = 9  # 0.1 A

DESCRIPTION_LEN = 31
TEXT_ENCODING = "gb18030"


def fit_text(text: str, width: int = DESCRIPTION_LEN) -> bytes:
    """``text`` in GB 18030, cut at a character boundary to ``width`` bytes, NUL padded."""
    out = b""
    for ch in text:
        b = ch.encode(TEXT_ENCODING, errors="replace")
        if len(out) + len(b) > width:
            break
        out += b
    return out.ljust(width, b"\0")


def read_text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode(TEXT_ENCODING, errors="replace").rstrip()


def _u(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


@dataclass(frozen=True, slots=True)
class SystemState:
    """Type 1: a fire-facility system's state (4 bytes + time)."""

    system_type: int
    system_address: int
    state: int
    time: TimeLabel
    SIZE = 10

    def encode(self) -> bytes:
        return (
            bytes((self.system_type, self.system_address))
            + self.state.to_bytes(2, "little")
            + self.time.to_bytes()
        )

    @classmethod
    def decode(cls, b: bytes) -> SystemState:
        return cls(b[0], b[1], _u(b[2:4]), TimeLabel.from_bytes(b[4:10]))


@dataclass(frozen=True, slots=True)
class ComponentState:
    """Type 2: one component's state (40 bytes + time)."""

    system_type: int
    system_address: int
    component_type: int
    component_address: int  # 4 bytes: zone number (low 2 bytes), position (high 2)
    state: int
    description: str
    time: TimeLabel
    SIZE = 46

    def encode(self) -> bytes:
        return (
            bytes((self.system_type, self.system_address, self.component_type))
            + self.component_address.to_bytes(4, "little")
            + self.state.to_bytes(2, "little")
            + fit_text(self.description)
            + self.time.to_bytes()
        )

    @classmethod
    def decode(cls, b: bytes) -> ComponentState:
        return cls(
            b[0],
            b[1],
            b[2],
            _u(b[3:7]),
            _u(b[7:9]),
            read_text(b[9:40]),
            TimeLabel.from_bytes(b[40:46]),
        )


@dataclass(frozen=True, slots=True)
class ComponentAnalog:
    """Type 3: one analog value of a component (10 bytes + time); ``value`` is the
    signed 16-bit count in the analog type's resolution (e.g. 0.1 C)."""

    system_type: int
    system_address: int
    component_type: int
    component_address: int
    analog_type: int
    value: int
    time: TimeLabel
    SIZE = 16

    def encode(self) -> bytes:
        return (
            bytes((self.system_type, self.system_address, self.component_type))
            + self.component_address.to_bytes(4, "little")
            + bytes((self.analog_type,))
            + self.value.to_bytes(2, "little", signed=True)
            + self.time.to_bytes()
        )

    @classmethod
    def decode(cls, b: bytes) -> ComponentAnalog:
        return cls(
            b[0],
            b[1],
            b[2],
            _u(b[3:7]),
            b[7],
            int.from_bytes(b[8:10], "little", signed=True),
            TimeLabel.from_bytes(b[10:16]),
        )


@dataclass(frozen=True, slots=True)
class DeviceState:
    """Type 21: the transmission device's (this gateway's) state (1 byte + time)."""

    state: int
    time: TimeLabel
    SIZE = 7

    def encode(self) -> bytes:
        return bytes((self.state,)) + self.time.to_bytes()

    @classmethod
    def decode(cls, b: bytes) -> DeviceState:
        return cls(b[0], TimeLabel.from_bytes(b[1:7]))


@dataclass(frozen=True, slots=True)
class DeviceVersion:
    """Type 25: the device's software version (2 bytes, no time)."""

    major: int
    minor: int
    SIZE = 2

    def encode(self) -> bytes:
        return bytes((self.major, self.minor))

    @classmethod
    def decode(cls, b: bytes) -> DeviceVersion:
        return cls(b[0], b[1])


@dataclass(frozen=True, slots=True)
class DeviceTime:
    """Type 28 (the device's clock) and type 90 (the centre's clock sync): a time label."""

    time: TimeLabel
    SIZE = 6

    def encode(self) -> bytes:
        return self.time.to_bytes()

    @classmethod
    def decode(cls, b: bytes) -> DeviceTime:
        return cls(TimeLabel.from_bytes(b[0:6]))


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Type 26: the device's configuration, a length-prefixed GB 18030 text."""

    text: str

    def encode(self) -> bytes:
        raw = fit_text(self.text, 255).rstrip(b"\0")
        return bytes((len(raw),)) + raw


@dataclass(frozen=True, slots=True)
class SystemRef:
    """Type 61: which system the centre asks about."""

    system_type: int
    system_address: int
    SIZE = 2

    def encode(self) -> bytes:
        return bytes((self.system_type, self.system_address))

    @classmethod
    def decode(cls, b: bytes) -> SystemRef:
        return cls(b[0], b[1])


@dataclass(frozen=True, slots=True)
class ComponentRef:
    """Types 62, 63: which component the centre asks about."""

    system_type: int
    system_address: int
    component_address: int
    SIZE = 6

    def encode(self) -> bytes:
        return bytes((self.system_type, self.system_address)) + self.component_address.to_bytes(
            4, "little"
        )

    @classmethod
    def decode(cls, b: bytes) -> ComponentRef:
        return cls(b[0], b[1], _u(b[2:6]))


@dataclass(frozen=True, slots=True)
class Reserved:
    """Types 81, 85, 86, 88, 89, 91: one reserved byte (91: the answer time, minutes)."""

    value: int = 0
    SIZE = 1

    def encode(self) -> bytes:
        return bytes((self.value,))

    @classmethod
    def decode(cls, b: bytes) -> Reserved:
        return cls(b[0])


InfoObject = (
    SystemState
    | ComponentState
    | ComponentAnalog
    | DeviceState
    | DeviceVersion
    | DeviceTime
    | DeviceConfig
    | SystemRef
    | ComponentRef
    | Reserved
)

# Fixed-size object types: type flag -> (class, largest count the standard allows)
_FIXED: dict[int, tuple[Any, int]] = {
    TypeFlag.SYSTEM_STATE: (SystemState, 102),
    TypeFlag.COMPONENT_STATE: (ComponentState, 22),
    TypeFlag.COMPONENT_ANALOG: (ComponentAnalog, 63),
    TypeFlag.DEVICE_STATE: (DeviceState, 1),
    TypeFlag.DEVICE_VERSION: (DeviceVersion, 1),
    TypeFlag.DEVICE_TIME: (DeviceTime, 1),
    TypeFlag.READ_SYSTEM_STATE: (SystemRef, 102),
    TypeFlag.READ_COMPONENT_STATE: (ComponentRef, 22),
    TypeFlag.READ_COMPONENT_ANALOG: (ComponentRef, 63),
    TypeFlag.READ_DEVICE_STATE: (Reserved, 1),
    TypeFlag.READ_DEVICE_VERSION: (Reserved, 1),
    TypeFlag.READ_DEVICE_CONFIG: (Reserved, 1),
    TypeFlag.READ_DEVICE_TIME: (Reserved, 1),
    TypeFlag.INITIALISE: (Reserved, 1),
    TypeFlag.SYNC_CLOCK: (DeviceTime, 1),
    TypeFlag.ON_DUTY_CHECK: (Reserved, 1),
}

MAX_COUNT: dict[int, int] = {int(k): v[1] for k, v in _FIXED.items()}


@dataclass(frozen=True, slots=True)
class Unit:
    """One application data unit: a type flag and its objects."""

    type: int
    objects: tuple[InfoObject, ...]

    def encode(self) -> bytes:
        if not self.objects or len(self.objects) > 255:
            raise ValueError(f"a unit holds 1..255 objects, not {len(self.objects)}")
        limit = MAX_COUNT.get(self.type)
        if limit is not None and len(self.objects) > limit:
            raise ValueError(f"type {self.type} holds at most {limit} objects")
        return bytes((self.type, len(self.objects))) + b"".join(o.encode() for o in self.objects)


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A unit of a type flag not modelled here (the caller denies it)."""

    type: int
    raw: bytes


def decode_unit(data: bytes) -> Unit | Unsupported:
    """The application data unit in ``data``; ``ObjectError`` if malformed."""
    if len(data) < 2:
        raise ObjectError(f"application data of {len(data)} bytes has no type flag and count")
    type_, count = data[0], data[1]
    if type_ == TypeFlag.DEVICE_CONFIG:
        return _decode_config(data)
    spec = _FIXED.get(type_)
    if spec is None:
        return Unsupported(type_, bytes(data))
    cls, limit = spec
    size: int = cls.SIZE
    if count == 0 or count > limit:
        raise ObjectError(f"type {type_} with {count} objects (1..{limit} allowed)")
    if len(data) != 2 + count * size:
        raise ObjectError(
            f"type {type_}: {count} objects need {count * size} bytes, got {len(data) - 2}"
        )
    objs = tuple(cls.decode(data[2 + i * size : 2 + (i + 1) * size]) for i in range(count))
    return Unit(type_, objs)


def _decode_config(data: bytes) -> Unit:
    if data[1] != 1 or len(data) < 3 or len(data) != 3 + data[2]:
        raise ObjectError("type 26 must hold one length-prefixed text")
    return Unit(TypeFlag.DEVICE_CONFIG, (DeviceConfig(read_text(data[3:])),))
