"""The transaction layer: one request, one reply, on a serial line or a TCP socket.

Written on pyserial and asyncio directly rather than on pymodbus's client,
for three reasons measured or seen while building it (see bench/bus_throughput.py):

* event-driven reads (``loop.add_reader`` on the port's file descriptor):
  the reply is seen the moment its last byte arrives, with no polling loop
  and no per-request task or thread;
* exact fault handling: a frame with a bad CRC or from another id is skipped
  and the wait goes on for the right reply until the timeout; a reply is
  taken only if its id, function and length fit the request;
* late replies: RTU has no transaction id, so a reply that comes after its
  request timed out could be taken as the answer to the next request for the
  same registers (a device answering 0.8 s late with a 0.3 s timeout once
  stayed "online" on the previous request's replies). So after a request of a
  device times out, the link watches for its late reply for ``late_watch_s``
  (at least 2 s) after it was sent: a request to that device within the watch
  first drains the line until the late reply has come (or the watch ends), and
  a late reply seen meanwhile, in any transaction, is discarded and counted
  (``take_late``). The bus worker schedules the device's retry and next poll
  after the watch (``ready_in_s``), serving the other devices meanwhile, and
  reports a device whose replies come late as a fault (drivers/bus.py). A
  reply later than the watch still cannot be told apart;
* an unplugged adapter surfaces as ``PortError`` at once (EIO / hang-up on
  the descriptor), never as a busy loop on a dead descriptor.

The reply timeout counts from the moment the request is handed to the port
and is stretched by the wire time of both frames at the line's baud rate (a
read of 125 registers takes 290 ms on the wire at 9600 baud, longer than a
typical timeout). The link also keeps the inter-frame silence: it never sends
a request less than ``turnaround_s`` (and at least 3.5 characters) after the
last byte it received or sent.

Local echo: some RS-485 adapters (and half-duplex converters whose receiver
stays enabled) echo every byte the master sends back into its receive buffer,
ahead of the reply. For a read that is harmless (the echo does not parse as a
reply), but the normal reply to a single write (functions 05 and 06) is
byte-identical to the request, so on an echoing line a write to a dead device
would be "confirmed" by its own echo. ``RtuLink(echo=...)``:

* ``"on"``: the first copy of the request frame in the receive buffer is the
  echo and is removed before the reply is looked for (it may arrive in
  pieces; noise before it does not hide it). A reply that comes without the
  echo is still found, except for a 05/06 write, whose one copy cannot be told
  from the echo: that write fails with ``NoReply`` rather than being taken as
  done (fail safe; a WARNING says so once the line is seen not to echo).
* ``"auto"`` (default): learned from reads whose reply cannot equal the
  request (all 03/04 reads; 01/02 unless of 17-24 bits). One whose received
  bytes start with the request frame shows an echoing line (one WARNING, then
  it behaves as ``"on"`` for good, across reopens); a valid reply first in the
  buffer shows a line without echo (``"off"``, until a read shows the echo).
  While nothing is known a write behaves as ``"off"``; in practice it is known
  before the first write: the bus worker polls its devices from the start, and
  a command (a detector reset) follows an alarm that a read of that same line
  reported.
* ``"off"``: nothing is removed; if a read shows the echo, a WARNING says
  that writes on this line cannot be trusted.

``line_echoes`` says what was learned (None: not yet), in every mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import struct
import termios
import time
from collections.abc import Callable
from typing import Literal, Protocol

import serial

from drivers import frames
from drivers.frames import FrameError, NoReply, PortError, PortSettingsError

log = logging.getLogger(__name__)

MAX_BUFFER_BYTES = 1024  # a reply is at most 256 bytes; older bytes are noise
LATE_WATCH_MIN_S = 2.0  # a reply this long after its request is still known as late


def late_watch_s(timeout_s: float) -> float:
    """How long after a request that timed out its late reply is still watched for."""
    return max(LATE_WATCH_MIN_S, 4 * timeout_s)


EchoMode = Literal["auto", "on", "off"]


class Link(Protocol):
    """What a bus worker needs of its line."""

    @property
    def is_open(self) -> bool: ...

    @property
    def where(self) -> str: ...

    async def open(self) -> None: ...

    def close(self) -> None: ...

    async def transact(self, unit: int, pdu: bytes, timeout_s: float) -> bytes:
        """Send ``pdu`` to ``unit``; the reply PDU (normal or exception), checked for framing.

        Raises NoReply, FrameError or PortError.
        """
        ...


class SerialLine:
    """A serial port read event-driven: bytes collect in ``buf`` as they arrive.

    ``lost`` is set (and the port closed) when the descriptor reports a
    hang-up or an I/O error: the adapter was unplugged or the pty closed.
    """

    def __init__(
        self, port: str, baudrate: int, parity: str = "N", stopbits: int = 1, bytesize: int = 8
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self.buf = bytearray()
        self.lost: str = ""
        self.last_rx_mono = 0.0
        self.on_data: Callable[[], None] | None = (
            None  # called after bytes arrive or the port is lost
        )
        self._ser: serial.Serial | None = None
        self._fd = -1
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        """Open the port (non-blocking) and start collecting bytes; PortError if impossible."""
        self.close()
        try:
            ser = serial.Serial(
                port=self.port,
                baudrate=self.baudrate,
                parity=self.parity,
                stopbits=self.stopbits,
                bytesize=self.bytesize,
                timeout=0,
                exclusive=True,
            )
        except termios.error as e:
            # the kernel or the adapter's driver refused the settings (EINVAL); pyserial
            # lets termios.error through, which is no OSError
            raise self._settings_error(e.args[0] if e.args else 0, str(e.args[-1])) from None
        except (serial.SerialException, OSError, ValueError) as e:
            code = getattr(e, "errno", None)
            if code in (errno.EINVAL, errno.ENOTTY) or "configure port" in str(e):
                raise self._settings_error(code or 0, str(e)) from None
            raise PortError(f"cannot open {self.port}: {e}") from None
        self._ser = ser
        self._fd = ser.fileno()
        self.buf.clear()
        self.lost = ""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    @property
    def settings(self) -> str:
        """The line settings as installers write them: ``9600 8E1``."""
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"

    def _settings_error(self, code: int, text: str) -> PortSettingsError:
        if code == errno.ENOTTY or "Inappropriate ioctl" in text:
            return PortSettingsError(
                f"{self.port} is not a serial port ({text}): set port: to the adapter "
                "(ls /dev/serial/by-id/)"
            )
        return PortSettingsError(
            f"{self.port} refuses {self.settings} ({text}): the adapter cannot do these "
            "settings; set baudrate, parity, stopbits and bytesize to what the devices use "
            "and the adapter supports (some USB adapters lack parity or 2 stop bits)"
        )

    def close(self) -> None:
        if self._ser is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        with contextlib.suppress(Exception):
            self._ser.close()
        self._ser = None
        self._fd = -1
        self._event.set()  # wake a waiter so it sees the port is gone

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as e:
            self._lose(f"{self.port}: {e.strerror or e}")
            return
        if not data:  # hang-up: the other end (adapter, pty) went away
            self._lose(f"{self.port}: port closed (device unplugged?)")
            return
        self.last_rx_mono = time.monotonic()
        self.buf += data
        if len(self.buf) > MAX_BUFFER_BYTES:
            del self.buf[: len(self.buf) - MAX_BUFFER_BYTES]
        self._event.set()
        if self.on_data is not None:
            self.on_data()

    def _lose(self, why: str) -> None:
        if not self.lost:
            log.warning("serial port lost: %s", why)
        self.lost = why
        self.close()
        if self.on_data is not None:
            self.on_data()

    def write(self, data: bytes) -> None:
        if self._ser is None:
            raise PortError(self.lost or f"{self.port} is not open")
        view = memoryview(data)
        deadline = time.monotonic() + 0.2
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                # the kernel buffer is full: only when nothing drains the line
                if time.monotonic() > deadline:
                    raise PortError(f"{self.port}: cannot write (output blocked)") from None
                time.sleep(0.001)
                continue
            except OSError as e:
                self._lose(f"{self.port}: {e.strerror or e}")
                raise PortError(self.lost) from None
            view = view[n:]

    async def wait_data(self, timeout_s: float) -> None:
        """Return when bytes are waiting in ``buf``, the port was lost, or ``timeout_s`` passed."""
        if self.buf or self._ser is None:
            return  # bytes that came while the caller was busy: no wake-up is lost
        self._event.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout_s)):
                await self._event.wait()


_SLEEP_GRAIN_S = 0.0012  # asyncio timers on epoll wake on whole milliseconds


async def _wait_until(t_mono: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``t_mono``, to a fraction of a millisecond.

    The event loop sleeps the bulk; the last part (at most ~1 ms) is a plain
    ``time.sleep``, because an asyncio timer can wake up to 1 ms late, and a
    millisecond on every request is 2 % of a 9600-baud bus. Never a busy wait.
    """
    wait_s = t_mono - time.monotonic()
    if wait_s > _SLEEP_GRAIN_S:
        await asyncio.sleep(wait_s - _SLEEP_GRAIN_S)
        wait_s = t_mono - time.monotonic()
    if wait_s > 0:
        time.sleep(wait_s)  # noqa: ASYNC251 -- bounded to ~1 ms on purpose, see above


class RtuLink:
    """Modbus RTU master on one serial line; one transaction at a time."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        *,
        turnaround_s: float = 0.005,
        echo: EchoMode = "auto",
    ) -> None:
        if echo not in ("auto", "on", "off"):
            raise ValueError(f"echo must be 'auto', 'on' or 'off', not {echo!r}")
        self.line = SerialLine(port, baudrate, parity, stopbits, bytesize)
        self.baudrate = baudrate
        self.char_s = frames.char_time_s(baudrate)
        self.gap_s = max(turnaround_s, frames.silence_s(baudrate))
        self.echo: EchoMode = echo
        # learned from reads, kept across reopens: True once a read showed the echo
        # (never unlearned: discarding an echo that stopped only fails writes safe)
        self.line_echoes: bool | None = None
        self._warned_missing_echo = False
        self._quiet_at = 0.0  # time.monotonic() before which the next request must not start
        self._lock = asyncio.Lock()
        # unit -> (request PDU, sent at, watched until) of its last request that timed out
        self._unanswered: dict[int, tuple[bytes, float, float]] = {}
        self._late: dict[int, list[float]] = {}  # unit -> delays of late replies not yet taken

    @property
    def is_open(self) -> bool:
        return self.line.is_open

    def take_late(self, unit: int) -> list[float]:
        """The delays (s after the request was sent) of ``unit``'s late replies
        discarded since the last call."""
        return self._late.pop(unit, [])

    def ready_in_s(self, unit: int) -> float:
        """Seconds until a request to ``unit`` can go out without first draining the
        line for a late reply (0: now)."""
        u = self._unanswered.get(unit)
        return 0.0 if u is None else max(0.0, u[2] - time.monotonic())

    def _scan_late(self) -> None:
        """Count (and forget) the late replies of timed-out requests in the buffer."""
        if not self._unanswered:
            return
        now = time.monotonic()
        buf = self.line.buf
        for unit, (pdu, sent, until) in list(self._unanswered.items()):
            if buf and frames.find_rtu_reply(buf, unit, pdu) is not None:
                del self._unanswered[unit]
                delay = self.line.last_rx_mono - sent
                self._late.setdefault(unit, []).append(delay)
                log.debug("late reply from id %d discarded (%.2f s after its request)", unit, delay)
            elif now > until:
                del self._unanswered[unit]

    async def _drain_late(self, unit: int) -> None:
        """Wait until ``unit``'s late reply has come (discarded) or its watch ended."""
        entry = self._unanswered.get(unit)
        if entry is None:
            return
        line = self.line
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_data() -> None:
            self._scan_late()
            if not done.done() and (unit not in self._unanswered or not line.is_open):
                done.set_result(None)

        line.on_data = on_data
        try:
            on_data()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, entry[2] - time.monotonic())):
                    await done
        finally:
            line.on_data = None
        self._unanswered.pop(unit, None)

    @property
    def where(self) -> str:
        return self.line.port

    @property
    def lost(self) -> str:
        return self.line.lost

    @property
    def strips_echo(self) -> bool:
        """Whether the echo of each request is removed before its reply is looked for."""
        return self.echo == "on" or (self.echo == "auto" and self.line_echoes is True)

    def _learn_echo(self, echoed: bool) -> None:
        """What one read showed: its bytes started with the echo, or its reply came first."""
        port = self.line.port
        if echoed:
            if self.line_echoes is True:
                return
            self.line_echoes = True
            if self.echo == "auto":
                log.warning(
                    "%s echoes what it sends (local echo); discarding the echo; "
                    "set echo: on to make it explicit",
                    port,
                )
            elif self.echo == "off":
                log.warning(
                    "%s seems to echo what it sends (local echo), but echo: off is set: a write "
                    "(a detector reset) to a dead device would be confirmed by its own echo, so "
                    "writes on this line cannot be trusted; set echo: auto or on",
                    port,
                )
            return
        if self.line_echoes is None:
            self.line_echoes = False
        if self.strips_echo and not self._warned_missing_echo:
            self._warned_missing_echo = True
            log.warning(
                "%s: a reply came without the echo of its request (echo: %s%s): this adapter "
                "does not seem to echo; reads work, but a single write (function 05/06) will "
                "fail with no reply, because its one reply cannot be told from an echo and is "
                "not taken as done; set echo: off (or auto) if the adapter does not echo",
                port,
                self.echo,
                ", learned from an earlier echo" if self.echo == "auto" else "",
            )

    async def open(self) -> None:
        self.line.open()

    def close(self) -> None:
        self.line.close()

    async def transact(self, unit: int, pdu: bytes, timeout_s: float) -> bytes:
        async with self._lock:
            return await self._transact(unit, pdu, timeout_s)

    async def _transact(self, unit: int, pdu: bytes, timeout_s: float) -> bytes:
        line = self.line
        self._scan_late()
        if unit in self._unanswered:
            await self._drain_late(unit)
        await _wait_until(self._quiet_at)  # the inter-frame silence: wire timing, real time
        if line.last_rx_mono > self._quiet_at - self.gap_s:
            # bytes arrived since the last transaction (late reply, noise): let
            # the line settle so they are not mistaken for the next reply
            await _wait_until(line.last_rx_mono + self.gap_s)
        frame = frames.rtu_frame(unit, pdu)
        reply_len = frames.rtu_reply_length(pdu)
        # only a read whose reply cannot be byte-identical to the request tells
        # an echo from a reply (every 03/04 read; 01/02 unless 17-24 bits)
        learn = pdu[0] in frames.READ_FUNCTIONS and reply_len != len(frame)
        learned = False  # this transaction already showed echo or no echo
        echo_removed = False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        fail_fast: list[asyncio.TimerHandle] = []
        quiet_s = 2 * self.gap_s

        def fail(e: Exception) -> None:
            if not fut.done():
                fut.set_exception(e)

        def check_bad_frame() -> None:
            # a whole reply-sized frame from ``unit`` with a bad CRC, then silence:
            # fail now rather than at the timeout (the retry comes sooner)
            if fut.done():
                return
            idle = time.monotonic() - line.last_rx_mono
            if idle >= quiet_s * 0.9:
                fail(FrameError(f"reply from id {unit} failed the CRC check"))
            else:
                fail_fast.append(loop.call_later(quiet_s - idle, check_bad_frame))

        def on_data() -> None:
            # runs in the reader callback: the reply is taken the moment it is whole
            nonlocal learned, echo_removed
            if fut.done():
                return
            self._scan_late()  # another device's late reply: counted, never taken
            if not line.is_open:
                fail(PortError(line.lost or f"{line.port} closed"))
                return
            buf = line.buf
            if learn and not learned and buf.startswith(frame):
                learned = True
                self._learn_echo(True)
            if self.strips_echo and not echo_removed:
                # the echo comes first, possibly in pieces: until the whole frame is
                # here nothing is removed (and a partial echo never parses as a reply)
                i = buf.find(frame)
                if i >= 0:
                    del buf[: i + len(frame)]
                    echo_removed = True
            found = frames.find_rtu_reply(buf, unit, pdu)
            if found is not None:
                s, e = found
                if learn and not learned and s == 0 and not echo_removed:
                    learned = True
                    self._learn_echo(False)
                fut.set_result(bytes(buf[s + 1 : e - 2]))
                return
            if not fail_fast and len(buf) >= 5 and buf[0] == unit:
                n = reply_len if buf[1] == pdu[0] else 5 if buf[1] == pdu[0] | 0x80 else 0
                if n and len(buf) >= n:
                    fail_fast.append(loop.call_later(quiet_s, check_bad_frame))

        def on_timeout() -> None:
            # its reply may still come: watched for, so that it is never taken for another
            self._unanswered[unit] = (pdu, sent_mono, sent_mono + late_watch_s(timeout_s))
            if line.buf:
                fail(
                    FrameError(
                        f"no valid reply from id {unit}: {len(line.buf)} byte(s) "
                        "with a bad CRC, from another id, or garbled"
                    )
                )
            else:
                fail(NoReply(f"no reply from id {unit} within {timeout_s:g} s"))

        line.buf.clear()
        line.on_data = on_data
        timer: asyncio.TimerHandle | None = None
        sent_mono = time.monotonic()
        try:
            line.write(frame)
            # the timeout counts from the hand-over and includes both frames' wire time
            timer = loop.call_later(timeout_s + (len(frame) + reply_len) * self.char_s, on_timeout)
            return await fut
        finally:
            line.on_data = None
            if timer is not None:
                timer.cancel()
            for h in fail_fast:
                h.cancel()
            self._quiet_at = time.monotonic() + self.gap_s


class TcpLink:
    """Modbus TCP client on one connection; one transaction at a time.

    Replies are matched by transaction id and unit id; a reply to an older
    (timed-out) request is discarded and counted as that device's late reply
    (``take_late``). A TCP-to-RTU gateway answers its requests in order, so while
    an earlier request's late reply is still due (within ``late_watch_s``), the
    current request's timeout counts from when that late reply arrives: one slow
    device behind the gateway must not make a healthy one time out (seen: a
    healthy detector OFFLINE for 30 s).
    """

    def __init__(self, host: str, port: int, *, connect_timeout_s: float = 3.0) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.lost = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tid = 0
        self._lock = asyncio.Lock()
        # tid -> (unit, sent at, watched until) of requests that timed out
        self._unanswered: dict[int, tuple[int, float, float]] = {}
        self._late: dict[int, list[float]] = {}  # unit -> delays of late replies not yet taken
        self._late_at = -math.inf  # when the last late reply came

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def take_late(self, unit: int) -> list[float]:
        """The delays (s after the request was sent) of ``unit``'s late replies
        discarded since the last call."""
        return self._late.pop(unit, [])

    def ready_in_s(self, unit: int) -> float:
        """Always 0: transaction ids tell a late reply from the answer (no drain)."""
        return 0.0

    def _late_reply(self, tid: int) -> bool:
        """Whether ``tid`` is a timed-out request still watched; counts its reply."""
        entry = self._unanswered.pop(tid, None)
        if entry is None:
            return False
        unit, sent, _ = entry
        self._late_at = time.monotonic()
        self._late.setdefault(unit, []).append(self._late_at - sent)
        return True

    async def open(self) -> None:
        self.close()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as e:
            raise PortError(f"cannot connect to {self.where}: {e or 'timeout'}") from None
        self.lost = ""

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None

    async def transact(self, unit: int, pdu: bytes, timeout_s: float) -> bytes:
        async with self._lock:
            if self._reader is None or self._writer is None:
                raise PortError(self.lost or f"{self.where} not connected")
            reader, writer = self._reader, self._writer
            self._tid = (self._tid + 1) & 0xFFFF
            tid = self._tid
            mid_frame = False
            sent = time.monotonic()
            for old, (_, _, until) in list(self._unanswered.items()):
                if sent > until:
                    del self._unanswered[old]
            # a gateway seen answering late (within a watch) is busy with the older
            # requests still unanswered: this one's timeout starts when their late
            # replies have come, but never waits past the last one's watch
            busy = bool(self._unanswered) and sent - self._late_at < late_watch_s(timeout_s)
            cap = max((u for _, _, u in self._unanswered.values()), default=sent)
            first_s = max(timeout_s, cap - sent + timeout_s) if busy else timeout_s
            loop = asyncio.get_running_loop()
            try:
                writer.write(frames.mbap(tid, unit, pdu))
                async with asyncio.timeout(first_s) as deadline:
                    await writer.drain()
                    while True:
                        # a cancelled readexactly consumes nothing: only a header
                        # read without its body breaks the stream's framing
                        head = await reader.readexactly(7)
                        mid_frame = True
                        rtid, proto, length, runit = struct.unpack(">HHHB", head)
                        if proto != 0 or not 2 <= length <= 254:
                            # lost framing: the stream cannot be trusted any more
                            raise FrameError(f"garbled MBAP header from {self.where}")
                        body = await reader.readexactly(length - 1)
                        mid_frame = False
                        if rtid == tid and runit == unit:
                            return body
                        if self._late_reply(rtid):
                            older = any(t != tid for t in self._unanswered)
                            if not older or not busy:
                                # the gateway is done with the older requests: from now on
                                deadline.reschedule(loop.time() + timeout_s)
                        log.debug(
                            "dropped reply tid=%d unit=%d (want %d/%d)", rtid, runit, tid, unit
                        )
            except TimeoutError:
                self._unanswered[tid] = (unit, sent, sent + late_watch_s(timeout_s))
                if mid_frame:
                    self.close()  # half a frame read: start afresh on a new connection
                raise NoReply(
                    f"no reply from unit {unit} at {self.where} within {timeout_s:g} s"
                ) from None
            except FrameError:
                self.close()
                raise
            except (OSError, asyncio.IncompleteReadError) as e:
                self.lost = f"{self.where}: connection lost ({e or type(e).__name__})"
                self.close()
                raise PortError(self.lost) from None
