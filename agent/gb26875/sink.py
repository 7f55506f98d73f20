"""Hand every decision to two outboxes: MQTT's and the GB/T 26875.3 uplink's."""

from __future__ import annotations

import asyncio

from agent.events import Decision
from agent.outbox import Outbox

GB_OUTBOX_FILE = "outbox-gb26875.db"


class BothOutboxes:
    """A decision sink that stores each decision in both outboxes before it
    returns (both commits run at once, each on its outbox's own thread), so
    that each uplink drains its own queue at its own pace and deletes a
    decision only on its own receiver's acknowledgement."""

    def __init__(self, mqtt: Outbox, gb: Outbox) -> None:
        self.mqtt = mqtt
        self.gb = gb

    async def submit(self, decision: Decision) -> None:
        await asyncio.gather(self.mqtt.submit(decision), self.gb.submit(decision))
