# The board's history: a ring of fixed-size record bodies indexed by sequence number (the
# samples' 27-byte TELEMETRY bodies, or the events' 22-byte EVENT bodies), and the
# answer to a REQUEST_HISTORY, chunk by chunk. One preallocated bytearray; nothing is
# allocated per record. The firmware decides the capacity (RAM) and the pace of replies.

import struct

from isoproto.ids import HISTORY
from isoproto.seqnum import seq32_add, seq32_diff

HISTORY_HEADER_SIZE = 13  # msg id, stream, first_seq, oldest_seq, last_chunk, count, body size
_MAX_PAYLOAD = 250


def records_per_chunk(record_size: int, max_payload: int = 250) -> int:
    """How many bodies of record_size fit one HISTORY frame (8 samples, 10 events)."""
    return (max_payload - HISTORY_HEADER_SIZE) // record_size


class RecordRing:
    """The newest `capacity` records, by consecutive 32-bit sequence number."""

    def __init__(self, capacity: int, record_size: int) -> None:
        if capacity < 1 or record_size < 1:
            raise ValueError("capacity and record_size must be >= 1")
        self.capacity = capacity
        self.record_size = record_size
        self.buf = bytearray(capacity * record_size)
        self.count = 0
        self.latest = 0  # seq of the newest record (meaningless while count == 0)
        self._head = 0  # slot the next record goes to
        self.overwritten = 0

    @property
    def oldest(self) -> int:
        """Seq of the oldest record held (latest + 1 when empty)."""
        return seq32_add(self.latest, 1 - self.count)

    def append(self, seq: int) -> int:
        """Make room for record seq and return its offset in buf: pack the body there.

        seq must follow latest; a jump (board sequence restarted) empties the ring first.
        """
        if self.count and seq != seq32_add(self.latest, 1):
            self.count = 0
        offset = self._head * self.record_size
        self._head = (self._head + 1) % self.capacity
        if self.count < self.capacity:
            self.count += 1
        else:
            self.overwritten += 1
        self.latest = seq
        return offset

    def offset_of(self, seq: int) -> int:
        """Offset of record seq in buf, or -1 when it is not held."""
        k = seq32_diff(self.latest, seq)
        if k < 0 or k >= self.count:
            return -1
        return ((self._head - 1 - k) % self.capacity) * self.record_size


class HistoryReply:
    """One REQUEST_HISTORY being answered: start(), then FrameWriter.history_chunk(reply)
    (or next_payload()) until it returns 0.

    Records older than the ring's oldest are skipped (the chunk's oldest_seq tells the host
    they are lost); records newer than the newest are not sent. Every reply ends with a
    chunk marked last, so a request for nothing held gets one empty last chunk.
    """

    def __init__(self, ring: RecordRing, stream: int) -> None:
        self.ring = ring
        self.stream = stream
        self.per_chunk = records_per_chunk(ring.record_size)
        self.active = False
        self.next_seq = 0
        self.remaining = 0

    def start(self, from_seq: int, count: int) -> None:
        ring = self.ring
        start = from_seq
        if ring.count == 0 or seq32_diff(from_seq, ring.oldest) < 0:
            start = ring.oldest
        end = seq32_add(from_seq, count)  # one past the last wanted
        newest_end = seq32_add(ring.latest, 1) if ring.count else start
        if seq32_diff(end, newest_end) > 0:
            end = newest_end
        self.next_seq = start
        self.remaining = max(0, seq32_diff(end, start))
        self.active = True

    def next_payload(self, payload: bytearray) -> int:
        """Pack the next chunk's HISTORY payload into payload; its length, or 0 when the
        reply is done. (FrameWriter.history_chunk() frames it.)"""
        if not self.active:
            return 0
        behind = seq32_diff(self.ring.oldest, self.next_seq)
        if behind > 0 and self.ring.count:  # overwritten while the reply was going out
            skip = min(behind, self.remaining)
            self.next_seq = seq32_add(self.next_seq, skip)
            self.remaining -= skip
        n = min(self.remaining, self.per_chunk)
        last = n == self.remaining
        length = pack_history_into(payload, self.ring, self.stream, self.next_seq, n, last)
        self.next_seq = seq32_add(self.next_seq, n)
        self.remaining -= n
        if last:
            self.active = False
        return length


def pack_history_into(
    payload: bytearray, ring: RecordRing, stream: int, first_seq: int, count: int, last: bool
) -> int:
    """HISTORY payload with ring's records first_seq .. first_seq+count-1; stops early at a
    record the ring no longer holds (the header's count says how many went). Allocates
    nothing; returns the payload length."""
    size = ring.record_size
    o = HISTORY_HEADER_SIZE
    src = ring.buf
    seq = first_seq
    sent = 0
    while sent < count and o + size <= _MAX_PAYLOAD:
        at = ring.offset_of(seq)
        if at < 0:
            break
        for i in range(size):
            payload[o + i] = src[at + i]
        o += size
        sent += 1
        seq = (seq + 1) & 0xFFFFFFFF
    struct.pack_into(
        "<BBIIBBB", payload, 0, HISTORY, stream, first_seq, ring.oldest, 1 if last else 0, sent, size
    )
    return o
