"""Modbus PDUs and RTU/TCP framing: pure functions, no I/O.

Shared by the bus drivers, ``firegate scan`` and the firmware mocks, so that
both ends of a simulated link agree on the wire format by construction (the
CRC and the length rules are tested against pymodbus's own encoder).

Only the function codes a fire gateway needs: 01/02/03/04 reads, 05/06
single writes, 15/16 multiple writes (mocks answer them), and exception
replies (function code | 0x80).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

READ_COILS = 0x01
READ_DISCRETE = 0x02
READ_HOLDING = 0x03
READ_INPUT = 0x04
WRITE_COIL = 0x05
WRITE_REGISTER = 0x06
WRITE_COILS = 0x0F
WRITE_REGISTERS = 0x10
READ_FUNCTIONS = (READ_COILS, READ_DISCRETE, READ_HOLDING, READ_INPUT)
WRITE_FUNCTIONS = (WRITE_COIL, WRITE_REGISTER, WRITE_COILS, WRITE_REGISTERS)

EXCEPTION_TEXT = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


class ModbusError(Exception):
    """Base of every error a Modbus transaction can end with."""


class NoReply(ModbusError):
    """No valid reply from the device within the timeout (silent, or only bad frames)."""


class FrameError(ModbusError):
    """A reply arrived but was unusable (bad CRC, truncated, wrong length)."""


class DeviceException(ModbusError):
    """The device answered with a Modbus exception (it is alive, the request was refused)."""

    def __init__(self, function: int, code: int) -> None:
        self.function = function
        self.code = code
        super().__init__(
            f"device refused function {function:#04x}: exception {code} "
            f"({EXCEPTION_TEXT.get(code, 'unknown')})"
        )


class PortError(ModbusError):
    """The serial port or TCP connection is not available (unplugged, refused)."""


class PortSettingsError(PortError):
    """The serial port exists but refuses the line settings (baud rate, parity, stop
    bits, data bits) or is no serial port at all; the message says what to change."""


# ------------------------------------------------------------------------ CRC


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Modbus RTU CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: unit id, PDU, CRC (low byte first)."""
    body = bytes((unit,)) + pdu
    return body + struct.pack("<H", crc16(body))


def crc_ok(frame: bytes | bytearray | memoryview) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == (frame[-2] | (frame[-1] << 8))


# ------------------------------------------------------------------ requests


def read_request(function: int, address: int, count: int) -> bytes:
    """PDU of a read (01-04)."""
    if function not in READ_FUNCTIONS:
        raise ValueError(f"not a read function: {function}")
    limit = MAX_READ_BITS if function in (READ_COILS, READ_DISCRETE) else MAX_READ_REGISTERS
    if not 1 <= count <= limit:
        raise ValueError(f"count {count} outside 1..{limit}")
    if not 0 <= address <= 0xFFFF or address + count > 0x10000:
        raise ValueError(f"address {address} (+{count}) outside 0..65535")
    return struct.pack(">BHH", function, address, count)


def write_register_request(address: int, value: int) -> bytes:
    return struct.pack(">BHH", WRITE_REGISTER, address, value & 0xFFFF)


def write_coil_request(address: int, on: bool) -> bytes:
    return struct.pack(">BHH", WRITE_COIL, address, 0xFF00 if on else 0x0000)


# ------------------------------------------------------------------- replies


def expected_reply_length(request_pdu: bytes) -> int:
    """Length of a normal reply PDU to ``request_pdu`` (exception replies are 2)."""
    fc = request_pdu[0]
    if fc in READ_FUNCTIONS:
        count = struct.unpack_from(">H", request_pdu, 3)[0]
        nbytes = (count + 7) // 8 if fc in (READ_COILS, READ_DISCRETE) else 2 * count
        return 2 + nbytes
    if fc in WRITE_FUNCTIONS:
        return 5
    raise ValueError(f"unsupported function {fc}")


def rtu_reply_length(request_pdu: bytes) -> int:
    """Bytes of a normal RTU reply frame (unit + PDU + CRC)."""
    return 1 + expected_reply_length(request_pdu) + 2


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded reply: registers for 03/04, bits for 01/02, nothing for writes."""

    registers: tuple[int, ...] = ()
    bits: tuple[bool, ...] = ()


def parse_reply(request_pdu: bytes, reply_pdu: bytes) -> Reply:
    """Check a reply PDU against its request and decode it.

    Raises ``DeviceException`` for an exception reply and ``FrameError`` for
    anything that does not fit the request (wrong function, byte count,
    echo): such a frame is never turned into values.
    """
    fc = request_pdu[0]
    if not reply_pdu:
        raise FrameError("empty reply")
    if reply_pdu[0] == fc | 0x80:
        if len(reply_pdu) != 2:
            raise FrameError("exception reply of wrong length")
        raise DeviceException(fc, reply_pdu[1])
    if reply_pdu[0] != fc:
        raise FrameError(f"reply function {reply_pdu[0]:#04x} does not match request {fc:#04x}")
    if len(reply_pdu) != expected_reply_length(request_pdu):
        raise FrameError(
            f"reply has {len(reply_pdu)} bytes, expected {expected_reply_length(request_pdu)}"
        )
    if fc in READ_FUNCTIONS:
        count = struct.unpack_from(">H", request_pdu, 3)[0]
        nbytes = reply_pdu[1]
        if nbytes != len(reply_pdu) - 2:
            raise FrameError("byte count does not match the reply length")
        data = reply_pdu[2:]
        if fc in (READ_COILS, READ_DISCRETE):
            bits = tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(count))
            return Reply(bits=bits)
        return Reply(registers=struct.unpack(f">{count}H", data))
    if reply_pdu != request_pdu[:5]:
        raise FrameError("write reply does not echo the request")
    return Reply()


def find_rtu_reply(buf: bytes | bytearray, unit: int, request_pdu: bytes) -> tuple[int, int] | None:
    """Locate a CRC-valid reply from ``unit`` to ``request_pdu`` in ``buf``.

    Returns (start, end) of the frame, or None. Frames from other ids,
    garbage and frames with a bad CRC are skipped, never returned: a value
    reaches the caller only from a frame that passed the CRC and the id check.
    """
    fc = request_pdu[0]
    normal = rtu_reply_length(request_pdu)
    n = len(buf)
    for i in range(n - 4):
        if buf[i] != unit:
            continue
        f = buf[i + 1]
        if f == fc:
            length = normal
        elif f == fc | 0x80:
            length = 5
        else:
            continue
        if i + length <= n and crc_ok(memoryview(buf)[i : i + length]):
            return i, i + length
    return None


# ----------------------------------------------------------------- Modbus TCP


def mbap(transaction: int, unit: int, pdu: bytes) -> bytes:
    """A Modbus TCP ADU: MBAP header (protocol 0) plus PDU."""
    return struct.pack(">HHHB", transaction & 0xFFFF, 0, len(pdu) + 1, unit) + pdu


# ----------------------------------------------------------------- wire time


def char_time_s(baudrate: int) -> float:
    """One RTU character on the wire: 11 bits (start, 8 data, parity/stop, stop)."""
    return 11.0 / baudrate


def silence_s(baudrate: int) -> float:
    """The 3.5-character inter-frame silence; fixed at 1.75 ms above 19200 baud."""
    return 0.00175 if baudrate > 19200 else 3.5 * char_time_s(baudrate)


def transaction_wire_s(baudrate: int, request_bytes: int, reply_bytes: int) -> float:
    """Least time one request/reply pair occupies the bus: both frames plus two silences."""
    return (request_bytes + reply_bytes) * char_time_s(baudrate) + 2 * silence_s(baudrate)
