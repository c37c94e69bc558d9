"""A minimal synchronous host for tests: pyserial on the virtual board's port, frames and
values from isoproto (framing, codec). Not the agent's session: just enough protocol to
drive the board and look at what it sends."""

from __future__ import annotations

import time
from typing import Any

import serial

from isoproto import codec, framing
from isoproto.ids import ACK, HEARTBEAT_HOST, HELLO, HELLO_HOST, NAK


class SerialHost:
    """Every decoded message is kept in ``messages`` as (wall time s, msg_id, values)."""

    def __init__(self, port: str) -> None:
        self.port = serial.Serial(port, timeout=0)
        self.decoder = framing.StreamDecoder()
        self.messages: list[tuple[float, int, tuple[Any, ...]]] = []
        self.seq = 0
        self._beat_at = 0.0

    def close(self) -> None:
        self.port.close()

    def send(self, msg_id: int, values: tuple[Any, ...]) -> None:
        self.port.write(framing.frame(codec.encode(msg_id, values)))

    def pump(self, seconds: float) -> None:
        """Read for ``seconds``, sending a HEARTBEAT_HOST every 200 ms."""
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if now >= self._beat_at:
                self.send(HEARTBEAT_HOST, (int(now * 1000) & 0xFFFFFFFF,))
                self._beat_at = now + 0.2
            data = self.port.read(65536)
            if data:
                stamp = time.monotonic()
                for payload in self.decoder.feed(data):
                    msg_id, values = codec.decode(payload)
                    self.messages.append((stamp, msg_id, values))
            elif now >= end:
                return
            else:
                time.sleep(0.005)

    def wait_for(
        self, msg_id: int, match: Any = None, timeout_s: float = 5.0, since: int = 0
    ) -> tuple[Any, ...]:
        """The values of the first ``msg_id`` message from index ``since`` on for which
        ``match(values)`` holds; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for _, mid, values in self.messages[since:]:
                if mid == msg_id and (match is None or match(values)):
                    return values
            if time.monotonic() > deadline:
                raise AssertionError(f"no message 0x{msg_id:02x} within {timeout_s} s")
            self.pump(0.02)

    def of(self, msg_id: int, since: int = 0) -> list[tuple[Any, ...]]:
        return [v for _, mid, v in self.messages[since:] if mid == msg_id]

    def handshake(self, nonce: int, next_seq: int = 0, timeout_s: float = 5.0) -> tuple[Any, ...]:
        """HELLO_HOST until the board answers HELLO with our nonce; its values."""
        self.seq = next_seq
        deadline = time.monotonic() + timeout_s
        while True:
            mark = len(self.messages)
            self.send(HELLO_HOST, (1, 0, nonce, next_seq))
            try:
                return self.wait_for(HELLO, lambda v: v[13] == nonce, timeout_s=0.5, since=mark)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def command(self, msg_id: int, *args: Any, tries: int = 5) -> tuple[int, tuple[Any, ...]]:
        """Send a sequenced command, retransmitting until its ACK or NAK: (reply id, values)."""
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        for _ in range(tries):
            mark = len(self.messages)
            self.send(msg_id, (seq, *args))
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                for _, mid, values in self.messages[mark:]:
                    if mid in (ACK, NAK) and values[0] == seq:
                        return mid, values
                self.pump(0.01)
        raise AssertionError(f"no reply to command 0x{msg_id:02x} seq {seq}")
