"""Find which device ids answer on a serial line, and guess their profiles.

A probe is one read of holding register 0. Any CRC-valid reply from the id,
a Modbus exception included, proves a device is there. Time is bounded: each
id costs at most one timeout (plus wire time), so a scan of ``n`` ids at
``k`` line settings takes at most ``n * k * (timeout + wire)``; the bound is
known before the scan starts (``scan_bound_s``).

Profile suggestions per found id: a profile whose ``identify`` register
matches is "identified"; a profile without one whose whole read plan the
device answers is "answers its register map" (weaker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from drivers import codec, frames
from drivers.frames import DeviceException, ModbusError, PortError
from drivers.link import RtuLink
from drivers.profile import ModbusProfile, Table

log = logging.getLogger(__name__)

PROBE = frames.read_request(frames.READ_HOLDING, 0, 1)


@dataclass
class Found:
    device_id: int
    baudrate: int
    parity: str
    stopbits: int
    probe: str  # "registers" or the exception text
    suggestions: list[tuple[str, str]] = field(default_factory=list)  # (profile, why)


def scan_bound_s(n_ids: int, n_settings: int, timeout_s: float, baudrate: int) -> float:
    """Worst-case seconds of a scan (every id silent)."""
    per_id = timeout_s + frames.transaction_wire_s(baudrate, 8, 7) + frames.silence_s(baudrate)
    return n_ids * n_settings * per_id


async def scan_line(
    port: str,
    baudrate: int,
    parity: str,
    stopbits: int,
    ids: Iterable[int],
    *,
    timeout_s: float = 0.1,
    profiles: Mapping[str, ModbusProfile] | None = None,
    on_found: Callable[[Found], None] | None = None,
) -> list[Found]:
    """Probe every id at one line setting; PortError if the port cannot be opened."""
    link = RtuLink(port, baudrate, parity, stopbits)
    await link.open()
    found: list[Found] = []
    try:
        for unit in ids:
            try:
                reply = await link.transact(unit, PROBE, timeout_s)
            except PortError:
                raise
            except ModbusError:
                continue
            try:
                frames.parse_reply(PROBE, reply)
                probe = "registers"
            except DeviceException as e:
                probe = f"exception {e.code} ({frames.EXCEPTION_TEXT.get(e.code, '?')})"
            except ModbusError:
                continue
            f = Found(unit, baudrate, parity, stopbits, probe)
            if profiles:
                f.suggestions = await suggest_profiles(link, unit, profiles, timeout_s)
            found.append(f)
            if on_found is not None:
                on_found(f)
    finally:
        link.close()
    return found


async def suggest_profiles(
    link: RtuLink, unit: int, profiles: Mapping[str, ModbusProfile], timeout_s: float
) -> list[tuple[str, str]]:
    identified: list[tuple[str, str]] = []
    compatible: list[tuple[str, str]] = []
    for name, prof in sorted(profiles.items()):
        ident = prof.identify
        if ident is not None:
            fc = frames.READ_HOLDING if ident.table is Table.HOLDING else frames.READ_INPUT
            pdu = frames.read_request(fc, prof.pdu_address(ident.address), 1)
            try:
                reply = frames.parse_reply(pdu, await link.transact(unit, pdu, timeout_s))
            except PortError:
                raise
            except ModbusError:
                continue
            if reply.registers[0] & ident.mask == ident.value & ident.mask:
                identified.append(
                    (
                        name,
                        f"identified: register {ident.address:#06x} & {ident.mask:#06x} "
                        f"== {ident.value:#06x}",
                    )
                )
            continue
        ok = True
        for block in codec.plan_reads(prof):
            try:
                frames.parse_reply(block.pdu, await link.transact(unit, block.pdu, timeout_s))
            except PortError:
                raise
            except ModbusError:
                ok = False
                break
        if ok:
            compatible.append((name, "answers its whole register map"))
    return identified + compatible
