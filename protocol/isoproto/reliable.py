# The reliability layer: pure logic, no I/O, time handed in as integer milliseconds.
#
# CommandSender (host): numbers commands (u16, wrapping), keeps at most `window` of them
# unacknowledged, retransmits on timeout with an RFC 6298 retransmission timer, and
# reports every command's outcome (ACK, NAK, or FAILED after max_tries: never a silent
# drop).
#
# CommandReceiver (board; in isoproto.receiver so the board loads only that): executes
# commands strictly in order, each sequence number once; a duplicate gets the original
# reply frame again, byte for byte; a command from the future (one before it was lost) is
# dropped unanswered and the sender goes back to it (go-back-N).
#
# SequenceTracker (host): follows a 32-bit sample or event sequence, keeps the missing
# ranges, asks for them (REQUEST_HISTORY values), fills them from HISTORY and counts what
# the board no longer holds as lost.

from isoproto import codec, framing
from isoproto.codes import RESULT_OK
from isoproto.errors import ProtocolError
from isoproto.ids import ACK, NAK, STREAM_SAMPLES, is_command
from isoproto.receiver import DROP, DUPLICATE, EXECUTE, CommandReceiver
from isoproto.seqnum import seq16_add, seq16_diff, seq32_add, seq32_diff

# the board's half, re-exported so the host and tests find the whole layer here
__all__ = [
    "DROP",
    "DUPLICATE",
    "EXECUTE",
    "OUTCOME_ACK",
    "OUTCOME_FAILED",
    "OUTCOME_NAK",
    "OUTCOME_NAMES",
    "CommandOutcome",
    "CommandReceiver",
    "CommandSender",
    "SenderBusyError",
    "SequenceTracker",
]

# CommandOutcome.status
OUTCOME_ACK = 0  # executed, ACK received
OUTCOME_NAK = 1  # refused or failed on the board, NAK received; nothing changed
OUTCOME_FAILED = 2  # no reply: the board may or may not have executed it

OUTCOME_NAMES = ("ack", "nak", "failed")


class SenderBusyError(ProtocolError):
    """The command queue is full; nothing was queued."""


class CommandOutcome:
    """What became of one command."""

    __slots__ = ("msg_id", "reason", "reply", "rtt_ms", "seq", "status", "tries", "values")

    def __init__(
        self,
        seq: int,
        msg_id: int,
        values: tuple,
        status: int,
        reply: tuple | None,
        tries: int,
        rtt_ms: int,
        reason: str,
    ) -> None:
        self.seq = seq  # its cmd_seq
        self.msg_id = msg_id
        self.values = values  # as submitted (without cmd_seq)
        self.status = status  # OUTCOME_*
        self.reply = reply  # ACK or NAK values (catalog order), None when FAILED
        self.tries = tries  # transmissions
        self.rtt_ms = rtt_ms  # first send to reply, ms (-1 when FAILED)
        self.reason = reason  # words for FAILED, "" otherwise

    def __repr__(self) -> str:
        from isoproto.catalog import message_name  # names: host side, on demand

        return "CommandOutcome(seq=%d, %s, %s, tries=%d)" % (
            self.seq,
            message_name(self.msg_id),
            OUTCOME_NAMES[self.status],
            self.tries,
        )


class _Pending:
    __slots__ = ("executed", "frame", "last_sent_ms", "msg_id", "resend", "sent_ms", "seq", "tries", "values")

    def __init__(self, seq: int, msg_id: int, values: tuple, frame: bytes) -> None:
        self.seq = seq
        self.msg_id = msg_id
        self.values = values
        self.frame = frame
        self.sent_ms = 0  # first transmission (RTT samples)
        self.last_sent_ms = 0
        self.tries = 0
        self.resend = False  # send again at the next poll()
        self.executed = False  # a later command's reply proved the board executed it


class CommandSender:
    """Host side of the command channel.

    submit() queues a command and returns its cmd_seq; poll(now_ms) returns the frames to
    write now (first sends and retransmissions); on_reply() takes each ACK/NAK. Outcomes
    (also FAILED ones) collect in take_outcomes(). After a command failed, every command
    behind it fails too and needs_resync is set: the session sends HELLO_HOST with
    resync()'s next_cmd_seq, because the board waits for the lost seq forever.

    Retransmission timer per RFC 6298 on the oldest unacknowledged command: SRTT/RTTVAR
    from replies to commands sent once (Karn's rule), RTO = SRTT + 4 RTTVAR clamped to
    rto_min_ms..rto_max_ms. When it expires, the oldest command is sent again (5.4), the
    RTO doubles (5.5) and no new command goes out until that one is answered: the board
    drops everything behind a lost command, so sending more would only waste the link.
    The board executes and answers in order, which tells the sender more than TCP's
    timer alone: a reply to command s proves that every older command still waiting and
    sent no later than s was executed and only its reply was lost, so those go again at
    once (fast retransmit; the board re-sends the stored reply). And when s itself had
    been retransmitted, the newer commands sent before that retransmission reached a
    board that was waiting for s and dropped them: they go again at once (go-back-N).
    Neither backs off the timer.

    Keep `window` no larger than the board's reply ring (CommandReceiver's window, 8 by
    default): a duplicate older than the ring gets no reply.
    """

    def __init__(
        self,
        next_seq: int = 0,
        window: int = 4,
        max_queue: int = 32,
        rto_initial_ms: int = 250,
        rto_min_ms: int = 25,
        rto_max_ms: int = 2000,
        max_tries: int = 8,
        max_outcomes: int = 256,
    ) -> None:
        if not 1 <= window <= 1024:
            raise ValueError("window must be 1..1024")
        if not 0 < rto_min_ms <= rto_initial_ms <= rto_max_ms:
            raise ValueError("need 0 < rto_min_ms <= rto_initial_ms <= rto_max_ms")
        if max_tries < 1:
            raise ValueError("max_tries must be >= 1")
        self.next_seq = next_seq & 0xFFFF
        self.window = window
        self.max_queue = max_queue
        self.rto_min_ms = rto_min_ms
        self.rto_max_ms = rto_max_ms
        self.max_tries = max_tries
        self.max_outcomes = max_outcomes
        self.rto_ms = rto_initial_ms
        self.srtt_ms = -1  # no RTT sample yet
        self.rttvar_ms = -1
        self._srtt8 = 0  # SRTT * 8 and RTTVAR * 4 in integer ms (Jacobson's scaling)
        self._rttvar4 = 0
        self.needs_resync = False
        self._queue = []  # submitted, not sent yet
        self._inflight = []  # sent, no reply yet, in seq order
        self._deadline = -1  # retransmission timer of the oldest in flight; -1: off
        self._outcomes = []
        self.sent = 0
        self.retransmits = 0
        self.fast_retransmits = 0
        self.timeouts = 0
        self.rtt_samples = 0
        self.stray_replies = 0
        self.outcomes_dropped = 0

    # -- host API ------------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Commands submitted and not finished (queued + in flight)."""
        return len(self._queue) + len(self._inflight)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def submit(self, msg_id: int, values: tuple | list = ()) -> int:
        """Queue a command; values are its fields after cmd_seq. Returns its cmd_seq.

        EncodeError for bad values and SenderBusyError for a full queue: nothing changes.
        """
        if not is_command(msg_id):
            raise ProtocolError("0x%02x is not a command" % msg_id)
        if len(self._queue) >= self.max_queue:
            raise SenderBusyError("command queue full (%d waiting)" % len(self._queue))
        seq = self.next_seq
        payload = codec.encode(msg_id, (seq,) + tuple(values))
        self._queue.append(_Pending(seq, msg_id, tuple(values), framing.frame(payload)))
        self.next_seq = seq16_add(seq, 1)
        return seq

    def poll(self, now_ms: int) -> list[bytes]:
        """Frames to write now: retransmissions when the timer expired, then new commands
        while the window has room. Call it after submit(), after on_reply() and whenever
        next_deadline() has passed."""
        out = []
        if self._inflight and self._deadline >= 0 and now_ms - self._deadline >= 0:
            self.timeouts += 1
            if self._inflight[0].tries >= self.max_tries:
                self._fail_all("no reply after %d tries" % self._inflight[0].tries)
                self.needs_resync = True
                return out
            self.rto_ms = min(self.rto_ms * 2, self.rto_max_ms)
            self._send(self._inflight[0], now_ms, out)
            self.retransmits += 1
            self._deadline = now_ms + self.rto_ms
        for p in self._inflight:
            if p.resend:
                self._send(p, now_ms, out)
                self.retransmits += 1
                self.fast_retransmits += 1
        recovering = len(self._inflight) > 0 and self._inflight[0].tries > 1
        while self._queue and len(self._inflight) < self.window and not recovering and not self.needs_resync:
            p = self._queue.pop(0)
            p.sent_ms = now_ms
            self._send(p, now_ms, out)
            self._inflight.append(p)
            self.sent += 1
            if self._deadline < 0:
                self._deadline = now_ms + self.rto_ms
        return out

    def next_deadline(self) -> int:
        """When poll() has retransmissions to do (ms), or -1 when nothing waits on a timer."""
        return self._deadline if self._inflight else -1

    def on_reply(self, msg_id: int, values: tuple | list, now_ms: int) -> CommandOutcome | None:
        """Take an ACK or NAK (decoded values). Returns the command's CommandOutcome, or
        None for a reply to nothing in flight (a duplicate or a stale reply)."""
        if msg_id not in (ACK, NAK):
            raise ProtocolError("on_reply takes ACK or NAK, not 0x%02x" % msg_id)
        seq = values[0]
        for i in range(len(self._inflight)):
            p = self._inflight[i]
            if p.seq == seq:
                break
        else:
            self.stray_replies += 1
            return None
        del self._inflight[i]
        for q in self._inflight:
            sent_before = q.last_sent_ms - p.last_sent_ms
            if seq16_diff(q.seq, seq) < 0:
                if sent_before <= 0:  # older, sent no later: executed, its reply was lost
                    q.resend = True
                    q.executed = True
            elif sent_before < 0 and p.tries > 1 and not p.executed:
                q.resend = True  # newer, sent before p's last try: reached a board stuck on p
        rtt = now_ms - p.sent_ms
        if p.tries == 1 and rtt >= 0:  # Karn: only commands sent once give RTT samples
            self._rtt_sample(rtt)
        # RFC 6298 5.3: a reply for data in flight restarts the timer
        self._deadline = now_ms + self.rto_ms if self._inflight else -1
        status = OUTCOME_ACK if msg_id == ACK and values[1] == RESULT_OK else OUTCOME_NAK
        outcome = CommandOutcome(p.seq, p.msg_id, p.values, status, tuple(values), p.tries, rtt, "")
        self._record(outcome)
        return outcome

    def take_outcomes(self) -> list[CommandOutcome]:
        """Outcomes since the last call, in the order they were decided."""
        out = self._outcomes
        self._outcomes = []
        return out

    def resync(self) -> int:
        """The link restarts (handshake after a board reboot, or after retries ran out).

        Commands in flight fail: the board may or may not have executed them. Queued
        commands, never sent, go out after the handshake. Returns the next_cmd_seq to put
        in HELLO_HOST.
        """
        self._fail(self._inflight, "link resynchronised before a reply")
        self._inflight = []
        self._deadline = -1
        self.needs_resync = False
        return self._queue[0].seq if self._queue else self.next_seq

    # -- internals ---------------------------------------------------------------------------

    def _send(self, p: _Pending, now_ms: int, out: list) -> None:
        p.tries += 1
        p.last_sent_ms = now_ms
        p.resend = False
        out.append(p.frame)

    def _rtt_sample(self, rtt: int) -> None:
        self.rtt_samples += 1
        if self.srtt_ms < 0:
            self._srtt8 = rtt * 8
            self._rttvar4 = rtt * 2  # RTTVAR = R/2
        else:
            err = rtt - (self._srtt8 >> 3)
            self._srtt8 += err  # SRTT += err/8
            self._rttvar4 += abs(err) - (self._rttvar4 >> 2)  # RTTVAR += (|err| - RTTVAR)/4
        self.srtt_ms = self._srtt8 >> 3
        self.rttvar_ms = self._rttvar4 >> 2
        rto = self.srtt_ms + max(1, self._rttvar4)  # SRTT + max(G, 4 RTTVAR), G = 1 ms
        self.rto_ms = min(max(rto, self.rto_min_ms), self.rto_max_ms)

    def _fail(self, pending: list, reason: str) -> None:
        for p in pending:
            self._record(CommandOutcome(p.seq, p.msg_id, p.values, OUTCOME_FAILED, None, p.tries, -1, reason))

    def _fail_all(self, reason: str) -> None:
        self._fail(self._inflight + self._queue, reason)
        self._inflight = []
        self._queue = []
        self._deadline = -1

    def _record(self, outcome: CommandOutcome) -> None:
        if len(self._outcomes) >= self.max_outcomes:
            self._outcomes.pop(0)
            self.outcomes_dropped += 1
        self._outcomes.append(outcome)


class SequenceTracker:
    """Host side of one board sequence (samples or events): finds gaps and fills them.

    observe(seq) for every live record (False: a duplicate, drop it); note_latest(seq)
    when HEARTBEAT or HELLO names the board's newest seq (a lost record at the end of a
    stream shows up there); requests(now_ms) for the REQUEST_HISTORY values to send;
    on_backfill(seq) for every HISTORY record; history_done(...) after each HISTORY chunk.

    At most max_ranges missing ranges are kept: when a new gap would exceed that, the
    oldest range is given up and its records counted as lost. A seq more than `horizon`
    older than the newest means the board restarted its sequence: everything missing is
    lost and tracking restarts there.
    """

    def __init__(
        self,
        stream: int = STREAM_SAMPLES,
        max_ranges: int = 256,
        max_request: int = 8,
        retry_ms: int = 1000,
        max_requests: int = 2,
        horizon: int = 0x10000,
    ) -> None:
        self.stream = stream
        self.max_ranges = max_ranges
        self.max_request = max_request
        self.retry_ms = retry_ms
        self.max_requests = max_requests
        self.horizon = horizon
        self.latest = -1  # newest seq seen; -1: nothing yet
        self._ranges = []  # [first, count], oldest first
        self._asks = []  # open requests: [first, count, sent_ms]
        self.received = 0
        self.duplicates = 0
        self.gaps = 0
        self.backfilled = 0
        self.lost = 0
        self.restarts = 0
        self.ranges_dropped = 0

    @property
    def missing(self) -> int:
        """Records currently missing (not yet backfilled, not given up)."""
        n = 0
        for r in self._ranges:
            n += r[1]
        return n

    def missing_ranges(self) -> list[tuple[int, int]]:
        """[(first_seq, count), ...], oldest first."""
        return [(r[0], r[1]) for r in self._ranges]

    def reset(self, latest: int = -1) -> None:
        """Start over (a new board session): what was missing is lost."""
        self.lost += self.missing
        self._ranges = []
        self._asks = []
        self.latest = latest

    def restore(self, latest: int, ranges: list | tuple) -> None:
        """Resume from a saved state: latest and missing_ranges() as they were (e.g. the
        host restarted while the board kept its sequence). Open requests are forgotten;
        ranges that are empty, not behind latest or beyond max_ranges (the oldest) are
        dropped, the last ones counted as lost."""
        self._asks = []
        self.latest = latest & 0xFFFFFFFF
        keep = []
        for r in ranges:
            first, count = r[0] & 0xFFFFFFFF, r[1]
            if count > 0 and seq32_diff(latest, seq32_add(first, count - 1)) >= 0:
                keep.append([first, count])
        while len(keep) > self.max_ranges:
            self.lost += keep.pop(0)[1]
            self.ranges_dropped += 1
        self._ranges = keep

    def observe(self, seq: int) -> bool:
        """A live record with sequence seq arrived. False: duplicate, drop it."""
        if self.latest < 0:
            self.latest = seq
            self.received += 1
            return True
        d = seq32_diff(seq, self.latest)
        if d > 0:
            if d > 1:
                self.gaps += 1
                self._add_range(seq32_add(self.latest, 1), d - 1)
            self.latest = seq
            self.received += 1
            return True
        if -d > self.horizon:
            self.restarts += 1
            self.reset(seq)
            self.received += 1
            return True
        if self._fill(seq):
            self.received += 1
            return True
        self.duplicates += 1
        return False

    def note_latest(self, seq: int) -> None:
        """The board says its newest record is seq (HEARTBEAT, HELLO)."""
        if self.latest < 0:
            self.latest = seq  # tracking starts at the board's present
            return
        d = seq32_diff(seq, self.latest)
        if d > 0:
            self.gaps += 1
            self._add_range(seq32_add(self.latest, 1), d)
            self.latest = seq
        elif -d > self.horizon:
            self.restarts += 1
            self.reset(seq)

    def on_backfill(self, seq: int) -> bool:
        """A HISTORY record with sequence seq. False: not missing (duplicate), drop it."""
        if self._fill(seq):
            self.backfilled += 1
            return True
        self.duplicates += 1
        return False

    def history_done(self, first_seq: int, count: int, oldest_seq: int, last_chunk: bool) -> None:
        """After the records of one HISTORY chunk: what is older than oldest_seq is gone
        (lost); the last chunk of a reply answers the requests that start at or before
        it (the board answers in order), so what is still missing is asked for again."""
        self.forget_before(oldest_seq)
        if last_chunk:
            self._asks = [a for a in self._asks if seq32_diff(a[0], first_seq) > 0]

    def forget_before(self, oldest_seq: int) -> None:
        """The board holds nothing older than oldest_seq: count older missing records lost."""
        keep = []
        for r in self._ranges:
            behind = seq32_diff(oldest_seq, r[0])
            if behind <= 0:
                keep.append(r)
            elif behind >= r[1]:
                self.lost += r[1]
            else:
                self.lost += behind
                keep.append([oldest_seq, r[1] - behind])
        self._ranges = keep

    def cancel_request(self, from_seq: int) -> None:
        """A REQUEST_HISTORY from from_seq failed or was refused (NAK busy): ask again at
        the next requests() instead of waiting retry_ms."""
        self._asks = [a for a in self._asks if a[0] != from_seq]

    def give_up(self, first_seq: int, count: int) -> None:
        """Stop asking for first_seq .. first_seq+count-1 (e.g. NAK history_unavailable)."""
        for i in range(count):
            if self._fill(seq32_add(first_seq, i)):
                self.lost += 1

    def requests(self, now_ms: int) -> list[tuple[int, int, int]]:
        """[(stream, from_seq, count), ...] to send as REQUEST_HISTORY now.

        Each request starts at the oldest missing record no open request covers and spans
        at most max_request seqs (what one HISTORY frame holds), taking in the following
        small gaps (records already held come again and are dropped as duplicates). At
        most max_requests are open; one unanswered for retry_ms is asked again.
        """
        self._asks = [a for a in self._asks if now_ms - a[2] < self.retry_ms]
        out = []
        ranges = self._ranges
        for i in range(len(ranges)):
            if len(self._asks) >= self.max_requests:
                break
            end = seq32_add(ranges[i][0], ranges[i][1])
            start = self._uncovered(ranges[i][0], end)
            while seq32_diff(end, start) > 0 and len(self._asks) < self.max_requests:
                limit = seq32_add(start, self.max_request)
                stop = end if seq32_diff(limit, end) >= 0 else limit
                j = i + 1
                while j < len(ranges) and seq32_diff(limit, ranges[j][0]) > 0:
                    jend = seq32_add(ranges[j][0], ranges[j][1])
                    stop = jend if seq32_diff(limit, jend) >= 0 else limit
                    j += 1
                count = seq32_diff(stop, start)
                self._asks.append([start, count, now_ms])
                out.append((self.stream, start, count))
                start = self._uncovered(start, end)
        return out

    def _uncovered(self, seq: int, end: int) -> int:
        # the first seq from `seq` on (before end) that no open request covers
        moved = True
        while moved and seq32_diff(end, seq) > 0:
            moved = False
            for a in self._asks:
                if 0 <= seq32_diff(seq, a[0]) < a[1]:
                    seq = seq32_add(a[0], a[1])
                    moved = True
        return seq

    def _add_range(self, first: int, count: int) -> None:
        if len(self._ranges) >= self.max_ranges:
            dropped = self._ranges.pop(0)
            self.lost += dropped[1]
            self.ranges_dropped += 1
        self._ranges.append([first, count])

    def _fill(self, seq: int) -> bool:
        ranges = self._ranges
        for i in range(len(ranges)):
            r = ranges[i]
            k = seq32_diff(seq, r[0])
            if 0 <= k < r[1]:
                if r[1] == 1:
                    del ranges[i]
                elif k == 0:
                    r[0] = seq32_add(r[0], 1)
                    r[1] -= 1
                elif k == r[1] - 1:
                    r[1] -= 1
                else:
                    ranges.insert(i + 1, [seq32_add(seq, 1), r[1] - k - 1])
                    r[1] = k
                    if len(ranges) > self.max_ranges:
                        dropped = ranges.pop(0)
                        self.lost += dropped[1]
                        self.ranges_dropped += 1
                return True
        return False
