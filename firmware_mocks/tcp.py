"""Simulated Modbus TCP devices: one server (a device, or a TCP-to-RTU gateway
with several unit ids) on a local port, served by its own thread and event loop.

Faults per device as on the RTU bus, with the TCP meaning: ``no_reply`` and
``late`` as there; ``wrong_id`` answers with another unit id; ``truncated``
sends half a reply and closes the connection; ``garbage`` sends random bytes
(the client loses the framing and must reconnect); ``crc`` has no meaning on
TCP (no CRC) and is answered normally. ``drop_connections()`` closes every
client connection (a gateway reboot).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import threading
from collections.abc import Iterable

from drivers import frames
from firmware_mocks.device import Fault, SimDevice


class SimTcpServer:
    def __init__(
        self,
        devices: Iterable[SimDevice] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        self.devices = {d.device_id: d for d in devices}
        self.host = host
        self.port = port
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.requests = 0

    def device(self, unit: int) -> SimDevice:
        return self.devices[unit]

    def start(self) -> SimTcpServer:
        self._thread = threading.Thread(target=self._main, name="sim-tcp", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("simulated Modbus TCP server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimTcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_connections(self) -> None:
        loop = self._loop
        if loop is not None:
            for w in list(self._writers):
                loop.call_soon_threadsafe(w.close)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(
            asyncio.start_server(self._client, self.host, self.port)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for w in self._writers:
                w.close()
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._server.wait_closed())
            loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readexactly(7)
                tid, proto, length, unit = struct.unpack(">HHHB", head)
                if proto != 0 or not 2 <= length <= 254:
                    return  # lost framing: drop the client, as real servers do
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                dev = self.devices.get(unit)
                if dev is None:
                    continue  # nobody there: silence
                reply_pdu = dev.handle(pdu)
                fault = dev.take_fault()
                if fault is Fault.NO_REPLY:
                    continue
                if dev.reply_delay_s:
                    await asyncio.sleep(dev.reply_delay_s)
                adu = frames.mbap(
                    tid, unit % 247 + 1 if fault is Fault.WRONG_ID else unit, reply_pdu
                )
                if fault is Fault.LATE:
                    await asyncio.sleep(dev.late_s)
                elif fault is Fault.TRUNCATED:
                    writer.write(adu[: len(adu) // 2])
                    await writer.drain()
                    return
                elif fault in (Fault.GARBAGE, Fault.GARBAGE_PREFIX):
                    adu = (
                        self._rng.randbytes(len(adu))
                        if fault is Fault.GARBAGE
                        else self._rng.randbytes(5) + adu
                    )
                writer.write(adu)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
