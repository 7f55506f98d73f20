"""Device profiles: what a device model's registers or serial lines mean.

A profile is data (one YAML file per model under config/profiles/), validated
once into these frozen models. Drivers read values and decode them only
through a profile; the code never knows a vendor's register numbers.

Two kinds:

* ``modbus``: a register map (points), optional commands (reset a detector)
  and an optional identification rule for ``firegate scan``.
* ``serial_panel``: the line format a fire alarm panel prints on its
  printer/CRT port, as regular expressions that map a line to a condition.

Addresses are written as the manual prints them; ``addressing`` says whether
those numbers are 0-based (PDU addresses) or 1-based (``4x0001`` style, the
driver subtracts one).
"""

from __future__ import annotations

import enum
import re
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from agent.events import Condition, DeviceKind, Quantity
from agent.model import Name, Strict


class Table(enum.StrEnum):
    """The four Modbus data tables."""

    HOLDING = "holding"  # 4x, function 03 (read), 06/16 (write)
    INPUT = "input"  # 3x, function 04
    COIL = "coil"  # 0x, function 01 (read), 05 (write)
    DISCRETE = "discrete"  # 1x, function 02

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


class DataType(enum.StrEnum):
    U16 = "u16"
    S16 = "s16"
    U32 = "u32"
    S32 = "s32"
    F32 = "f32"
    BOOL = "bool"  # one coil or discrete input

    @property
    def registers(self) -> int:
        return 2 if self in (DataType.U32, DataType.S32, DataType.F32) else 1


class WordOrder(enum.StrEnum):
    """Order of the two 16-bit registers of a 32-bit value."""

    BIG = "big"  # high word first (ABCD), the Modbus convention
    LITTLE = "little"  # low word first (CDAB), common on meters


class Flag(Strict):
    """One bit of a status register that signals a condition."""

    bit: int = Field(ge=0, le=31, description="bit number, 0 = least significant")
    condition: Condition
    point: str = Field(default="", description="sub-point it belongs to, e.g. 'loop1'")
    active_when: bool = Field(default=True, description="bit value that means the condition is on")
    detail: str = ""


class Point(Strict):
    """One value of the register map: a reading, a state, or a status word."""

    name: Name
    table: Table
    address: int = Field(ge=0, le=65536, description="as the manual prints it, see `addressing`")
    type: DataType = DataType.U16
    word_order: WordOrder = WordOrder.BIG
    scale: float = Field(default=1.0, description="engineering value = raw * scale + offset")
    offset: float = 0.0
    unit: str = ""
    quantity: Quantity | None = Field(
        default=None, description="set for a measured value: the point becomes a Reading"
    )
    condition: Condition | None = Field(
        default=None, description="set for a bool point (coil/discrete) that signals a condition"
    )
    active_when: bool = True
    flags: tuple[Flag, ...] = Field(default=(), description="bits of a status word")
    sentinels: dict[int, str] = Field(
        default_factory=dict,
        description="raw values that are not measurements but a sensor fault, e.g. 0xE5E5: short",
    )
    setpoint_point: str | None = Field(
        default=None, description="name of the point that holds this reading's alarm setpoint"
    )
    sub_point: str = Field(default="", description="which loop/channel the value belongs to")
    detail: str = Field(default="", description="what the condition means, for people")

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        if self.table.is_bit and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.table.value} point must have type bool")
        if not self.table.is_bit and self.type is DataType.BOOL:
            raise ValueError("type bool is only for coil and discrete points")
        if self.type is DataType.BOOL and self.condition is None:
            raise ValueError("a bool point needs a `condition` (what it signals)")
        if self.flags and self.type not in (DataType.U16, DataType.U32):
            raise ValueError("flags need an unsigned status word (u16 or u32)")
        if self.quantity is not None and self.flags:
            raise ValueError("a point is either a measured value (quantity) or a status word")
        width = 32 if self.type is DataType.U32 else 16
        for f in self.flags:
            if f.bit >= width:
                raise ValueError(f"flag bit {f.bit} does not fit a {self.type.value} word")
        return self

    @property
    def count(self) -> int:
        """How many registers (or bits) the point takes."""
        return self.type.registers


class Command(Strict):
    """A write that makes the device do something (reset, relay test)."""

    table: Literal[Table.HOLDING, Table.COIL]
    address: int = Field(ge=0, le=65536)
    value: int = Field(ge=0, le=0xFFFF)
    description: str = ""


class Identify(Strict):
    """How `firegate scan` recognises this model: read one register, mask, compare."""

    table: Literal[Table.HOLDING, Table.INPUT]
    address: int = Field(ge=0, le=65536)
    mask: int = Field(default=0xFFFF, ge=0, le=0xFFFF)
    value: int = Field(ge=0, le=0xFFFF)


class SerialDefaults(Strict):
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


class ModbusProfile(Strict):
    """A Modbus device model's register map."""

    kind: Literal["modbus"] = "modbus"
    vendor: str
    model: str
    description: str = ""
    device_kind: DeviceKind
    addressing: Literal["zero_based", "one_based"]
    max_gap: int = Field(
        default=0,
        ge=0,
        le=64,
        description="unused registers a merged read may bridge; 0 = only contiguous points",
    )
    max_read: int = Field(default=125, ge=1, le=125, description="registers per request")
    points: tuple[Point, ...] = Field(min_length=1)
    commands: dict[str, Command] = Field(default_factory=dict)
    identify: Identify | None = None
    serial: SerialDefaults = Field(default_factory=SerialDefaults)

    @model_validator(mode="after")
    def _unique_points(self) -> ModbusProfile:
        seen: set[str] = set()
        for p in self.points:
            if p.name in seen:
                raise ValueError(f"point name {p.name!r} appears twice")
            seen.add(p.name)
        for p in self.points:
            if p.setpoint_point is not None and p.setpoint_point not in seen:
                raise ValueError(f"point {p.name!r}: setpoint_point {p.setpoint_point!r} unknown")
            if self.addressing == "one_based" and p.address == 0:
                raise ValueError(f"point {p.name!r}: address 0 in a one_based profile")
        return self

    def pdu_address(self, address: int) -> int:
        """The 0-based address that goes on the wire."""
        return address - 1 if self.addressing == "one_based" else address

    @cached_property
    def point_by_name(self) -> dict[str, Point]:
        return {p.name: p for p in self.points}


class LinePattern(Strict):
    """A panel line that matches ``regex`` sets ``condition`` to ``active``.

    Named groups ``loop`` and ``address`` (optional) locate the point; a
    group ``text`` (optional) is kept as the detail.
    """

    regex: str
    condition: Condition
    active: bool = True
    device_kind: DeviceKind = DeviceKind.PANEL
    all_points: bool = Field(
        default=False, description="applies to every point (e.g. a panel-wide RESET clears all)"
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"regular expression does not compile: {e}") from None
        return v

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.regex)


class PanelProfile(Strict):
    """A fire alarm panel's printer/CRT event output."""

    kind: Literal["serial_panel"]
    vendor: str
    model: str
    description: str = ""
    encoding: str = "ascii"
    patterns: tuple[LinePattern, ...] = Field(min_length=1)
    serial: SerialDefaults = Field(default_factory=SerialDefaults)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r}") from None
        return v


Profile = Annotated[ModbusProfile | PanelProfile, Field(discriminator="kind")]
