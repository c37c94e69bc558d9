# The board's transmit side: every frame is built in two preallocated buffers, `payload`
# (MAX_PAYLOAD + 2 for the CRC) and `frame` (MAX_FRAME). Each method returns the frame's
# length: write frame[0:length] to the port before the next call. The telemetry, event,
# heartbeat, ACK, NAK and history methods allocate nothing; message() (any catalog
# message, through the generic codec) allocates a little and suits rare messages.

import struct

from isoproto import codec
from isoproto.framing import MAX_FRAME, MAX_PAYLOAD, frame_into
from isoproto.history import HistoryReply, RecordRing, pack_history_into
from isoproto.ids import ACK, EVENT, HEARTBEAT, NAK, TELEMETRY
from isoproto.samples import (
    EVENT_BODY_SIZE,
    EVENT_PAYLOAD_SIZE,
    SAMPLE_BODY_SIZE,
    TELEMETRY_PAYLOAD_SIZE,
    pack_event_payload_into,
    pack_telemetry_into,
)


class FrameWriter:
    def __init__(self) -> None:
        self.payload = bytearray(MAX_PAYLOAD + 2)
        self.frame = bytearray(MAX_FRAME)

    def _finish(self, n: int) -> int:
        return frame_into(self.frame, 0, self.payload, n)

    def telemetry(
        self,
        seq: int,
        board_ms: int,
        pressure_mpa: float,
        setpoint_mpa: float,
        pump_duty: int,
        vent_duty: int,
        faults: int,
        state: int,
        flags: int,
        segment: int,
        run_id: int,
    ) -> int:
        n = pack_telemetry_into(
            self.payload,
            0,
            seq,
            board_ms,
            pressure_mpa,
            setpoint_mpa,
            pump_duty,
            vent_duty,
            faults,
            state,
            flags,
            segment,
            run_id,
        )
        return self._finish(n)

    def telemetry_from(self, body: bytes | bytearray | memoryview, offset: int) -> int:
        """TELEMETRY from a stored 27-byte sample body (the history ring's)."""
        p = self.payload
        p[0] = TELEMETRY
        for i in range(SAMPLE_BODY_SIZE):
            p[1 + i] = body[offset + i]
        return self._finish(TELEMETRY_PAYLOAD_SIZE)

    def event(
        self,
        event_seq: int,
        sample_seq: int,
        board_ms: int,
        kind: int,
        code: int,
        detail: int,
        value: float,
    ) -> int:
        pack_event_payload_into(self.payload, 0, event_seq, sample_seq, board_ms, kind, code, detail, value)
        return self._finish(EVENT_PAYLOAD_SIZE)

    def event_from(self, body: bytes | bytearray | memoryview, offset: int) -> int:
        """EVENT from a stored 22-byte event body."""
        p = self.payload
        p[0] = EVENT
        for i in range(EVENT_BODY_SIZE):
            p[1 + i] = body[offset + i]
        return self._finish(EVENT_PAYLOAD_SIZE)

    def heartbeat(self, board_ms: int, state: int, latest_sample_seq: int, latest_event_seq: int) -> int:
        struct.pack_into(
            "<BIBII", self.payload, 0, HEARTBEAT, board_ms, state, latest_sample_seq, latest_event_seq
        )
        return self._finish(14)

    def ack(self, cmd_seq: int, result: int, value: int = 0) -> int:
        struct.pack_into("<BHBI", self.payload, 0, ACK, cmd_seq, result, value)
        return self._finish(8)

    def nak(
        self, cmd_seq: int, result: int, reason: int, detail: int = 0, problems: list | tuple = ()
    ) -> int:
        """NAK; problems: (reason, segment index) pairs, at most 120."""
        count = min(len(problems), (MAX_PAYLOAD - 8) // 2)
        p = self.payload
        struct.pack_into("<BHBBHB", p, 0, NAK, cmd_seq, result, reason, detail, count)
        for i in range(count):
            p[8 + 2 * i] = problems[i][0]
            p[9 + 2 * i] = problems[i][1]
        return self._finish(8 + 2 * count)

    def history(self, ring: RecordRing, stream: int, first_seq: int, count: int, last: bool) -> int:
        """HISTORY with ring's records first_seq .. first_seq+count-1 (see pack_history_into)."""
        return self._finish(pack_history_into(self.payload, ring, stream, first_seq, count, last))

    def history_chunk(self, reply: HistoryReply) -> int:
        """The next chunk of a REQUEST_HISTORY reply; 0 when the reply is complete."""
        n = reply.next_payload(self.payload)
        return self._finish(n) if n else 0

    def message(self, msg_id: int, values: tuple | list) -> int:
        """Any catalog message (HELLO, PROFILE, ...) through the generic codec."""
        return self._finish(codec.encode_into(self.payload, 0, msg_id, values))
