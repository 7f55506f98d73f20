"""The GB/T 26875.3-2011 frame, both directions.

Layout (offsets in bytes; multi-byte integers low byte first)::

    0   2  start "@@" (0x40 0x40)
    2   2  business serial number
    4   2  protocol version: major (1), user version
    6   6  time label: second, minute, hour, day, month, year - 2000
    12  6  source address
    18  6  destination address
    24  2  application data length (at most 1024)
    26  1  command byte
    27  n  application data
    27+n 1 checksum: sum of bytes 2 .. 26+n (serial number through the
           application data) modulo 256
    28+n 2 end "##" (0x23 0x23)

Parsing is strict: every deviation raises a ``FrameError`` subclass, never
another exception, whatever the bytes (tests/gb26875/test_codec.py feeds it
random bytes). A frame whose framing is intact but whose checksum is wrong
raises ``ChecksumError`` carrying the serial number, so that the receiver can
deny it as the standard asks; anything else breaks the stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

START = b"@@"
END = b"##"
HEADER_LEN = 27  # start .. command byte
TRAILER_LEN = 3  # checksum + end
MIN_FRAME = HEADER_LEN + TRAILER_LEN
MAX_APP_DATA = 1024
MAX_FRAME = MIN_FRAME + MAX_APP_DATA
ADDRESS_MAX = (1 << 48) - 1


class Command(enum.IntEnum):
    """The control unit's command byte (GB/T 26875.3 table 2)."""

    CONTROL = 1  # centre -> device: control (time sync, initialise, on-duty check)
    SEND_DATA = 2  # device -> centre: fire alarm and facility state
    CONFIRM = 3  # answer to CONTROL or SEND_DATA
    REQUEST = 4  # centre -> device: query
    RESPONSE = 5  # answer to REQUEST
    DENY = 6  # negative answer to CONTROL or SEND_DATA


class FrameError(ValueError):
    """Bytes that are not a valid GB/T 26875.3 frame."""


class BadStart(FrameError):
    """The first two bytes are not "@@"."""


class BadLength(FrameError):
    """The application data length exceeds 1024 bytes, or the bytes given do not
    match the declared length."""


class BadEnd(FrameError):
    """The frame does not end with "##" where its length says it ends."""


class BadCommand(FrameError):
    """The command byte is not one of the six the standard defines."""


class ChecksumError(FrameError):
    """The framing is intact but the checksum does not match; ``serial`` is the
    frame's serial number (the receiver denies it)."""

    def __init__(self, message: str, serial: int, source: int) -> None:
        super().__init__(message)
        self.serial = serial
        self.source = source


@dataclass(frozen=True, slots=True)
class TimeLabel:
    """Six bytes of local time as sent: second, minute, hour, day, month, year-2000.

    Stored as sent (a centre's confirm may carry zeros); ``to_datetime``
    checks the ranges.
    """

    second: int
    minute: int
    hour: int
    day: int
    month: int
    year: int  # 0..99, years since 2000

    def to_bytes(self) -> bytes:
        return bytes((self.second, self.minute, self.hour, self.day, self.month, self.year))

    @classmethod
    def from_bytes(cls, b: bytes) -> TimeLabel:
        return cls(b[0], b[1], b[2], b[3], b[4], b[5])

    @classmethod
    def from_wall(cls, wall: float, utc_offset_min: int = 0) -> TimeLabel:
        """Wall-clock seconds (UTC) as the local time label ``utc_offset_min`` east of UTC."""
        t = datetime.fromtimestamp(wall, tz=UTC) + timedelta(minutes=utc_offset_min)
        if not 2000 <= t.year <= 2099:
            raise ValueError(f"year {t.year} does not fit a GB/T 26875.3 time label")
        return cls(t.second, t.minute, t.hour, t.day, t.month, t.year - 2000)

    def to_wall(self, utc_offset_min: int = 0) -> float:
        """Seconds since the epoch (UTC); ``ValueError`` if the label is not a valid time."""
        local = datetime(
            2000 + self.year, self.month, self.day, self.hour, self.minute, self.second, tzinfo=UTC
        )
        return (local - timedelta(minutes=utc_offset_min)).timestamp()

    def __str__(self) -> str:
        return (
            f"20{self.year:02d}-{self.month:02d}-{self.day:02d} "
            f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        )


ZERO_TIME = TimeLabel(0, 0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``data`` is the application data unit (empty for confirm/deny)."""

    serial: int
    command: Command
    source: int
    destination: int
    time: TimeLabel = ZERO_TIME
    data: bytes = b""
    version: tuple[int, int] = (1, 1)

    def encode(self) -> bytes:
        """The frame's bytes; ``ValueError`` for a field out of its range."""
        if not 0 <= self.serial <= 0xFFFF:
            raise ValueError(f"serial number {self.serial} is not 0..65535")
        for name, addr in (("source", self.source), ("destination", self.destination)):
            if not 0 <= addr <= ADDRESS_MAX:
                raise ValueError(f"{name} address {addr} does not fit 6 bytes")
        if len(self.data) > MAX_APP_DATA:
            raise ValueError(f"application data of {len(self.data)} bytes exceeds 1024")
        body = b"".join(
            (
                self.serial.to_bytes(2, "little"),
                bytes(self.version),
                self.time.to_bytes(),
                self.source.to_bytes(6, "little"),
                self.destination.to_bytes(6, "little"),
                len(self.data).to_bytes(2, "little"),
                bytes((int(self.command),)),
                self.data,
            )
        )
        return START + body + bytes((checksum(body),)) + END


def checksum(body: bytes) -> int:
    """Arithmetic sum of the control unit and application data, modulo 256."""
    return sum(body) & 0xFF


def frame_length(header: bytes) -> int:
    """Total length of the frame whose first HEADER_LEN bytes are ``header``.

    Raises ``BadStart`` or ``BadLength`` at once, so that a reader never waits
    for (or buffers) more than one frame's worth of garbage.
    """
    if header[:2] != START[: len(header[:2])]:
        raise BadStart(f"frame starts with {header[:2].hex(' ')}, not 40 40 ('@@')")
    if len(header) < HEADER_LEN:
        raise BadLength(f"{len(header)} bytes are shorter than a frame header ({HEADER_LEN})")
    n = int.from_bytes(header[24:26], "little")
    if n > MAX_APP_DATA:
        raise BadLength(f"application data length {n} exceeds 1024")
    return MIN_FRAME + n


def decode(raw: bytes) -> Frame:
    """Exactly one frame from ``raw``; any defect raises a ``FrameError``."""
    total = frame_length(raw[:HEADER_LEN])
    if len(raw) != total:
        raise BadLength(f"frame declares {total} bytes, got {len(raw)}")
    if raw[-2:] != END:
        raise BadEnd(f"frame ends with {raw[-2:].hex(' ')}, not 23 23 ('##')")
    body = raw[2:-3]
    serial = int.from_bytes(raw[2:4], "little")
    source = int.from_bytes(raw[12:18], "little")
    if checksum(body) != raw[-3]:
        raise ChecksumError(
            f"checksum {raw[-3]:#04x} does not match {checksum(body):#04x} (serial {serial})",
            serial,
            source,
        )
    try:
        command = Command(raw[26])
    except ValueError:
        raise BadCommand(f"command byte {raw[26]} is not one of 1..6") from None
    return Frame(
        serial=serial,
        command=command,
        source=source,
        destination=int.from_bytes(raw[18:24], "little"),
        time=TimeLabel.from_bytes(raw[6:12]),
        data=bytes(raw[27:-3]),
        version=(raw[4], raw[5]),
    )


class FrameDecoder:
    """Splits a byte stream (TCP) into frames, without I/O.

    ``feed`` returns, in stream order, each complete frame, or a
    ``ChecksumError`` for a frame whose framing was intact but whose checksum
    was wrong (it was consumed whole: decoding goes on, the receiver denies
    it). Any other defect raises a ``FrameError`` and breaks the decoder for
    good: the stream cannot be trusted to resynchronise, so the caller drops
    the connection. Never buffers more than one frame (1054 bytes): garbage is
    rejected at its first two bytes, an oversized length at its header.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.broken = False

    def feed(self, data: bytes) -> list[Frame | ChecksumError]:
        if self.broken:
            raise FrameError("stream already broken by an earlier framing error")
        self._buf += data
        out: list[Frame | ChecksumError] = []
        try:
            while True:
                head = bytes(self._buf[:HEADER_LEN])
                if len(head) < HEADER_LEN:
                    if head[:2] != START[: len(head[:2])]:
                        frame_length(head)  # raises BadStart
                    return out
                total = frame_length(head)
                if len(self._buf) < total:
                    return out
                raw = bytes(self._buf[:total])
                del self._buf[:total]
                try:
                    out.append(decode(raw))
                except ChecksumError as e:
                    out.append(e)
        except FrameError:
            self.broken = True
            raise
