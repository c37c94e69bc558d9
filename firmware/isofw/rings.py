# Bounded rings of packed records: the telemetry history (for backfill) and the event log.
#
# Records are stored as the protocol's packed bodies in one preallocated bytearray, so a
# ring costs exactly capacity * record_size bytes, appending allocates nothing, and a
# HISTORY reply is a copy of bytes. The packer is passed in so the protocol package's own
# encoder can be used once it exists; the default packs the same layout with struct.
# When full, the oldest record is overwritten and counted in `dropped`.

import struct

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

_U32 = const(0xFFFFFFFF)
_PAGE_BYTES = const(512)

# TELEMETRY body: seq u32, board_ms u32, pressure_mpa f32, setpoint_mpa f32, pump_duty u16,
# vent_duty u16, faults u16, state u8, flags u8, segment u8, run_id u16 (little-endian).
SAMPLE_FMT = "<IIffHHHBBBH"
SAMPLE_BODY_SIZE = const(27)

# EVENT body: event seq u32, sample seq u32, board ms u32, kind u8, code u8, detail i32,
# value f32 (little-endian).
EVENT_FMT = "<IIIBBif"
EVENT_BODY_SIZE = const(22)

HISTORY_SAMPLES = const(1024)  # 27.0 KiB: see docs/firmware.md for the RAM budget
EVENT_RECORDS = const(64)  # 1.4 KiB


def pack_sample_into(
    buf,
    offset,
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
):
    struct.pack_into(
        SAMPLE_FMT,
        buf,
        offset,
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


def pack_event_into(buf, offset, seq, sample_seq, board_ms, kind, code, detail, value):
    struct.pack_into(EVENT_FMT, buf, offset, seq, sample_seq, board_ms, kind, code, detail, value)


class _PackedRing:
    """Fixed-size records addressed by a u32 sequence number that wraps.

    The records live in pages of at most _PAGE_BYTES: after boot the heap is fragmented
    (imports leave small objects everywhere between the compiler's freed garbage), and
    a ring of one 27 KB bytearray finds no hole that large. Measured on the unix port
    with the RP2040 heap: 2 KB pages still fail, 512-byte pages fit with 25 KB to spare
    (docs/firmware.md).
    """

    def __init__(self, capacity: int, record_size: int):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.record_size = record_size
        per_page = _PAGE_BYTES // record_size
        if per_page > capacity:
            per_page = capacity
        self.per_page = per_page
        self.pages = []
        left = capacity
        while left > 0:
            n = per_page if left > per_page else left
            self.pages.append(bytearray(n * record_size))
            left -= n
        self.count = 0
        self.dropped = 0  # records overwritten before anyone could read them back
        self._head = 0  # slot the next record goes into
        self._latest = _U32  # seq of the newest record (none yet: one before 0)

    def nbytes(self) -> int:
        return self.capacity * self.record_size

    def _claim(self, seq: int) -> int:
        """The slot for record seq (must be latest + 1); drops the oldest if full."""
        if self.count and seq != (self._latest + 1) & _U32:
            raise ValueError("sequence must continue the ring")
        slot = self._head
        self._head = slot + 1 if slot + 1 < self.capacity else 0
        if self.count < self.capacity:
            self.count += 1
        else:
            self.dropped += 1
        self._latest = seq
        return slot

    def latest_seq(self) -> int:
        """Sequence of the newest record, or -1 when empty."""
        return self._latest if self.count else -1

    def oldest_seq(self) -> int:
        """Sequence of the oldest record still held, or -1 when empty."""
        if not self.count:
            return -1
        return (self._latest - self.count + 1) & _U32

    def slot_of(self, seq: int) -> int:
        """Ring slot of record seq, or -1 if it is not held."""
        if not self.count:
            return -1
        back = (self._latest - seq) & _U32  # 0 = newest
        if back >= self.count:
            return -1
        slot = self._head - 1 - back
        if slot < 0:
            slot += self.capacity
        return slot

    def record(self, seq: int):
        """A memoryview of record seq's bytes, or None if it is not held."""
        slot = self.slot_of(seq)
        if slot < 0:
            return None
        start = (slot % self.per_page) * self.record_size
        return memoryview(self.pages[slot // self.per_page])[start : start + self.record_size]

    def copy_records(self, from_seq: int, max_records: int, out_buf, out_offset: int = 0) -> tuple:
        """Copy up to max_records records from from_seq on into out_buf at out_offset.

        Starts at the oldest record held if from_seq is older than that; copies no more
        than fit in out_buf. Returns (first_seq, n): the sequence of the first record
        copied and how many were. n == 0 when nothing at or after from_seq is held.
        """
        if not self.count or max_records <= 0:
            return (from_seq, 0)
        oldest = (self._latest - self.count + 1) & _U32
        ahead = (from_seq - oldest) & _U32
        if ahead >= 0x80000000:  # from_seq is before the oldest: start at the oldest
            ahead = 0
        if ahead >= self.count:
            return (from_seq, 0)
        size = self.record_size
        n = self.count - ahead
        room = (len(out_buf) - out_offset) // size
        if n > max_records:
            n = max_records
        if n > room:
            n = room
        cap = self.capacity
        per_page = self.per_page
        slot = self._head - self.count + ahead
        if slot < 0:
            slot += cap
        dst = memoryview(out_buf)
        pos = out_offset
        done = 0
        while done < n:
            # Copy the longest run that stays inside one page (and before the ring's end).
            in_page = slot % per_page
            run = per_page - in_page
            if slot - in_page + per_page > cap:
                run = cap - slot
            if run > n - done:
                run = n - done
            page = self.pages[slot // per_page]
            start = in_page * size
            dst[pos : pos + run * size] = memoryview(page)[start : start + run * size]
            pos += run * size
            done += run
            slot += run
            if slot >= cap:
                slot = 0
        return ((oldest + ahead) & _U32, n)


class HistoryRing(_PackedRing):
    """The last `capacity` TELEMETRY sample bodies, for the host's backfill requests."""

    def __init__(self, capacity: int = HISTORY_SAMPLES, packer=None):
        _PackedRing.__init__(self, capacity, SAMPLE_BODY_SIZE)
        self._pack = packer if packer is not None else pack_sample_into

    def append(
        self,
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
    ):
        slot = self._claim(seq)
        per_page = self.per_page
        self._pack(
            self.pages[slot // per_page],
            (slot % per_page) * SAMPLE_BODY_SIZE,
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

    def sample(self, seq: int):
        """One sample as a tuple (tests, the virtual board's trace), or None if not held."""
        record = self.record(seq)
        return None if record is None else struct.unpack_from(SAMPLE_FMT, record, 0)


class EventRing(_PackedRing):
    """The last `capacity` events; each gets the next event sequence number (u32)."""

    def __init__(self, capacity: int = EVENT_RECORDS, packer=None):
        _PackedRing.__init__(self, capacity, EVENT_BODY_SIZE)
        self._pack = packer if packer is not None else pack_event_into
        self.next_seq = 0

    def append(self, sample_seq, board_ms, kind, code, detail, value) -> int:
        seq = self.next_seq
        slot = self._claim(seq)
        per_page = self.per_page
        page = self.pages[slot // per_page]
        offset = (slot % per_page) * EVENT_BODY_SIZE
        self._pack(page, offset, seq, sample_seq & _U32, board_ms & _U32, kind, code, detail, value)
        self.next_seq = (seq + 1) & _U32
        return seq

    def event(self, seq: int):
        """(seq, sample_seq, board_ms, kind, code, detail, value) or None if not held."""
        record = self.record(seq)
        return None if record is None else struct.unpack_from(EVENT_FMT, record, 0)

    def since(self, from_seq: int) -> list:
        """Every held event from from_seq on, oldest first (tests and the virtual board)."""
        out = []
        if not self.count:
            return out
        seq = self.oldest_seq()
        ahead = (from_seq - seq) & _U32
        if ahead < 0x80000000:
            seq = from_seq
        latest = self._latest
        while True:
            record = self.event(seq)
            if record is None:
                break
            out.append(record)
            if seq == latest:
                break
            seq = (seq + 1) & _U32
        return out
