"""The MQTT client of the uplink and of ``firegate doctor``: a publish the broker refused
raises, it never returns as if delivered.

Under MQTT 5 the broker's PUBACK carries a reason code: 0x00 Success,
0x10 No matching subscribers (accepted: nobody listens right now), or a
failure (0x80 and above), e.g. 0x87 Not authorized when an ACL denies the
topic. aiomqtt's ``Client.publish`` returns on any PUBACK and drops the reason
code, so a fire alarm an ACL denied would look delivered and be deleted from
the outbox. ``AckedClient.publish_acked`` raises ``PublishRefused`` instead.

Under MQTT 3.1.1 a PUBACK has no reason code and a broker that denies a
publish acknowledges it all the same (mosquitto does): nothing can tell, which
is why MQTT 5 is the default (``uplink.mqtt_version``).

This module is the one place that reaches into aiomqtt. Written against
aiomqtt 2.5.1 on paho-mqtt 2.2, it relies on two things:

* ``aiomqtt.Client._client`` is the paho-mqtt client, and
* aiomqtt sets that client's ``on_publish`` in ``Client.__init__`` (to its own
  ``_on_publish``); we chain in front of it, so aiomqtt's ``publish`` keeps
  working too.

With ``max_packet_bytes`` (the uplink's downlink), a third: paho reads a
packet whole into memory before anything can look at it (a 150 MB request took
more than 500 MB). Under MQTT 5 the limit goes to the broker as Maximum Packet
Size on CONNECT (the broker must not send anything larger; mosquitto drops
it). Under MQTT 3.1.1 there is no such property, so ``_bound_packets``
replaces the paho client's ``_packet_read``: it reads the fixed header itself
and hands a packet within the limit to paho's own reader; a larger one is
read in 64 KiB pieces and thrown away (only its topic and packet id are kept,
to acknowledge a QoS 1 publish), never buffered. It relies on paho's
``_in_packet`` fields, ``_sock_recv`` and ``_send_puback``
(tests/uplink/test_downlink_hostile.py fails if they change).

If a new aiomqtt changes either, the constructor raises (no ``on_publish`` to
chain) or every ``publish_acked`` times out; the real-broker tests
(tests/uplink/test_uplink_refused.py) fail loudly in both cases.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, cast

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.client import CallbackOnPublish_v2
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.siteconfig.models import MqttVersion

PROTOCOLS: dict[MqttVersion, aiomqtt.ProtocolVersion] = {
    "5": aiomqtt.ProtocolVersion.V5,
    "3.1.1": aiomqtt.ProtocolVersion.V311,
}


class PublishRefused(aiomqtt.MqttError):
    """The broker answered a publish with a failure reason code (MQTT 5 PUBACK >= 0x80).

    The message was not accepted: it is not delivered, whatever a PUBACK
    otherwise means.
    """

    action = "publish"

    def __init__(self, topic: str, reason_code: int, reason: str) -> None:
        self.topic = topic
        self.reason_code = reason_code
        self.reason = reason
        super().__init__(f"broker refused the {self.action} to {topic}: {self.why}")

    @property
    def why(self) -> str:
        """The reason as a person reads it, e.g. ``0x87 Not authorized``."""
        return f"0x{self.reason_code:02x} {self.reason}"


class SubscribeRefused(PublishRefused):
    """The broker answered a subscription with a failure (SUBACK >= 0x80): nothing
    published to that topic will arrive, although the connection is fine."""

    action = "subscription"


def reraise_if_cancelled() -> None:
    """Call in an ``except aiomqtt.MqttError`` handler of a reconnect loop.

    A cancellation that arrives while aiomqtt connects, subscribes or
    disconnects can come out as an ``MqttError`` (e.g. "Could not subscribe to
    topic"): a loop that catches it and reconnects would swallow the
    cancellation and never stop. This raises ``CancelledError`` again when the
    current task is being cancelled.

    Only where ``cancelling()`` tells the truth: on Python 3.11 a task that
    hosted an ``asyncio.TaskGroup`` whose child failed can be left with a
    count above zero although nobody stops it (CPython gh-116720). The uplink
    therefore runs its per-connection TaskGroup in a task of its own.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: nothing is being cancelled
        return
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def session_options(version: MqttVersion) -> dict[str, Any]:
    """aiomqtt.Client keyword arguments for ``version`` with a clean session each connect.

    Under 3.1.1 that is ``clean_session``; under 5 it is Clean Start on every
    connect (each uplink connection is a new client object) and no Session
    Expiry Interval, i.e. 0: the broker drops the session at disconnect, the
    same as a 3.1.1 clean session. paho refuses ``clean_session`` under 5.
    """
    if version == "5":
        return {"protocol": PROTOCOLS[version], "clean_start": True}
    return {"protocol": PROTOCOLS[version], "clean_session": True}


SKIP_CHUNK = 64 * 1024
_PUBLISH = 0x30


class AckedClient(aiomqtt.Client):
    """An ``aiomqtt.Client`` with :meth:`publish_acked`, which reads the PUBACK's reason code.

    ``max_packet_bytes``: the largest packet taken from the broker (see the
    module docstring); ``on_oversize(topic, size)`` hears of each one skipped.
    """

    def __init__(
        self,
        *args: Any,
        max_packet_bytes: int | None = None,
        on_oversize: Callable[[str, int], None] | None = None,
        **kwargs: Any,
    ) -> None:
        if max_packet_bytes is not None and kwargs.get("protocol") == aiomqtt.ProtocolVersion.V5:
            props = kwargs.get("properties") or Properties(PacketTypes.CONNECT)
            props.MaximumPacketSize = max_packet_bytes
            kwargs["properties"] = props
        super().__init__(*args, **kwargs)
        self.oversize_skipped = 0
        if max_packet_bytes is not None:
            _bound_packets(self._client, max_packet_bytes, self._skipped(on_oversize))
        self._acks: dict[int, asyncio.Future[ReasonCode]] = {}
        # aiomqtt creates its paho client with CallbackAPIVersion.VERSION2
        aiomqtt_on_publish = cast("CallbackOnPublish_v2 | None", self._client.on_publish)
        if aiomqtt_on_publish is None:
            raise RuntimeError(
                "aiomqtt no longer sets paho's on_publish in Client.__init__; "
                "agent/mqtt.py must be adapted to this aiomqtt version"
            )

        def on_publish(
            client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode, props: Any
        ) -> None:
            # paho calls this on the event loop's thread (aiomqtt reads the socket there)
            fut = self._acks.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(reason_code)
            aiomqtt_on_publish(client, userdata, mid, reason_code, props)

        self._client.on_publish = on_publish

    def publish_soon(
        self, topic: str, payload: str | bytes, *, retain: bool = False
    ) -> tuple[int, asyncio.Future[ReasonCode]]:
        """Publish with QoS 1 now, without waiting: the packet id, and a future that
        gets the PUBACK's reason code (a failure too: check ``is_failure``).

        No timeout of its own: the caller bounds the wait (``forget(mid)`` drops
        a future nobody waits for any more). Raises ``aiomqtt.MqttCodeError``
        when paho cannot queue the message (not connected).
        """
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        # No PUBACK can have been handled yet: paho reads the socket only from
        # aiomqtt's reader callback on this same event loop.
        fut: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = fut
        return info.mid, fut

    def forget(self, mid: int) -> None:
        """Stop waiting for the PUBACK of ``mid`` (see ``publish_soon``)."""
        self._acks.pop(mid, None)

    async def publish_acked(
        self, topic: str, payload: str | bytes, *, timeout_s: float, retain: bool = False
    ) -> int:
        """Publish with QoS 1 and wait for the PUBACK; returns its reason code
        (0x00, or 0x10 No matching subscribers: both accepted).

        Raises ``PublishRefused`` when the reason code is a failure,
        ``aiomqtt.MqttError("Operation timed out")`` without a PUBACK within
        ``timeout_s`` (the same message aiomqtt's own publish gives), and
        ``aiomqtt.MqttCodeError`` when paho cannot queue the message (not
        connected).
        """
        mid, fut = self.publish_soon(topic, payload, retain=retain)
        return await self.wait_acked(topic, mid, fut, timeout_s=timeout_s)

    async def wait_acked(
        self, topic: str, mid: int, fut: asyncio.Future[ReasonCode], *, timeout_s: float
    ) -> int:
        """The rest of ``publish_acked`` for what ``publish_soon`` published: its
        accepted reason code, or the same exceptions."""
        try:
            async with asyncio.timeout(timeout_s):
                reason = await fut
        except TimeoutError:
            raise aiomqtt.MqttError("Operation timed out") from None
        finally:
            self.forget(mid)
        if reason.is_failure:
            raise PublishRefused(topic, reason.value, str(reason))
        return reason.value

    async def __aexit__(self, *exc: Any) -> None:
        """aiomqtt's exit, then the lost connection's error marked as seen: when a
        drain ends the connection's tasks first (a publish paho could not
        queue), nobody reads aiomqtt's ``_disconnected`` future, and asyncio
        logged "Future exception was never retrieved" once it was collected.
        The uplink reports the loss itself."""
        try:
            await super().__aexit__(*exc)
        finally:
            gone = self._disconnected
            if gone.done() and not gone.cancelled():
                gone.exception()

    def _skipped(self, then: Callable[[str, int], None] | None) -> Callable[[str, int], None]:
        def skipped(topic: str, size: int) -> None:
            self.oversize_skipped += 1
            if then is not None:
                then(topic, size)

        return skipped

    async def subscribe_checked(
        self, topic: str, *, qos: int, timeout_s: float, live_only: bool = False
    ) -> int:
        """Subscribe and read the SUBACK: returns the granted QoS, raises
        ``SubscribeRefused`` when the broker refused (under MQTT 3.1.1 too: 0x80).

        ``live_only`` (MQTT 5): no retained message at subscribe (Retain
        Handling 2), and messages keep the retain flag they were published
        with (Retain As Published), so a retained one can be told apart even
        when it is published while connected. Under 3.1.1 it has no effect.
        """
        options = None
        if live_only and self._client.protocol == paho.MQTTv5:
            options = SubscribeOptions(
                qos=qos,
                retainAsPublished=True,
                retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND,
            )
        if options is None:
            codes = await self.subscribe(topic, qos=qos, timeout=timeout_s)
        else:  # paho takes the QoS from the options then, and refuses both
            codes = await self.subscribe(topic, qos=0, options=options, timeout=timeout_s)
        code = codes[0]
        value = code.value if isinstance(code, ReasonCode) else int(code)
        if value >= 0x80:
            raise SubscribeRefused(topic, value, str(code) if isinstance(code, ReasonCode) else "")
        return value


def _bound_packets(
    client: paho.Client, max_bytes: int, on_oversize: Callable[[str, int], None]
) -> None:
    """Make ``client`` skip, unbuffered, every incoming packet larger than ``max_bytes``."""
    paho_read = client._packet_read
    skip: dict[str, Any] = {"left": 0, "head": bytearray(), "command": 0, "size": 0}

    def recv(size: int) -> bytes | paho.MQTTErrorCode:
        try:
            data = client._sock_recv(size)
        except BlockingIOError:
            return paho.MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:  # logged as paho does: the uplink reads TLS errors there
            client._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return paho.MQTTErrorCode.MQTT_ERR_CONN_LOST
        return data if data else paho.MQTTErrorCode.MQTT_ERR_CONN_LOST

    def packet_read() -> paho.MQTTErrorCode:
        inp = client._in_packet
        if skip["left"] == 0:
            if inp["command"] == 0:
                got = recv(1)
                if not isinstance(got, bytes):
                    return got
                inp["command"] = got[0]
            while inp["have_remaining"] == 0:
                got = recv(1)
                if not isinstance(got, bytes):
                    return got
                inp["remaining_count"].append(got[0])
                if len(inp["remaining_count"]) > 4:
                    return paho.MQTTErrorCode.MQTT_ERR_PROTOCOL
                inp["remaining_length"] += (got[0] & 127) * inp["remaining_mult"]
                inp["remaining_mult"] *= 128
                if got[0] & 128 == 0:
                    inp["have_remaining"] = 1
                    inp["to_process"] = inp["remaining_length"]
            if inp["remaining_length"] <= max_bytes:
                return paho_read()  # paho's own reader, from the payload on
            skip.update(
                left=inp["remaining_length"],
                head=bytearray(),
                command=inp["command"],
                size=inp["remaining_length"],
            )
        while skip["left"] > 0:
            got = recv(min(skip["left"], SKIP_CHUNK))
            if not isinstance(got, bytes):
                return got
            skip["left"] -= len(got)
            room = 2 + 65535 + 2 - len(skip["head"])  # topic length, topic, packet id
            if room > 0:
                skip["head"] += got[:room]
            with client._msgtime_mutex:
                client._last_bytes_received = paho.time_func()
        client._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        topic = ""
        if skip["command"] & 0xF0 == _PUBLISH:
            head: bytearray = skip["head"]
            try:
                (length,) = struct.unpack_from("!H", head)
                topic = head[2 : 2 + length].decode("utf-8", "replace")
                if (skip["command"] & 0x06) >> 1 == 1:  # QoS 1: acknowledge it, unread
                    (mid,) = struct.unpack_from("!H", head, 2 + length)
                    client._send_puback(mid)
            except struct.error:  # a malformed publish: nothing to acknowledge
                pass
        on_oversize(topic, skip["size"])
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    client._packet_read = packet_read  # type: ignore[method-assign]
