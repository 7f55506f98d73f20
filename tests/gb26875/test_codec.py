"""The GB/T 26875.3 frame codec: round trips, garbage, and public test vectors.

Golden vectors come from two independent public sources (docs/gb26875.md):
the worked examples of a vendor's protocol note reproduced in the
ActorLancer/GB-T-26875.3.2011-rs repository (GB26875文档.md, "示例"), whose
checksums we verify byte for byte, and the application-data vectors of the
Go codec shootingfans/codec_gb26875_3_2011 (codec/codec_test.go).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.gb26875.codec import (
    BadEnd,
    BadLength,
    BadStart,
    ChecksumError,
    Command,
    Frame,
    FrameDecoder,
    FrameError,
    TimeLabel,
    decode,
)
from agent.gb26875.objects import (
    ComponentAnalog,
    ComponentState,
    DeviceState,
    DeviceTime,
    DeviceVersion,
    ObjectError,
    Reserved,
    SystemState,
    TypeFlag,
    Unit,
    decode_unit,
)

T_2012 = TimeLabel(2, 58, 9, 26, 9, 12)  # 2012-09-26 09:58:02, the examples' time
DEVICE, CENTRE = 889, 88888  # 79 03 00 00 00 00 and 38 5B 01 00 00 00

# (name, hex) from the vendor examples; every one must decode and re-encode byte-exact
VENDOR = {
    "confirm": "40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 03 AB 23 23",
    "deny": "40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 06 AE 23 23",
    "device_main_power_fault": "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 02 15 01 08 02 3A 09 1A 09 0C 42 23 23",
    "device_version": "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 04 00 02 19 01 01 01 C7 23 23",
    "device_time": "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 08 00 02 1C 01 02 3A 09 1A 09 0C 40 23 23",
    "read_device_state": "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 51 01 00 FE 23 23",
    "answer_device_state": "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 05 15 01 08 02 3A 09 1A 09 0C 45 23 23",
    "read_device_time": "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 58 01 00 05 23 23",
    "initialise": "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 59 01 00 03 23 23",
    "sync_clock": "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 08 00 01 5A 01 02 3A 09 1A 09 0C 7D 23 23",
    "on_duty_check": "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 5B 01 0A 0F 23 23",
}
# The vendor's fire-alarm example pads the description with spaces (we pad with NUL,
# as the Go codec's vectors do): it must decode, fields checked below.
VENDOR_FIRE = (
    "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 30 00 02 02 01 01 "
    "01 28 0A 00 02 00 02 00" + " 20" * 30 + " 00 02 3A 09 1A 09 0C 46 23 23"
)


@pytest.mark.parametrize("name", sorted(VENDOR))
def test_vendor_examples_decode_and_reencode_byte_exact(name: str) -> None:
    raw = bytes.fromhex(VENDOR[name])
    frame = decode(raw)
    assert frame.encode() == raw
    if frame.data:
        unit = decode_unit(frame.data)
        assert isinstance(unit, Unit)
        assert unit.encode() == frame.data


def test_vendor_fire_alarm_example() -> None:
    frame = decode(bytes.fromhex(VENDOR_FIRE))
    assert (frame.serial, frame.command, frame.source, frame.destination) == (
        1,
        Command.SEND_DATA,
        DEVICE,
        CENTRE,
    )
    assert frame.version == (1, 1)
    unit = decode_unit(frame.data)
    assert isinstance(unit, Unit) and unit.type == TypeFlag.COMPONENT_STATE
    (obj,) = unit.objects
    assert isinstance(obj, ComponentState)
    # "2号10区 感烟探测器 火警": smoke detector (40), zone 10 position 2, fire bit
    assert obj.component_type == 40
    assert obj.component_address == 10 | (2 << 16)
    assert obj.state == 0x0002
    assert obj.time == T_2012


def test_our_fire_alarm_frame_is_byte_exact() -> None:
    """The frame we send for the vendor's example, NUL-padded: the same bytes but the
    description and so the checksum (0x46 - 30 * 0x20 mod 256)."""
    obj = ComponentState(1, 1, 40, 10 | (2 << 16), 0x0002, "", T_2012)
    frame = Frame(
        1,
        Command.SEND_DATA,
        DEVICE,
        CENTRE,
        TimeLabel(32, 58, 9, 26, 9, 12),
        Unit(2, (obj,)).encode(),
    )
    expected = bytearray(bytes.fromhex(VENDOR_FIRE))
    expected[38 : 38 + 30] = b"\0" * 30
    expected[-3] = (0x46 - 30 * 0x20) & 0xFF
    assert frame.encode() == bytes(expected)


# shootingfans/codec_gb26875_3_2011 codec/codec_test.go: application data vectors
GO_COMPONENT_STATE = bytes(
    [0x02, 0x01, 0x01, 0x02, 0x79, 0x01, 0x02, 0x03, 0x04, 0x04, 0x02]
    + [0x37, 0xC2, 0xA5, 0x30, 0x32, 0xCA, 0xD2, 0xBB, 0xE1, 0xD2, 0xE9, 0xCA, 0xD2]
    + [0xD1, 0xCC, 0xB8, 0xD0]
    + [0x00] * 14
    + [0x04, 0x00, 0x09, 0x02, 0x07, 0x15]
)
GO_ANALOG = bytes([3, 1, 1, 2, 40, 1, 2, 3, 4, 3, 32, 3, 4, 0, 9, 2, 7, 21])
GO_SYSTEM_STATE = bytes([0x01, 0x01, 0x01, 0x02, 0x04, 0x02, 0x04, 0x00, 0x09, 0x02, 0x07, 0x15])
GO_DEVICE_STATE = bytes([0x15, 0x01, 0x08, 0x04, 0x00, 0x09, 0x02, 0x07, 0x15])
GO_TIME = TimeLabel(4, 0, 9, 2, 7, 21)  # 2021-07-02 09:00:04 (their 1625187604, UTC+8)


def test_go_codec_vectors_encode_byte_exact() -> None:
    comp = ComponentState(1, 2, 0x79, 0x04030201, 0x0204, "7楼02室会议室烟感", GO_TIME)
    assert Unit(2, (comp,)).encode() == GO_COMPONENT_STATE
    assert decode_unit(GO_COMPONENT_STATE) == Unit(2, (comp,))
    analog = ComponentAnalog(1, 2, 0x28, 0x04030201, 3, 0x0320, GO_TIME)
    assert Unit(3, (analog,)).encode() == GO_ANALOG
    assert Unit(1, (SystemState(1, 2, 0x0204, GO_TIME),)).encode() == GO_SYSTEM_STATE
    assert Unit(21, (DeviceState(0x08, GO_TIME),)).encode() == GO_DEVICE_STATE


def test_time_label_is_second_first_local_time() -> None:
    # 2012-09-26 01:58:02 UTC is 09:58:02 in Beijing (UTC+8)
    wall = 1348624682.0
    assert TimeLabel.from_wall(wall, 480) == T_2012
    assert T_2012.to_wall(480) == wall


# ------------------------------------------------------------------ properties

times = st.builds(
    TimeLabel,
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 23),
    st.integers(1, 28),
    st.integers(1, 12),
    st.integers(0, 99),
)
u8, u16, u32 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
texts = st.text(
    alphabet=st.sampled_from("火警烟感温度区楼层室ABCxyz0123456789-_"), max_size=15
).filter(lambda s: len(s.encode("gb18030")) <= 31)

objects = st.one_of(
    st.tuples(
        st.just(1), st.lists(st.builds(SystemState, u8, u8, u16, times), min_size=1, max_size=5)
    ),
    st.tuples(
        st.just(2),
        st.lists(
            st.builds(ComponentState, u8, u8, u8, u32, u16, texts, times), min_size=1, max_size=22
        ),
    ),
    st.tuples(
        st.just(3),
        st.lists(
            st.builds(ComponentAnalog, u8, u8, u8, u32, u8, st.integers(-32768, 32767), times),
            min_size=1,
            max_size=63,
        ),
    ),
    st.tuples(st.just(21), st.lists(st.builds(DeviceState, u8, times), min_size=1, max_size=1)),
    st.tuples(st.just(25), st.lists(st.builds(DeviceVersion, u8, u8), min_size=1, max_size=1)),
    st.tuples(st.just(28), st.lists(st.builds(DeviceTime, times), min_size=1, max_size=1)),
    st.tuples(st.just(81), st.lists(st.builds(Reserved, u8), min_size=1, max_size=1)),
)


@settings(max_examples=300, deadline=None)
@given(
    objs=objects,
    serial=u16,
    command=st.sampled_from(list(Command)),
    src=st.integers(0, (1 << 48) - 1),
    dst=st.integers(0, (1 << 48) - 1),
    time=times,
    version=st.tuples(u8, u8),
)
def test_any_frame_we_encode_decodes_to_the_same_objects(
    objs: tuple[int, list],
    serial: int,
    command: Command,
    src: int,
    dst: int,
    time: TimeLabel,
    version: tuple[int, int],
) -> None:
    unit = Unit(objs[0], tuple(objs[1]))
    frame = Frame(serial, command, src, dst, time, unit.encode(), version)
    raw = frame.encode()
    assert decode(raw) == frame
    assert decode_unit(decode(raw).data) == unit
    # and through the stream decoder, split anywhere
    dec = FrameDecoder()
    cut = len(raw) // 3
    assert dec.feed(raw[:cut]) + dec.feed(raw[cut:] + raw) == [frame, frame]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_framing_errors(data: bytes) -> None:
    try:
        frame = decode(data)
    except FrameError:
        pass
    else:
        with contextlib.suppress(FrameError):
            decode_unit(frame.data)
    dec = FrameDecoder()
    try:
        for i in range(0, len(data), 7):
            dec.feed(data[i : i + 7])
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.data())
def test_frames_with_random_app_data_or_corruption_raise_only_framing_errors(
    payload: bytes, data: st.DataObject
) -> None:
    raw = bytearray(Frame(7, Command.SEND_DATA, 1, 2, T_2012, payload).encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        frame = decode(bytes(raw))
        decode_unit(frame.data)
    except FrameError:
        pass


def test_typed_errors() -> None:
    good = Frame(5, Command.SEND_DATA, 1, 2, T_2012, b"\x15\x01\x01" + T_2012.to_bytes()).encode()
    with pytest.raises(BadStart):
        decode(b"GET / HTTP/1.1\r\n" + good)
    with pytest.raises(BadEnd):
        decode(good[:-1] + b"!")
    bad_sum = bytearray(good)
    bad_sum[-3] ^= 0xFF
    with pytest.raises(ChecksumError) as e:
        decode(bytes(bad_sum))
    assert e.value.serial == 5
    too_long = bytearray(good)
    too_long[24:26] = (1025).to_bytes(2, "little")
    with pytest.raises(BadLength):
        decode(bytes(too_long))
    with pytest.raises(BadLength):
        decode(good + b"#")
    with pytest.raises(ObjectError):
        decode_unit(b"\x15\x02\x01" + T_2012.to_bytes())  # count 2, one object
    with pytest.raises(ObjectError):
        decode_unit(b"\x02\x17" + bytes(46 * 23))  # 23 component states: at most 22


def test_stream_decoder_denies_bad_checksum_and_goes_on_but_breaks_on_garbage() -> None:
    f1 = Frame(1, Command.CONFIRM, 1, 2).encode()
    bad = bytearray(Frame(2, Command.CONFIRM, 1, 2).encode())
    bad[-3] ^= 1
    dec = FrameDecoder()
    out = dec.feed(f1 + bytes(bad) + f1)
    assert out[0] == decode(f1) and isinstance(out[1], ChecksumError) and out[2] == decode(f1)
    with pytest.raises(BadStart):
        dec.feed(b"\x00" * 10_000_000)
    assert dec.broken


def test_garbage_is_rejected_at_its_first_bytes() -> None:
    dec = FrameDecoder()
    with pytest.raises(BadStart):
        dec.feed(b"x")
    dec = FrameDecoder()
    header = bytearray(Frame(1, Command.CONFIRM, 1, 2).encode()[:27])
    header[24:26] = (60000).to_bytes(2, "little")
    with pytest.raises(BadLength):
        dec.feed(bytes(header))  # the oversized length is refused before its bytes arrive
