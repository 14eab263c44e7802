"""The caller's data channel as a call uses it: bounded both ways, drops counted.

The caller creates the channel in its offer; the call uses the first one it opens,
whatever its label. Messages for the caller wait (bounded) until it opens; once
open, droppable ones (partial transcripts) are dropped while the channel is backed
up. Messages from the caller wait in a bounded inbox for the call's task. Library
callbacks only enqueue. Imports aiortc's data channel type only.
"""

from __future__ import annotations

import asyncio

from aiortc import RTCDataChannel

#: Caller messages waiting to be handled; beyond it they are dropped and counted.
INBOX_SIZE = 64
#: Messages for the caller before its channel opens; beyond it they are dropped.
OUTBOX_BEFORE_OPEN = 64
#: Past this much unsent data on the channel, partial transcripts are dropped.
MAX_CHANNEL_BUFFERED_BYTES = 1 << 20


class CallerChannel:
    """The call's end of the caller's data channel (none until the caller opens one)."""

    def __init__(self) -> None:
        self._channel: RTCDataChannel | None = None
        self._pending: list[str] = []
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue(INBOX_SIZE)
        #: Messages for the caller that were dropped (before open, closed, backed up).
        self.dropped_out = 0
        #: Messages from the caller dropped because the inbox was full.
        self.dropped_in = 0

    def attach(self, channel: RTCDataChannel) -> None:
        """Use `channel` if it is the first the caller opened; ignore any later one."""
        if self._channel is not None:
            return
        channel.on("message", self._on_message)
        self._channel = channel
        pending, self._pending = self._pending, []
        for message in pending:
            self.send(message)

    def send(self, message: str, *, droppable: bool = False) -> None:
        channel = self._channel
        if channel is None:
            if len(self._pending) < OUTBOX_BEFORE_OPEN:
                self._pending.append(message)
            else:
                self.dropped_out += 1
        elif channel.readyState != "open" or (
            droppable and channel.bufferedAmount > MAX_CHANNEL_BUFFERED_BYTES
        ):
            self.dropped_out += 1
        else:
            channel.send(message)

    async def receive(self) -> str | bytes:
        """The next message from the caller."""
        return await self._inbox.get()

    def _on_message(self, message: str | bytes) -> None:
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped_in += 1
