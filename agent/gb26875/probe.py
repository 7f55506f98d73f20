"""`firegate doctor`'s check of the GB/T 26875.3 centre: connect, send one
heartbeat (an empty send-data frame), and wait for the centre's confirm.

It opens its own short connection; a centre that allows one connection per
device address may drop the running agent's for a moment (the agent
reconnects by itself).
"""

from __future__ import annotations

import asyncio
import time

from agent.commands.doctor import Context, Outcome, Result
from agent.gb26875.codec import ChecksumError, Command, Frame, FrameDecoder, FrameError, TimeLabel
from agent.gb26875.serials import probe_serial
from agent.siteconfig.models import Gb26875Config

NAME = "centre"


async def check_centre(ctx: Context) -> list[Result]:
    assert ctx.site is not None
    gb = ctx.site.config.gb26875
    if gb is None:
        return [Result(NAME, Outcome.SKIP, "no gb26875 section: no GB/T 26875.3 centre")]
    where = f"{gb.host}:{gb.port}"
    t0 = time.monotonic()
    try:
        serial = probe_serial(ctx.site.config.storage.state_dir)
        answer = await asyncio.wait_for(_heartbeat(gb, ctx.now_wall(), serial), ctx.timeout_s)
    except TimeoutError:
        return [
            Result(
                NAME,
                Outcome.FAIL,
                f"{where}: no connection or no confirm within {ctx.timeout_s:g} s",
                "check gb26875.host and port, that the site's firewall lets this gateway out, "
                "and ask the centre whether source_address "
                f"{gb.source_address} is registered",
            )
        ]
    except OSError as e:
        return [
            Result(
                NAME,
                Outcome.FAIL,
                f"{where}: cannot connect: {e.strerror or e}",
                "check gb26875.host and port, and that the site's firewall lets this gateway out",
            )
        ]
    except FrameError as e:
        return [
            Result(
                NAME,
                Outcome.FAIL,
                f"{where}: the answer is not GB/T 26875.3 ({e})",
                "check gb26875.port: it must be the centre's GB/T 26875.3 port",
            )
        ]
    took = time.monotonic() - t0
    if answer == Command.DENY:
        return [
            Result(
                NAME,
                Outcome.FAIL,
                f"{where}: the centre denied a heartbeat from address {gb.source_address}",
                "check gb26875.source_address and destination_address with the centre",
            )
        ]
    return [
        Result(
            NAME,
            Outcome.PASS,
            f"{where}: confirmed a heartbeat from address {gb.source_address} in {took:.2f} s",
        )
    ]


async def _heartbeat(gb: Gb26875Config, wall: float, serial: int) -> Command:
    reader, writer = await asyncio.open_connection(gb.host, gb.port)
    try:
        frame = Frame(
            serial,
            Command.SEND_DATA,
            gb.source_address,
            gb.destination_address,
            TimeLabel.from_wall(wall, gb.utc_offset_min),
            b"",
            (1, gb.user_version),
        )
        writer.write(frame.encode())
        await writer.drain()
        decoder = FrameDecoder()
        while True:
            data = await reader.read(4096)
            if not data:
                raise ConnectionResetError("the centre closed the connection without an answer")
            for item in decoder.feed(data):
                if isinstance(item, ChecksumError):
                    raise item
                if item.serial == serial and item.command in (Command.CONFIRM, Command.DENY):
                    return item.command
    finally:
        writer.close()
