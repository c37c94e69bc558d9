# The board's history ring and its HISTORY replies; the host's sequence tracker.

from isoproto import catalog, codec, framing, samples
from isoproto.history import HISTORY_HEADER_SIZE, HistoryReply, RecordRing, records_per_chunk
from isoproto.reliable import SequenceTracker
from isoproto.writer import FrameWriter


def _ring(first, last, capacity=20):
    ring = RecordRing(capacity, samples.SAMPLE_BODY_SIZE)
    seq = first
    while True:
        off = ring.append(seq)
        samples.pack_sample_into(ring.buf, off, seq, (seq * 10) & 0xFFFFFFFF, 1.0, 2.0, 0, 0, 0, 1, 0, 0, 0)
        if seq == last:
            return ring
        seq = (seq + 1) & 0xFFFFFFFF


def _chunks(reply):
    w = FrameWriter()
    out = []
    while True:
        n = w.history_chunk(reply)
        if not n:
            return out
        assert n <= framing.MAX_FRAME
        payload = framing.StreamDecoder().feed(bytes(w.frame[:n]))[0]
        out.append(codec.decode(payload)[1])


def test_chunk_sizes_fill_one_frame():
    assert HISTORY_HEADER_SIZE == 13
    assert records_per_chunk(samples.SAMPLE_BODY_SIZE) == 8
    assert records_per_chunk(samples.EVENT_BODY_SIZE) == 10


def test_ring_keeps_the_newest_and_wraps_the_sequence():
    ring = _ring(0xFFFFFFF0, 0x20, capacity=40)
    assert ring.count == 40 and ring.latest == 0x20 and ring.oldest == 0xFFFFFFF9
    assert ring.offset_of(0xFFFFFFF8) == -1 and ring.offset_of(0x21) == -1
    for seq in (0xFFFFFFF9, 0xFFFFFFFF, 0x0, 0x20):
        assert samples.unpack_sample(ring.buf, ring.offset_of(seq))[0] == seq
    ring.append(500)  # a jump: the board's sequence restarted, the old records go
    assert ring.count == 1 and ring.oldest == 500


def test_reply_sends_what_is_held_in_chunks_and_marks_the_last():
    ring = _ring(100, 129)  # holds 110..129
    reply = HistoryReply(ring, catalog.STREAM_SAMPLES)
    reply.start(105, 20)  # 105..109 are gone
    chunks = _chunks(reply)
    assert [(c[1], c[2], c[3], len(c[4])) for c in chunks] == [(110, 110, 0, 8), (118, 110, 1, 7)]
    seqs = [samples.body_seq(b) for c in chunks for b in c[4]]
    assert seqs == list(range(110, 125))  # 105..109 gone, 110..124 sent


def test_reply_for_nothing_held_is_one_empty_last_chunk():
    ring = _ring(100, 129)
    for first, count in ((200, 5), (10, 5), (120, 0)):
        reply = HistoryReply(ring, catalog.STREAM_SAMPLES)
        reply.start(first, count)
        chunks = _chunks(reply)
        assert len(chunks) == 1 and chunks[0][3] == 1 and chunks[0][4] == []


def test_records_overwritten_during_a_reply_are_skipped():
    ring = _ring(100, 119, capacity=20)
    reply = HistoryReply(ring, catalog.STREAM_SAMPLES)
    reply.start(100, 20)
    w = FrameWriter()
    w.history_chunk(reply)  # 100..107 went out
    for seq in range(120, 125):  # 100..104 overwritten
        ring.append(seq)
    rest = _chunks(reply)
    seqs = [samples.body_seq(b) for c in rest for b in c[4]]
    assert seqs == list(range(108, 120))


def test_tracker_finds_gaps_drops_duplicates_and_fills_from_history():
    t = SequenceTracker(max_request=8)
    t.note_latest(99)  # HELLO: the board's newest sample
    for seq in (100, 101, 105, 106, 106, 101, 120):
        t.observe(seq)
    assert t.missing_ranges() == [(102, 3), (107, 13)]
    assert t.duplicates == 2 and t.gaps == 2 and t.missing == 16
    reqs = t.requests(0)
    assert reqs == [(catalog.STREAM_SAMPLES, 102, 8), (catalog.STREAM_SAMPLES, 110, 8)]
    assert t.requests(10) == []  # asked, not answered, not timed out
    for seq in range(102, 110):
        assert t.on_backfill(seq) == (seq not in (105, 106))
    t.history_done(102, 8, 50, True)
    assert t.missing_ranges() == [(110, 10)]
    assert t.requests(20) == [(catalog.STREAM_SAMPLES, 118, 2)]  # 110..117 still asked
    assert t.requests(30) == []  # both asked, not answered, not timed out
    assert t.requests(1000) == [(catalog.STREAM_SAMPLES, 110, 8)]  # retried after retry_ms


def test_tracker_counts_what_the_board_no_longer_holds_as_lost():
    t = SequenceTracker()
    t.observe(10)
    t.observe(30)  # 11..29 missing
    t.history_done(25, 5, 25, True)  # oldest held is 25
    assert t.lost == 14 and t.missing_ranges() == [(25, 5)]
    t.give_up(25, 2)
    assert t.lost == 16 and t.missing_ranges() == [(27, 3)]


def test_tracker_is_bounded_and_counts_dropped_ranges():
    t = SequenceTracker(max_ranges=3)
    t.observe(0)
    for seq in (2, 4, 6, 8, 10):
        t.observe(seq)
    assert t.missing_ranges() == [(5, 1), (7, 1), (9, 1)]
    assert t.lost == 2 and t.ranges_dropped == 2


def test_tracker_wraps_at_2_32_and_spots_a_restart():
    t = SequenceTracker(horizon=1000)
    t.observe(0xFFFFFFFE)
    t.observe(1)  # 0xFFFFFFFF and 0 missing
    assert t.missing_ranges() == [(0xFFFFFFFF, 2)]
    assert t.on_backfill(0) and t.missing_ranges() == [(0xFFFFFFFF, 1)]
    assert t.observe(0xFFFFFFFF)  # late live record fills too
    t.note_latest(5)
    assert t.missing_ranges() == [(2, 4)]
    assert t.observe(3)
    t.observe(0x7000)  # far ahead: a real gap
    assert t.restarts == 0
    assert t.observe(7)  # far behind: the board restarted its sequence
    assert t.restarts == 1 and t.latest == 7 and t.missing == 0


def test_requests_take_in_small_gaps_up_to_one_frame():
    t = SequenceTracker(max_request=8, max_requests=1)
    t.observe(0)
    for seq in (2, 4, 9, 20):  # missing 1, 3, 5..8, 10..19
        t.observe(seq)
    assert t.requests(0) == [(catalog.STREAM_SAMPLES, 1, 8)]  # 1..8 in one request
    t.cancel_request(1)
    assert t.requests(1) == [(catalog.STREAM_SAMPLES, 1, 8)]


def test_tracker_restores_a_saved_state_and_carries_on():
    saved = SequenceTracker()
    saved.observe(100)
    saved.observe(105)  # 101..104 missing
    saved.observe(110)  # 106..109 missing
    assert saved.on_backfill(107)
    t = SequenceTracker(max_ranges=2)
    t.requests(0)
    t.restore(saved.latest, saved.missing_ranges())
    assert t.latest == 110 and t.missing_ranges() == [(101, 4), (106, 1), (108, 2)][-2:]
    assert t.lost == 4 and t.ranges_dropped == 1  # max_ranges 2: the oldest range given up
    assert t.observe(111) and not t.observe(110)  # the present continues, old seqs are duplicates
    assert t.on_backfill(106) and t.missing_ranges() == [(108, 2)]
    t.note_latest(115)  # a gap at the end shows up as before
    assert t.missing_ranges() == [(108, 2), (112, 4)]
    u = SequenceTracker()
    u.restore(0xFFFFFFFF, [(0xFFFFFFF0, 0), (5, 3), (0xFFFFFFFE, 1)])  # empty and future ranges dropped
    assert u.missing_ranges() == [(0xFFFFFFFE, 1)] and u.lost == 0
    assert u.observe(0) and u.latest == 0
