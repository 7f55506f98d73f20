"""A simulated RS-485 bus: several ``SimDevice``s behind one pseudo-terminal.

Runs in its own thread (blocking ``select`` on the pty master, no polling),
so it serves synchronous clients (pymodbus in the benchmark) and asyncio
drivers in the same process alike.

Wire-time emulation (``emulate_wire_time=True``): a reply is written when it
would have finished arriving on a real line at ``baudrate`` with 11-bit
characters: request frame + 3.5-character silence + device reply delay +
reply frame, and the bus is busy until one more silence has passed after the
reply. A master cannot beat that ceiling by sending early: a request that
arrives while the line is still busy waits for it, as it would be garbled on
a real line.

Replies are scheduled, not waited for: a device with a long
``reply_delay_s`` (one that answers after the master's timeout) does not stop
the others on the line from hearing and answering the requests that follow, as
on a real RS-485 line.

Line speed (``baudrate``): the devices run at it. A master set to another
speed gets garbage both ways, as on a real line (see ``PtyPort``): its
requests reach the devices as noise, so nothing answers; ``check_baudrate=False``
turns that off (the pty then carries bytes at any speed).

Local echo (``echo=True``): the adapter of an echoing line. Every byte the
master sends comes straight back to the master as it arrives, before and
independent of any device's reply, so a request to an absent or silent device
still gets its echo.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import random
import select
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from drivers import frames
from firmware_mocks.device import Fault, SimDevice
from firmware_mocks.pty import PtyPort

log = logging.getLogger(__name__)


class SimRtuBus:
    """Simulated devices on one RTU line. Use as a context manager, or start()/stop().

    ``path`` is the port a driver opens (a stable symlink, see ``PtyPort``).
    """

    def __init__(
        self,
        devices: Iterable[SimDevice] = (),
        *,
        baudrate: int = 9600,
        emulate_wire_time: bool = False,
        check_baudrate: bool = True,
        link_path: str | Path | None = None,
        seed: int = 0,
        echo: bool = False,
    ) -> None:
        self.devices: dict[int, SimDevice] = {}
        for d in devices:
            self.add(d)
        self.baudrate = baudrate
        self.emulate_wire_time = emulate_wire_time
        self.check_baudrate = check_baudrate
        self.echo = echo
        # the devices' line speed: bytes at another speed are garbage both ways
        self.port = PtyPort(link_path, baudrate=baudrate if check_baudrate else None)
        self.char_s = frames.char_time_s(baudrate)
        self.silence_s = frames.silence_s(baudrate)
        self.frames_received = 0
        self.frames_dropped = 0
        self.replies_sent = 0
        self._rng = random.Random(seed)
        self._bus_free_at = 0.0
        self._pending: list[tuple[float, int, bytes]] = []  # (due, order, reply): a heap
        self._order = 0
        self._lock = threading.Lock()  # guards the port against vanish/reappear from tests
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self.port.path

    def add(self, device: SimDevice) -> SimDevice:
        if device.device_id in self.devices:
            raise ValueError(f"device id {device.device_id} already on this bus")
        self.devices[device.device_id] = device
        return device

    def device(self, device_id: int) -> SimDevice:
        return self.devices[device_id]

    # -------------------------------------------------------------- life cycle

    def start(self) -> SimRtuBus:
        self._thread = threading.Thread(
            target=self._serve, name=f"sim-rtu:{self.path}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.port.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> SimRtuBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------- line faults

    def vanish(self) -> None:
        """Unplug the adapter: the driver's descriptor fails and the path is gone."""
        with self._lock:
            self.port.vanish()
        os.write(self._wake_w, b"x")

    def reappear(self) -> None:
        """Plug it back in: a new pty at the same path."""
        with self._lock:
            self.port.create()
        os.write(self._wake_w, b"x")

    def send_garbage(self, data: bytes) -> None:
        """Put bytes on the line now, unasked (noise, another master, a babbling device)."""
        with self._lock:
            self.port.write(data)

    # ----------------------------------------------------------------- serving

    def _serve(self) -> None:
        buf = bytearray()
        last_rx = 0.0
        while not self._stop.is_set():
            master = self.port.master
            fds = [self._wake_r] + ([master] if master >= 0 else [])
            # with a partial frame pending, wake after one silence to drop it
            timeout = max(self.silence_s, 0.002) if buf else 1.0
            if self._pending:
                timeout = max(0.0, min(timeout, self._pending[0][0] - time.monotonic()))
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                continue  # the port was closed under us by vanish()
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 64)
                buf.clear()
            self._send_due()
            if master >= 0 and master in ready:
                # under the lock, and only if vanish() has not closed it since the
                # select: its number may already be another file of the process
                # (a test's config, read empty after this thread took its bytes)
                with self._lock:
                    try:
                        data = os.read(master, 4096) if self.port.master == master else b""
                    except OSError:
                        data = b""
                if data:
                    if self.echo:  # the master hears its own bytes first, as they arrive
                        with self._lock:
                            self.port.write(data, own_speed=True)
                    if not self.port.speed_ok():  # the devices' UARTs see framing errors
                        data = self.port.garble(data)
                    buf += data
                    last_rx = time.monotonic()
            while buf:
                n = self._request_length(buf)
                if n is None or n > len(buf):
                    break  # need more bytes
                frame = bytes(buf[:n])
                del buf[:n]
                self._handle(frame, last_rx)
            if buf and time.monotonic() - last_rx >= max(self.silence_s, 0.002):
                # an end-of-frame silence with an unusable frame: a real device discards it
                self.frames_dropped += 1
                buf.clear()

    @staticmethod
    def _request_length(buf: bytearray) -> int | None:
        if len(buf) < 2:
            return None
        fc = buf[1]
        if fc in frames.READ_FUNCTIONS or fc in (frames.WRITE_COIL, frames.WRITE_REGISTER):
            return 8
        if fc in (frames.WRITE_COILS, frames.WRITE_REGISTERS):
            return 9 + buf[6] if len(buf) >= 7 else None
        return 4  # unknown function: wait for the silence; CRC check rejects it

    def _handle(self, frame: bytes, rx_at: float) -> None:
        self.frames_received += 1
        if not frames.crc_ok(frame):
            self.frames_dropped += 1
            return
        unit = frame[0]
        dev = self.devices.get(unit)
        if dev is None or unit == 0:
            return  # not ours (or broadcast: no reply)
        pdu = frame[1:-2]
        reply_pdu = dev.handle(pdu)
        fault = dev.take_fault()
        if fault is Fault.NO_REPLY:
            return
        reply = frames.rtu_frame(unit, reply_pdu)
        if fault is Fault.WRONG_ID:
            reply = frames.rtu_frame(unit % 247 + 1, reply_pdu)
        elif fault is Fault.CRC:
            reply = reply[:-2] + bytes((reply[-2] ^ 0x5A, reply[-1] ^ 0xA5))
        elif fault is Fault.TRUNCATED:
            reply = reply[: max(2, len(reply) // 2)]
        elif fault is Fault.GARBAGE:
            reply = self._rng.randbytes(len(reply))
        elif fault is Fault.GARBAGE_PREFIX:
            reply = self._rng.randbytes(self._rng.randint(3, 9)) + reply
        if dev.reply_filter is not None:
            reply = dev.reply_filter(reply)
            if not reply:
                return
        self._reply(
            reply, len(frame), rx_at, dev.reply_delay_s, dev.late_s if fault is Fault.LATE else 0.0
        )

    def _reply(
        self, reply: bytes, request_len: int, rx_at: float, delay_s: float, late_s: float
    ) -> None:
        if self.emulate_wire_time:
            start = max(rx_at, self._bus_free_at)
            due = (
                start
                + request_len * self.char_s
                + self.silence_s
                + delay_s
                + len(reply) * self.char_s
            )
            self._bus_free_at = due + self.silence_s
        else:
            due = rx_at + delay_s
        due += late_s
        if due <= time.monotonic() and not self._pending:
            self._write(reply)
            return
        heapq.heappush(self._pending, (due, self._order, reply))
        self._order += 1

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now:
            self._write(heapq.heappop(self._pending)[2])

    def _write(self, reply: bytes) -> None:
        with self._lock:
            if self.port.write(reply):
                self.replies_sent += 1
