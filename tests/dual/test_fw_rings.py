# History and event rings: bounded, packed, wrap-safe. CPython and MicroPython.

import struct

from isofw.rings import (
    EVENT_BODY_SIZE,
    EVENT_FMT,
    SAMPLE_BODY_SIZE,
    SAMPLE_FMT,
    EventRing,
    HistoryRing,
    pack_sample_into,
)


def _append(ring, seq):
    ring.append(seq, (seq * 10) & 0xFFFFFFFF, seq * 0.5, 250.0, seq & 0xFFFF, 0, 0, 3, 1, 2, 7)


def test_sample_body_is_the_protocols_27_byte_layout():
    assert SAMPLE_BODY_SIZE == 27 == struct.calcsize(SAMPLE_FMT)
    buf = bytearray(27)
    pack_sample_into(buf, 0, 1, 2, 3.5, 4.5, 5, 6, 7, 8, 9, 10, 11)
    assert bytes(buf) == struct.pack("<IIffHHHBBBH", 1, 2, 3.5, 4.5, 5, 6, 7, 8, 9, 10, 11)
    assert EVENT_BODY_SIZE == 22 == struct.calcsize(EVENT_FMT)


def test_empty_ring_reports_no_samples():
    ring = HistoryRing(8)
    assert ring.oldest_seq() == -1 and ring.latest_seq() == -1
    assert ring.copy_records(0, 4, bytearray(200)) == (0, 0)


def test_ring_keeps_the_last_capacity_samples_and_counts_drops():
    ring = HistoryRing(100)
    for seq in range(250):
        _append(ring, seq)
    assert ring.oldest_seq() == 150 and ring.latest_seq() == 249
    assert ring.count == 100 and ring.dropped == 150
    assert ring.sample(149) is None
    assert ring.sample(150)[0] == 150
    assert ring.sample(249)[2] == 124.5


def test_copy_records_returns_contiguous_bodies_across_pages_and_the_wrap():
    ring = HistoryRing(100)  # 18 records per 512-byte page: six pages
    for seq in range(230):
        _append(ring, seq)
    out = bytearray(27 * 60)
    first, n = ring.copy_records(140, 60, out)
    assert (first, n) == (140, 60)
    for i in range(n):
        assert struct.unpack_from(SAMPLE_FMT, out, i * 27)[0] == 140 + i


def test_copy_records_from_before_the_oldest_starts_at_the_oldest():
    ring = HistoryRing(16)
    for seq in range(40):
        _append(ring, seq)
    out = bytearray(27 * 4)
    assert ring.copy_records(3, 10, out) == (24, 4)  # limited by the output buffer
    assert struct.unpack_from(SAMPLE_FMT, out, 0)[0] == 24


def test_copy_records_beyond_the_latest_copies_nothing():
    ring = HistoryRing(16)
    for seq in range(10):
        _append(ring, seq)
    assert ring.copy_records(10, 5, bytearray(500)) == (10, 0)
    assert ring.copy_records(9, 5, bytearray(500)) == (9, 1)


def test_sequence_numbers_wrap_at_u32():
    ring = HistoryRing(8)
    start = 0xFFFFFFFF - 3
    seq = start
    for _ in range(8):
        _append(ring, seq)
        seq = (seq + 1) & 0xFFFFFFFF
    assert ring.oldest_seq() == start and ring.latest_seq() == 3
    out = bytearray(27 * 8)
    assert ring.copy_records(0xFFFFFFFF, 8, out) == (0xFFFFFFFF, 5)
    assert struct.unpack_from(SAMPLE_FMT, out, 27 * 4)[0] == 3


def test_a_gap_in_the_sequence_is_refused():
    ring = HistoryRing(8)
    _append(ring, 5)
    try:
        _append(ring, 7)
    except ValueError:
        return
    raise AssertionError("a gap in the sequence was accepted")


def test_the_packer_is_passed_in():
    calls = []

    def packer(buf, offset, *values):
        calls.append((offset, values[0]))
        buf[offset] = 0xAB

    ring = HistoryRing(4, packer)
    _append(ring, 0)
    _append(ring, 1)
    assert calls == [(0, 0), (27, 1)]
    assert bytes(ring.record(1))[0] == 0xAB


def test_event_ring_numbers_events_and_drops_the_oldest():
    ring = EventRing(4)
    for i in range(6):
        assert ring.append(100 + i, 1000 * i, 3, i, -i, 1.5) == i
    assert ring.oldest_seq() == 2 and ring.latest_seq() == 5 and ring.dropped == 2
    seq, sample_seq, board_ms, kind, code, detail, value = ring.event(5)
    assert (seq, sample_seq, board_ms, kind, code, detail, value) == (5, 105, 5000, 3, 5, -5, 1.5)
    assert [e[0] for e in ring.since(0)] == [2, 3, 4, 5]
    assert [e[0] for e in ring.since(4)] == [4, 5]


def test_a_full_ring_of_the_default_size_fits_its_stated_budget():
    ring = HistoryRing()
    assert ring.capacity == 1024
    assert ring.nbytes() == 1024 * 27  # 27 KiB, as docs/firmware.md states
    assert sum(len(p) for p in ring.pages) == ring.nbytes()
    assert max(len(p) for p in ring.pages) <= 512  # no block larger than a page
