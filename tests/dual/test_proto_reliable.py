# The reliability layer: command sender and receiver on their own, then both ends over a
# seeded lossy channel (drop, duplicate, reorder, delay, corrupt) with telemetry backfill.

import random

from isoproto import catalog, codec, framing, samples
from isoproto.history import HistoryReply, RecordRing
from isoproto.reliable import (
    DROP,
    DUPLICATE,
    EXECUTE,
    OUTCOME_ACK,
    OUTCOME_FAILED,
    OUTCOME_NAK,
    CommandReceiver,
    CommandSender,
    SenderBusyError,
    SequenceTracker,
)
from isoproto.seqnum import seq16_diff, seq32_diff
from isoproto.writer import FrameWriter


def _decode_frame(frame):
    return codec.decode(framing.StreamDecoder().feed(frame)[0])


def _ack(seq, value=0):
    return catalog.ACK, (seq, 0, value)


def test_serial_number_arithmetic_wraps():
    assert seq16_diff(0, 65535) == 1 and seq16_diff(65535, 0) == -1
    assert seq16_diff(5, 5) == 0 and seq16_diff(0x8004, 5) == 32767 and seq16_diff(0x8005, 5) == -32768
    assert seq32_diff(0, 0xFFFFFFFF) == 1 and seq32_diff(0xFFFFFFFF, 0) == -1
    assert seq32_diff(0x7FFFFFFF, 0) == 0x7FFFFFFF and seq32_diff(0x80000000, 0) == -0x80000000


def test_sender_numbers_commands_and_keeps_the_window():
    s = CommandSender(next_seq=65534, window=2)
    seqs = [s.submit(catalog.PAUSE), s.submit(catalog.RESUME), s.submit(catalog.ABORT)]
    assert seqs == [65534, 65535, 0]
    frames = s.poll(0)
    assert len(frames) == 2 and s.in_flight == 2
    assert _decode_frame(frames[0]) == (catalog.PAUSE, (65534,))
    assert s.poll(1) == []  # window full, timer not expired
    out = s.on_reply(*_ack(65534), 20)
    assert out.status == OUTCOME_ACK and out.seq == 65534 and out.rtt_ms == 20
    frames = s.poll(20)
    assert [_decode_frame(f) for f in frames] == [(catalog.ABORT, (0,))]


def test_sender_refuses_bad_commands_without_using_a_seq():
    s = CommandSender()
    for bad in ((catalog.TELEMETRY, ()), (catalog.START, ("x",))):
        try:
            s.submit(*bad)
        except Exception as exc:  # ProtocolError subclasses
            assert "0x20" in str(exc) or "START.recipe_id" in str(exc)
        else:
            raise AssertionError("submitted")
    assert s.next_seq == 0 and s.outstanding == 0
    s = CommandSender(max_queue=1, window=1)
    s.submit(catalog.PAUSE)
    try:
        s.submit(catalog.PAUSE)
    except SenderBusyError:
        pass
    else:
        raise AssertionError("queue overflowed")


def test_rto_follows_rfc6298_with_karn_and_clamping():
    s = CommandSender(rto_initial_ms=250, rto_min_ms=25, rto_max_ms=2000)
    s.submit(catalog.PAUSE)
    s.poll(0)
    s.on_reply(*_ack(0), 40)  # first sample: SRTT = 40, RTTVAR = 20, RTO = 40 + 80
    assert (s.srtt_ms, s.rttvar_ms, s.rto_ms) == (40, 20, 120)
    s.submit(catalog.PAUSE)
    s.poll(1000)
    s.on_reply(*_ack(1), 1020)  # R = 20: RTTVAR = 3/4*20 + 1/4*20 = 20, SRTT = 7/8*40 + 1/8*20 = 37.5
    assert s.srtt_ms == 37 and s.rttvar_ms == 20 and s.rto_ms == 117
    # timeout: doubled, and the reply to the retransmitted command gives no RTT sample
    s.submit(catalog.PAUSE)
    s.poll(2000)
    assert s.next_deadline() == 2117
    assert len(s.poll(2117)) == 1 and s.rto_ms == 234
    assert len(s.poll(2117 + 233)) == 0
    assert len(s.poll(2117 + 234)) == 1 and s.rto_ms == 468
    samples_before = s.rtt_samples
    out = s.on_reply(*_ack(2), 2400)
    assert out.tries == 3 and s.rtt_samples == samples_before and s.rto_ms == 468
    # clamped: tiny RTTs give 25 ms, repeated timeouts stop at 2 s
    s = CommandSender()
    for i in range(20):
        s.submit(catalog.PAUSE)
        s.poll(i * 100)
        s.on_reply(*_ack(i), i * 100)
    assert s.rto_ms == 25
    s = CommandSender(max_tries=100)
    s.submit(catalog.PAUSE)
    now = 0
    s.poll(now)
    for _ in range(12):
        now = s.next_deadline()
        s.poll(now)
    assert s.rto_ms == 2000


def test_a_reply_triggers_fast_retransmit_of_older_and_go_back_n_of_newer_commands():
    s = CommandSender(window=4)
    for _ in range(4):
        s.submit(catalog.PAUSE)
    assert len(s.poll(0)) == 4
    # the reply to 1 arrives first: 0 was executed too (in order), its reply was lost
    s.on_reply(*_ack(1), 30)
    assert [_decode_frame(f)[1][0] for f in s.poll(30)] == [0]
    assert s.fast_retransmits == 1
    # timeout of 0 ... the board was stuck on a lost command 2: only 2 goes again
    s.on_reply(*_ack(0), 40)
    deadline = s.next_deadline()
    assert [_decode_frame(f)[1][0] for f in s.poll(deadline)] == [2]
    assert s.poll(deadline + 1) == []  # recovering: nothing new, nothing else
    # its reply proves the board was waiting for it: 3, sent before, was dropped
    s.on_reply(*_ack(2), deadline + 20)
    assert [_decode_frame(f)[1][0] for f in s.poll(deadline + 20)] == [3]
    s.on_reply(*_ack(3), deadline + 40)
    assert s.outstanding == 0
    assert [o.seq for o in s.take_outcomes()] == [1, 0, 2, 3]


def test_a_command_without_reply_fails_and_asks_for_a_resync():
    s = CommandSender(max_tries=3, window=2)
    for _ in range(3):
        s.submit(catalog.PAUSE)
    now = 0
    sends = len(s.poll(now))
    while s.next_deadline() >= 0:
        now = s.next_deadline()
        sends += len(s.poll(now))
    assert sends == 2 + 2  # two first sends, then the oldest alone twice more (RFC 6298 5.4)
    outcomes = s.take_outcomes()
    assert [o.status for o in outcomes] == [OUTCOME_FAILED] * 3  # the queued one too: never silent
    assert "3 tries" in outcomes[0].reason
    assert s.needs_resync and s.poll(now + 10000) == []
    next_seq = s.resync()
    assert next_seq == 3 and not s.needs_resync
    s.submit(catalog.RESUME)
    assert len(s.poll(now)) == 1


def test_resync_fails_commands_in_flight_and_keeps_queued_ones():
    s = CommandSender(window=1)
    s.submit(catalog.PAUSE)
    s.submit(catalog.RESUME)
    s.poll(0)
    assert s.resync() == 1
    outcomes = s.take_outcomes()
    assert len(outcomes) == 1 and outcomes[0].status == OUTCOME_FAILED and outcomes[0].seq == 0
    assert [_decode_frame(f) for f in s.poll(5)] == [(catalog.RESUME, (1,))]


def test_nak_and_stray_replies():
    s = CommandSender()
    s.submit(catalog.START, (1234,))
    s.poll(0)
    assert s.on_reply(catalog.ACK, (9, 0, 0), 5) is None and s.stray_replies == 1
    out = s.on_reply(catalog.NAK, (0, 1, 4, 0, []), 6)
    assert out.status == OUTCOME_NAK and out.reply[2] == 4
    assert s.on_reply(catalog.NAK, (0, 1, 4, 0, []), 7) is None  # the re-sent NAK of a duplicate


def test_receiver_executes_in_order_once_and_replays_the_original_reply():
    rx = CommandReceiver(window=4)
    w = FrameWriter()
    assert rx.accept(0) == DROP and rx.unsynced_drops == 1  # no HELLO_HOST yet
    rx.reset(65534)
    assert rx.accept(65535) == DROP and rx.ahead_drops == 1
    replies = {}
    for seq in (65534, 65535, 0, 1, 2):
        assert rx.accept(seq) == EXECUTE
        n = w.ack(seq, 0, seq + 1000)
        replies[seq] = bytes(w.frame[:n])
        rx.executed(seq, w.frame, n)
    assert rx.expected == 3
    for seq in (65535, 0, 1, 2):
        assert rx.accept(seq) == DUPLICATE
        buf, off, n = rx.reply_frame(seq)
        assert bytes(buf[off : off + n]) == replies[seq]
    assert rx.accept(65534) == DROP and rx.stale_drops == 1  # older than the ring holds
    rx.reset(3)  # a new HELLO_HOST forgets the replies
    assert rx.accept(2) == DROP


def test_command_seq_is_read_before_decoding():
    from isoproto.receiver import command_seq

    assert command_seq(codec.encode(catalog.START, (0x1234, 9)), 7) == 0x1234
    assert command_seq(b"\x5f\x02\x01garbage", 10) == 0x0102  # unknown command: still sequenced
    assert command_seq(codec.encode(catalog.ACK, (5, 0, 0)), 8) == -1
    assert command_seq(b"\x41\x01", 2) == -1


# -- both ends over a lossy channel -------------------------------------------------------


class LossyChannel:
    """Frames in flight, seeded: dropped, duplicated, delayed, reordered or corrupted.

    Frames keep their order (a serial line) and take 1..delay_ms to arrive, except that
    with probability `reorder` a frame is held back by up to 4 * delay_ms and overtaken.
    """

    def __init__(self, drop, dup, corrupt, delay_ms, reorder=0.0):
        self.drop = drop
        self.dup = dup
        self.corrupt = corrupt
        self.delay_ms = delay_ms
        self.reorder = reorder
        self._flight = []
        self._last_due = 0
        self.dropped = 0
        self.duplicated = 0
        self.corrupted = 0
        self.reordered = 0

    def send(self, now, frame):
        if random.random() < self.drop:
            self.dropped += 1
            return
        copies = 1
        if random.random() < self.dup:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            data = frame
            if random.random() < self.corrupt:
                b = bytearray(frame)
                b[random.randrange(len(b))] ^= 1 << random.randrange(8)
                data = bytes(b)
                self.corrupted += 1
            due = now + 1 + random.randrange(self.delay_ms)
            if random.random() < self.reorder:
                due += random.randrange(4 * self.delay_ms)
                self.reordered += 1
            else:
                due = max(due, self._last_due)
                self._last_due = due
            self._flight.append((due, data))

    def receive(self, now):
        due = [f for f in self._flight if f[0] <= now]
        self._flight = [f for f in self._flight if f[0] > now]
        due.sort(key=lambda f: f[0])
        return b"".join(f[1] for f in due)

    @property
    def busy(self):
        return len(self._flight) > 0


class SimBoard:
    def __init__(self):
        self.dec = framing.FrameDecoder()
        self.w = FrameWriter()
        self.rx = CommandReceiver()
        self.ring = RecordRing(512, samples.SAMPLE_BODY_SIZE)
        self.reply = HistoryReply(self.ring, catalog.STREAM_SAMPLES)
        self.sample_seq = 1000
        self.executed = []
        self.history_queue = []  # requests waiting for the reply in progress (at most 4)

    def on_bytes(self, data, out):
        i = 0
        while i < len(data):
            i = self.dec.push(data, i)
            if self.dec.payload_len:
                self._handle(*codec.decode(self.dec.buf, self.dec.payload_len), out=out)

    def _handle(self, msg_id, values, out):
        if msg_id == catalog.HELLO_HOST:
            self.rx.reset(values[3])
            return
        if not catalog.is_command(msg_id):
            return
        seq = values[0]
        verdict = self.rx.accept(seq)
        if verdict == DUPLICATE:
            buf, off, n = self.rx.reply_frame(seq)
            out.append(bytes(buf[off : off + n]))
        elif verdict == EXECUTE:
            self.executed.append((msg_id, values[1:]))
            if msg_id == catalog.REQUEST_HISTORY and len(self.history_queue) < 4:
                self.history_queue.append((values[2], values[3]))
                n = self.w.ack(seq, 0, 0)
            elif msg_id == catalog.REQUEST_HISTORY:
                n = self.w.nak(seq, 1, 22)  # busy
            else:
                n = self.w.ack(seq, 0, len(self.executed))
            self.rx.executed(seq, self.w.frame, n)
            out.append(bytes(self.w.frame[:n]))

    def tick(self, out, telemetry, heartbeat):
        if heartbeat:
            out.append(bytes(self.w.frame[: self.w.heartbeat(0, 3, self.sample_seq, 0)]))
        if telemetry:
            self.sample_seq += 1
            off = self.ring.append(self.sample_seq)
            samples.pack_sample_into(self.ring.buf, off, self.sample_seq, 0, 1.0, 1.0, 0, 0, 0, 3, 0, 0, 1)
            out.append(bytes(self.w.frame[: self.w.telemetry_from(self.ring.buf, off)]))
        if not self.reply.active and self.history_queue:
            self.reply.start(*self.history_queue.pop(0))
        if self.reply.active:
            out.append(bytes(self.w.frame[: self.w.history_chunk(self.reply)]))


class SimHost:
    def __init__(self):
        self.dec = framing.StreamDecoder()
        self.sender = CommandSender(max_tries=30)
        self.tracker = SequenceTracker(retry_ms=300)
        self.samples = []
        self.outcomes = []
        self.settled_ms = 0

    def on_bytes(self, data, now):
        for payload in self.dec.feed(data):
            msg_id, values = codec.decode(payload)
            if msg_id in (catalog.ACK, catalog.NAK):
                outcome = self.sender.on_reply(msg_id, values, now)
                if outcome is not None:
                    self.outcomes += self.sender.take_outcomes()
                    if outcome.status == OUTCOME_NAK and outcome.msg_id == catalog.REQUEST_HISTORY:
                        self.tracker.cancel_request(outcome.values[1])
            elif msg_id == catalog.TELEMETRY:
                if self.tracker.observe(values[0]):
                    self.samples.append(values[0])
            elif msg_id == catalog.HEARTBEAT:
                self.tracker.note_latest(values[2])
            elif msg_id == catalog.HISTORY:
                for body in values[4]:
                    seq = samples.body_seq(body)
                    if self.tracker.on_backfill(seq):
                        self.samples.append(seq)
                self.tracker.history_done(values[1], len(values[4]), values[2], values[3] == 1)

    def poll(self, now):
        for stream, first, count in self.tracker.requests(now):
            if self.sender.outstanding < 8:
                self.sender.submit(catalog.REQUEST_HISTORY, (stream, first, count))
        return self.sender.poll(now)


def _run_lossy_link(seed, drop, dup, corrupt, delay_ms, commands=40, ticks=600, reorder=0.05):
    random.seed(seed)
    h2b = LossyChannel(drop, dup, corrupt, delay_ms, reorder)
    b2h = LossyChannel(drop, dup, corrupt, delay_ms, reorder)
    board = SimBoard()
    host = SimHost()
    # the handshake is not under test here: HELLO_HOST and the HELLO's latest sample seq
    board.rx.reset(host.sender.next_seq)
    host.tracker.note_latest(board.sample_seq)
    submitted = []
    now = 0
    t = 0
    while True:
        now += 5
        t += 1
        if t < ticks and t % 10 == 0 and len(submitted) < commands and host.sender.outstanding < 16:
            values = (len(submitted) + 1,)
            host.sender.submit(catalog.START, values)
            submitted.append((catalog.START, values))
        out = []
        board.on_bytes(h2b.receive(now), out)
        board.tick(out, telemetry=t < ticks and t % 2 == 0, heartbeat=t % 20 == 0)
        for f in out:
            b2h.send(now, f)
        host.on_bytes(b2h.receive(now), now)
        for f in host.poll(now):
            h2b.send(now, f)
        done = t >= ticks and host.sender.outstanding == 0 and host.tracker.missing == 0
        done = done and host.tracker.latest == board.sample_seq
        if done and not h2b.busy and not b2h.busy and not board.reply.active and not board.history_queue:
            break
        assert t < 100 * ticks, "the link never settled"
    host.settled_ms = now
    return board, host, submitted, h2b, b2h


def _check_link(board, host, submitted, h2b, b2h):
    starts = [e for e in board.executed if e[0] == catalog.START]
    assert starts == submitted  # every command exactly once, in order
    assert all(o.status in (OUTCOME_ACK, OUTCOME_NAK) for o in host.outcomes)
    assert len(host.outcomes) == len(board.executed)  # every ACK/NAK reached the host
    assert sorted(host.samples) == list(range(1001, board.sample_seq + 1))  # each sample once
    assert host.tracker.lost == 0


def test_lossy_link_executes_every_command_once_and_backfills_every_sample():
    link = _run_lossy_link(seed=1, drop=0.1, dup=0.1, corrupt=0.03, delay_ms=40)
    _check_link(*link)
    board, host, _, h2b, b2h = link
    # the damage really happened and the recovery paths really ran
    assert h2b.dropped and b2h.dropped and h2b.duplicated and b2h.corrupted and h2b.reordered
    assert board.rx.duplicates > 0 and board.rx.ahead_drops > 0
    assert host.sender.retransmits > 0 and host.tracker.gaps > 0 and host.tracker.backfilled > 0


def test_lossy_link_with_other_seeds_and_heavier_loss():
    for seed, drop in ((2, 0.2), (3, 0.05), (4, 0.15)):
        _check_link(
            *_run_lossy_link(seed=seed, drop=drop, dup=0.2, corrupt=0.02, delay_ms=80, commands=12, ticks=300)
        )
