"""A scripted MQTT server on a real TCP socket, for what mosquitto will not do here.

mosquitto 2.0's ACL file never refuses a subscription (it grants every
SUBSCRIBE and checks read rights at delivery; seen here with `topic deny`),
while brokers such as EMQX, HiveMQ or AWS IoT Core answer a forbidden
subscription with a SUBACK failure (0x80, or 0x87 Not authorized under MQTT
5). This server speaks just enough MQTT 3.1.1 and 5 for one client: CONNACK,
SUBACK with a scripted reason code, PUBACK, PINGRESP, and a PUBLISH to the
client on request. It records what the client published.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _skip_varint(body: bytes, i: int) -> int:
    """The index after a variable-length integer and as many bytes as it counts
    (an MQTT 5 property block)."""
    n, mult = 0, 1
    while True:
        b = body[i]
        i += 1
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return i + n


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


@dataclass
class ScriptedBroker:
    """``suback(topic, n)`` gives the reason code for the client's n-th SUBSCRIBE
    (0, 1: granted QoS; 0x80 and up: refused)."""

    suback: Callable[[str, int], int]
    # PUBACKs of QoS 1 publishes whose topic this accepts are held back until
    # release() (the client waits for them, as for a slow broker)
    hold: Callable[[str], bool] = lambda _topic: False
    port: int = 0
    published: list[tuple[str, bytes]] = field(default_factory=list)
    subscribes: list[tuple[str, int]] = field(default_factory=list)  # (topic, code sent)
    _server: asyncio.Server | None = None
    _writer: asyncio.StreamWriter | None = None
    _v5: bool = False
    held: list[tuple[bytes, str, bytes]] = field(
        default_factory=list
    )  # (packet id, topic, payload)

    async def release(self, which: Callable[[str, bytes], bool]) -> list[bytes]:
        """Send the held PUBACKs of the publishes ``which(topic, payload)`` picks;
        returns their payloads."""
        assert self._writer is not None
        out = [h for h in self.held if which(h[1], h[2])]
        self.held = [h for h in self.held if h not in out]
        for pid, _, _ in out:
            self._writer.write(_packet(0x40, pid))
        await self._writer.drain()
        return [p for _, _, p in out]

    async def __aenter__(self) -> ScriptedBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._writer is not None:
            self._writer.close()
        await self._server.wait_closed()

    async def send(self, topic: str, payload: bytes) -> None:
        """A QoS 0 PUBLISH to the connected client."""
        assert self._writer is not None
        body = _utf8(topic) + (b"\x00" if self._v5 else b"") + payload
        self._writer.write(_packet(0x30, body))
        await self._writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = (await reader.readexactly(1))[0]
                length, mult = 0, 1
                while True:
                    b = (await reader.readexactly(1))[0]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    if not b & 0x80:
                        break
                body = await reader.readexactly(length)
                reply = self._answer(head, body)
                if reply is None:
                    break
                if reply:
                    writer.write(reply)
                    await writer.drain()
        writer.close()

    def _answer(self, head: int, body: bytes) -> bytes | None:
        kind = head >> 4
        if kind == 1:  # CONNECT: protocol name, level (4 = 3.1.1, 5 = 5)
            name_len = int.from_bytes(body[:2], "big")
            self._v5 = body[2 + name_len] == 5
            return _packet(0x20, b"\x00\x00\x00" if self._v5 else b"\x00\x00")
        if kind == 8:  # SUBSCRIBE: packet id, [properties], topic filter, options
            pid = body[:2]
            i = _skip_varint(body, 2) if self._v5 else 2
            n = int.from_bytes(body[i : i + 2], "big")
            topic = body[i + 2 : i + 2 + n].decode()
            code = self.suback(topic, len(self.subscribes))
            self.subscribes.append((topic, code))
            return _packet(0x90, pid + (b"\x00" if self._v5 else b"") + bytes([code]))
        if kind == 3:  # PUBLISH: topic, packet id (QoS 1), [properties], payload
            n = int.from_bytes(body[:2], "big")
            topic = body[2 : 2 + n].decode()
            qos = (head >> 1) & 3
            i = 2 + n
            pid = body[i : i + 2] if qos else b""
            i += len(pid)
            if self._v5:
                i = _skip_varint(body, i)
            self.published.append((topic, body[i:]))
            if qos and self.hold(topic):
                self.held.append((pid, topic, body[i:]))
                return b""
            return _packet(0x40, pid) if qos else b""
        if kind == 12:  # PINGREQ
            return _packet(0xD0, b"")
        if kind == 14:  # DISCONNECT
            return None
        return b""
