# The board's half of the serial protocol (docs/protocol.md sections 3-4, docs/firmware.md
# "The serial link"). The main loop calls service(now_ms) once per tick, after the
# outputs are written. Pure logic: the byte stream is handed in and has
#
#   read_into(buf) -> n              non-blocking; 0 (or None) when nothing arrived
#   write(buf, off, n) -> written    non-blocking; may take part of it, or nothing
#
# Everything is preallocated: a 128-byte receive buffer, the frame decoder's 252 bytes,
# a payload and a frame buffer (252 + 254), the command receiver's reply ring (8 x 254)
# and a 512-byte transmit FIFO. Frames go out whole and in order: a frame the stream took only
# part of is finished (from the FIFO) before any other byte is written. Live data
# (TELEMETRY, EVENT), heartbeats and history chunks are only built when the FIFO is
# empty, so a full stream never blocks the control loop: their cursors wait and retry
# on the next tick. Replies, HELLO and PROFILE are queued in the FIFO; an inbound frame is
# only taken while the FIFO has room for two more frames, so a reply is never lost.
#
# The board's messages are packed here with struct and the commands decoded here (the
# generic codec, FrameWriter and their tables would cost the board ~20 KB of heap); a
# dual test checks every one of them against isoproto.codec.

import struct

from isoproto import PROTOCOL_MAJOR, PROTOCOL_MINOR
from isoproto.framing import FrameDecoder, frame_into
from isoproto.ids import (
    ABORT,
    ACK,
    EVENT,
    HEARTBEAT,
    HEARTBEAT_HOST,
    HELLO,
    HELLO_HOST,
    HISTORY,
    LOAD_RECIPE_CHUNK,
    NAK,
    PAUSE,
    PROFILE,
    REQUEST_HISTORY,
    RESET_FAULTS,
    RESUME,
    SET_CALIBRATION,
    SET_PROFILE,
    START,
    STREAM_EVENTS,
    STREAM_SAMPLES,
    TELEMETRY,
    is_command,
)
from isoproto.receiver import DUPLICATE, EXECUTE, CommandReceiver, command_seq
from isoproto.seqnum import seq32_diff

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

_U32 = const(0xFFFFFFFF)
TX_BYTES = const(512)  # transmit FIFO: two whole frames of the largest size
RX_BYTES = const(128)  # one read from the stream
_RX_READS_PER_TICK = const(4)  # at most 512 bytes taken in per tick (51 KB/s at 100 Hz)
_RESERVE = const(288)  # FIFO room an inbound frame needs: its reply (or HELLO) + PROFILE
HEARTBEAT_MS = const(250)
HISTORY_SLOTS = const(2)  # REQUEST_HISTORY replies kept open at once; a third is NAKed busy
_HISTORY_HEADER = const(13)  # msg id, stream, first_seq, oldest_seq, last_chunk, count, size
_SAMPLES_PER_CHUNK = const(8)  # (250 - 13) // 27
_EVENTS_PER_CHUNK = const(10)  # (250 - 13) // 22
_MAX_PAYLOAD = const(250)
_MAX_PROBLEMS = const(121)  # (250 - 8) // 2

# codes (isoproto.codes), inlined: the link needs eight of them
_RESULT_OK = const(0)
_RESULT_REJECTED = const(1)
_RESULT_ERROR = const(2)
_R_NONE = const(0)
_R_UNKNOWN_COMMAND = const(1)
_R_MALFORMED = const(2)
_R_VALUE_OUT_OF_RANGE = const(16)
_R_BUSY = const(22)

_MALFORMED = (_RESULT_ERROR, _R_MALFORMED, 0, ())
_UNKNOWN = (_RESULT_ERROR, _R_UNKNOWN_COMMAND, 0, ())


def _text(p, o: int, n: int):
    """(str, next offset) of the str8 at p[o:], or None when it overruns n or is not UTF-8."""
    if o >= n or o + 1 + p[o] > n:
        return None
    try:
        return (bytes(p[o + 1 : o + 1 + p[o]]).decode("utf-8"), o + 1 + p[o])
    except ValueError:  # UnicodeError on both runtimes
        return None


def decode_command(p, n: int):
    """The values of command payload p[0:n] after cmd_seq, as the core's methods take
    them; None when the payload is too short or a string is not UTF-8; () for an id this
    board does not know. Bytes after the last field are ignored (a newer minor's).

    The board's own decoder for the nine commands of protocol 1.0 (the generic codec and
    its tables cost ~20 KB of the board's heap); a dual test checks it against
    isoproto.codec for every command.
    """
    msg_id = p[0]
    if n < 3:
        return None
    if msg_id == PAUSE or msg_id == RESUME or msg_id == ABORT or msg_id == RESET_FAULTS:
        return (None,)
    if msg_id == START:
        return struct.unpack_from("<I", p, 3) if n >= 7 else None
    if msg_id == LOAD_RECIPE_CHUNK:
        if n < 10 or 10 + 13 * p[9] > n:
            return None
        segments = [None] * p[9]  # one allocation: the board's heap is fragmented
        for i in range(p[9]):
            segments[i] = struct.unpack_from("<Bfff", p, 10 + 13 * i)
        return (struct.unpack_from("<I", p, 3)[0], p[7], p[8], segments)
    if msg_id == SET_PROFILE:
        return struct.unpack_from("<ffffffIB", p, 3) if n >= 32 else None
    if msg_id == SET_CALIBRATION:
        cal_id = _text(p, 3, n)
        if cal_id is None:
            return None
        cal_date = _text(p, cal_id[1], n)
        if cal_date is None or cal_date[1] + 16 > n:
            return None
        return (cal_id[0], cal_date[0]) + struct.unpack_from("<ffff", p, cal_date[1])
    if msg_id == REQUEST_HISTORY:
        return (p[3], struct.unpack_from("<I", p, 4)[0], p[8] | (p[9] << 8)) if n >= 10 else None
    return ()


class Link:
    """The board's serial link: call service(now_ms) once per control tick.

    core: the PressCore; stream: read_into/write as above. On construction the link
    writes a lone 0x00, then HELLO (session_nonce 0) and PROFILE.
    """

    def __init__(
        self,
        core,
        stream,
        heartbeat_ms: int = HEARTBEAT_MS,
        history_chunks_per_tick: int = 1,
        live_frames_per_tick: int = 8,
        max_behind_samples: int = 0,
        max_behind_events: int = 16,
    ):
        self.core = core
        self.stream = stream
        self.heartbeat_ms = heartbeat_ms
        self.history_chunks_per_tick = history_chunks_per_tick
        self.live_frames_per_tick = live_frames_per_tick
        if max_behind_samples <= 0:  # a second's worth of samples
            period_ms = core.control_period_ms * core.telemetry_decimation
            max_behind_samples = 1000 // period_ms if period_ms < 1000 else 1
        if max_behind_samples >= core.history.capacity:
            max_behind_samples = core.history.capacity - 1
        if max_behind_events >= core.events.capacity:
            max_behind_events = core.events.capacity - 1
        self.max_behind_samples = max_behind_samples
        self.max_behind_events = max_behind_events
        self.decoder = FrameDecoder()
        self.receiver = CommandReceiver()
        self._payload = bytearray(_MAX_PAYLOAD + 2)  # + the 2 bytes frame_into puts the CRC in
        self._frame = bytearray(254)
        self._rx = bytearray(RX_BYTES)
        self._rx_pos = 0
        self._rx_len = 0
        self._tx = bytearray(TX_BYTES)
        self._tx_head = 0  # next byte to write to the stream
        self._tx_tail = 0  # end of the queued bytes
        # live cursors: the next record of each stream to send
        latest = core.history.latest_seq()
        self._next_sample = (latest + 1) & _U32 if latest >= 0 else 0
        oldest = core.events.oldest_seq()
        self._next_event = oldest if oldest >= 0 else 0
        self._next_beat_ms = 0
        self._budget = 0  # live frames left this tick (_live)
        self._skipped = 0
        # open history replies, a ring of HISTORY_SLOTS: stream, next seq, records left
        self._h_stream = [0] * HISTORY_SLOTS
        self._h_next = [0] * HISTORY_SLOTS
        self._h_left = [0] * HISTORY_SLOTS
        self._h_first = 0
        self._h_count = 0
        # counters (the decoder and the receiver keep theirs: see counters())
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_out = 0
        self.bad_frames = 0  # non-command frames (or commands without a cmd_seq) that do not decode
        self.unknown_frames = 0  # ids that are neither a command nor HELLO_HOST / HEARTBEAT_HOST
        self.handshakes = 0
        self.version_refusals = 0
        self.host_heartbeats = 0
        self.samples_sent = 0
        self.events_sent = 0
        self.skipped_samples = 0  # live records jumped over (the host backfills them)
        self.skipped_events = 0
        self.tx_blocked = 0  # frames the stream could not take (retried next tick)
        self.tx_overflows = 0  # control frames that did not fit the FIFO (never expected)
        self.rx_stalls = 0  # ticks that left input unread because the FIFO was too full
        self.encode_errors = 0
        self.history_requests = 0
        self.history_chunks = 0
        self.history_busy = 0
        self._tx[0] = 0  # a lone delimiter: noise before it cannot spoil HELLO
        self._tx_tail = 1
        self._send_hello(0)
        self._send_profile()
        self._flush()

    # -- the tick --------------------------------------------------------------------
    def service(self, now_ms: int) -> None:
        """Read and act on the host's frames, then send heartbeat, live data, history."""
        self._flush()
        self._receive(now_ms)
        if not self._flush():
            return  # the stream is full: everything else waits for the next tick
        if now_ms >= self._next_beat_ms:
            core = self.core
            struct.pack_into(
                "<BIBII",
                self._payload,
                0,
                HEARTBEAT,
                now_ms & _U32,
                core.state,
                core.sample_seq if core.sample_seq >= 0 else 0,
                self._latest_event(),
            )
            if self._send(14, False):
                self._next_beat_ms = now_ms + self.heartbeat_ms
        budget = self._live_events(self.live_frames_per_tick)
        caught_up = self._live_samples(budget)
        if caught_up and self._h_count:
            chunks = self.history_chunks_per_tick
            while chunks > 0 and self._h_count and self._history_chunk():
                chunks -= 1

    # -- transmit --------------------------------------------------------------------
    def _flush(self) -> bool:
        """Write what the FIFO holds; True when it is empty."""
        head = self._tx_head
        tail = self._tx_tail
        if head == tail:
            return True
        m = self.stream.write(self._tx, head, tail - head)
        if m:
            self.bytes_out += m
            head += m
        if head >= tail:
            head = 0
            tail = 0
        self._tx_head = head
        self._tx_tail = tail
        return head == tail

    def _tx_free(self) -> int:
        return TX_BYTES - (self._tx_tail - self._tx_head)

    def _queue(self, buf, off: int, n: int) -> bool:
        """Append buf[off:off+n] to the FIFO, whole or not at all."""
        tx = self._tx
        tail = self._tx_tail
        if tail + n > TX_BYTES:
            head = self._tx_head  # move the unsent bytes to the front
            for i in range(tail - head):
                tx[i] = tx[head + i]
            tail -= head
            self._tx_head = 0
            if tail + n > TX_BYTES:
                self._tx_tail = tail
                self.tx_overflows += 1
                return False
        for i in range(n):
            tx[tail + i] = buf[off + i]
        self._tx_tail = tail + n
        return True

    def _emit(self, buf, off: int, n: int, must: bool) -> bool:
        """Send the frame buf[off:off+n]. Straight to the stream when nothing is queued;
        what the stream does not take goes to the FIFO. must=False (live data, history,
        heartbeats): nothing is sent unless the stream takes at least the first byte now."""
        if self._tx_head == self._tx_tail:
            m = self.stream.write(buf, off, n)
            if not m:
                m = 0
            if m == 0 and not must:
                self.tx_blocked += 1
                return False
            self.bytes_out += m
            if m < n:
                self._queue(buf, off + m, n - m)  # the FIFO is empty: it fits
            self.frames_out += 1
            return True
        if not must:
            self.tx_blocked += 1
            return False
        if self._queue(buf, off, n):
            self.frames_out += 1
            return True
        return False

    def _send(self, payload_len: int, must: bool) -> bool:
        """Frame self._payload[0:payload_len] and send it."""
        n = frame_into(self._frame, 0, self._payload, payload_len)
        return self._emit(self._frame, 0, n, must)

    def _latest_event(self) -> int:
        latest = self.core.events.latest_seq()
        return latest if latest >= 0 else 0

    def _send_hello(self, nonce: int) -> None:
        info = self.core.hello_info()
        p = self._payload
        p[0] = HELLO
        p[1] = PROTOCOL_MAJOR
        p[2] = PROTOCOL_MINOR
        o = 3
        for key in ("firmware_version", "board_id", "board_kind"):
            o = self._put_text(o, info[key])
        if o < 0 or o + 4 > _MAX_PAYLOAD:
            self.encode_errors += 1
            return
        struct.pack_into("<I", p, o, info["profile_hash"] & _U32)
        o = self._put_text(o + 4, info["cal_id"])
        o = self._put_text(o, info["cal_date"])
        if o < 0 or o + 21 > _MAX_PAYLOAD:
            self.encode_errors += 1
            return
        struct.pack_into(
            "<IBIHHHI",
            p,
            o,
            info["boot_count"] & _U32,
            info["reset_cause"],
            info["latest_sample_seq"] & _U32,
            info["history_capacity"],
            info["telemetry_period_ms"],
            nonce,
            self._latest_event(),
        )
        self._send(o + 21, True)

    def _put_text(self, o: int, text: str) -> int:
        """str8 at payload[o:]; the offset after it, or -1 when it does not fit."""
        if o < 0:
            return -1
        raw = text.encode("utf-8")
        n = len(raw)
        if n > 255 or o + 1 + n > _MAX_PAYLOAD:
            return -1
        p = self._payload
        p[o] = n
        for i in range(n):
            p[o + 1 + i] = raw[i]
        return o + 1 + n

    def _send_profile(self) -> None:
        pr = self.core.profile
        struct.pack_into(
            "<BffffffIB",
            self._payload,
            0,
            PROFILE,
            pr.max_working_mpa,
            pr.trip_mpa,
            pr.max_ramp_up_mpa_s,
            pr.max_ramp_down_mpa_s,
            pr.max_hold_s,
            pr.margin_mpa,
            pr.host_lost_timeout_ms,
            pr.host_lost_policy,
        )
        self._send(30, True)

    # -- receive ---------------------------------------------------------------------
    def _receive(self, now_ms: int) -> None:
        decoder = self.decoder
        rx = self._rx
        reads = 0
        while True:
            if self._rx_pos >= self._rx_len:
                if reads >= _RX_READS_PER_TICK:
                    return
                reads += 1
                n = self.stream.read_into(rx)
                if not n:
                    return
                self.bytes_in += n
                self._rx_pos = 0
                self._rx_len = n
            if self._tx_free() < _RESERVE:
                self.rx_stalls += 1  # the host is not reading: leave its input for later
                return
            self._rx_pos = decoder.push(rx, self._rx_pos, self._rx_len)
            if decoder.payload_len:
                self._dispatch(now_ms, decoder.buf, decoder.payload_len)

    def _dispatch(self, now_ms: int, p, n: int) -> None:
        msg_id = p[0]
        core = self.core
        if is_command(msg_id):
            seq = command_seq(p, n)
            if seq < 0:
                self.bad_frames += 1  # not even a cmd_seq: nothing to answer
                return
            core.host_heartbeat_seen(now_ms)
            verdict = self.receiver.accept(seq)
            if verdict == EXECUTE:
                self._execute(seq, p, n)
            elif verdict == DUPLICATE:
                buf, off, length = self.receiver.reply_frame(seq)
                if length:
                    self._emit(buf, off, length, True)
            # DROP: ahead of the next expected (go-back-N), too old, or not synced
            return
        if msg_id == HEARTBEAT_HOST:
            if n >= 5:
                core.host_heartbeat_seen(now_ms)
                self.host_heartbeats += 1
            else:
                self.bad_frames += 1
        elif msg_id == HELLO_HOST:
            self._hello_host(now_ms, p, n)
        else:
            self.unknown_frames += 1

    def _hello_host(self, now_ms: int, p, n: int) -> None:
        if n < 3:
            self.bad_frames += 1
            return
        # The major decides, as isoproto.version.host_version_problem does (inlined: the
        # module and its words cost the board 2 KB).
        if p[1] != PROTOCOL_MAJOR:
            # Another major: answer who we are (the host words the refusal) and take no
            # commands until a host of our major handshakes.
            self.version_refusals += 1
            self.receiver.synced = False
            nonce = p[3] | (p[4] << 8) if n >= 5 else 0
        else:
            if n < 7:
                self.bad_frames += 1
                return
            nonce = p[3] | (p[4] << 8)
            self.receiver.reset(p[5] | (p[6] << 8))
            self._h_count = 0  # the previous session's backfill is nobody's now
            self.handshakes += 1
        self.core.host_heartbeat_seen(now_ms)
        self._send_hello(nonce)
        self._send_profile()

    # -- commands --------------------------------------------------------------------
    def _execute(self, seq: int, p, n: int) -> None:
        msg_id = p[0]
        values = decode_command(p, n)
        if values is None:
            result = _MALFORMED
        elif not values:
            result = _UNKNOWN
        else:
            try:
                result = self._call(msg_id, values)
            except (TypeError, ValueError, OverflowError, IndexError, KeyError):
                result = _MALFORMED
        payload = self._payload
        if result[0] == _RESULT_OK:
            struct.pack_into("<BHBI", payload, 0, ACK, seq, _RESULT_OK, result[2] & _U32)
            length = 8
        else:
            problems = result[3]
            count = len(problems)
            if count > _MAX_PROBLEMS:
                count = _MAX_PROBLEMS
            struct.pack_into("<BHBBHB", payload, 0, NAK, seq, result[0], result[1], result[2] & 0xFFFF, count)
            for i in range(count):
                payload[8 + 2 * i] = problems[i][0] & 0xFF
                payload[9 + 2 * i] = problems[i][1] & 0xFF
            length = 8 + 2 * count
        n = frame_into(self._frame, 0, payload, length)
        self.receiver.executed(seq, self._frame, n)
        self._emit(self._frame, 0, n, True)
        if msg_id == SET_PROFILE and result[0] == _RESULT_OK:
            self._send_profile()

    def _call(self, msg_id: int, v: tuple) -> tuple:
        core = self.core
        if msg_id == START:
            return core.start(v[0])
        if msg_id == PAUSE:
            return core.pause()
        if msg_id == RESUME:
            return core.resume()
        if msg_id == ABORT:
            return core.abort()
        if msg_id == RESET_FAULTS:
            return core.reset_faults()
        if msg_id == LOAD_RECIPE_CHUNK:
            return core.load_recipe_chunk(v[0], v[1], v[2], v[3])
        if msg_id == SET_PROFILE:
            return core.set_device_profile(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
        if msg_id == SET_CALIBRATION:
            return core.set_calibration(v[0], v[1], v[2], v[3], v[4], v[5])
        return self._request_history(v[0], v[1], v[2])  # REQUEST_HISTORY

    # -- history ---------------------------------------------------------------------
    def _ring(self, stream: int):
        return self.core.history if stream == STREAM_SAMPLES else self.core.events

    def _request_history(self, stream: int, from_seq: int, count: int) -> tuple:
        if stream != STREAM_SAMPLES and stream != STREAM_EVENTS:
            return (_RESULT_REJECTED, _R_VALUE_OUT_OF_RANGE, 0, ())
        if self._h_count >= HISTORY_SLOTS:
            self.history_busy += 1
            return (_RESULT_REJECTED, _R_BUSY, 0, ())
        ring = self._ring(stream)
        latest = ring.latest_seq()
        start = from_seq
        left = 0
        if latest >= 0:
            if seq32_diff(from_seq, ring.oldest_seq()) < 0:
                start = ring.oldest_seq()  # what is older is gone: oldest_seq tells the host
            end = (from_seq + count) & _U32
            newest_end = (latest + 1) & _U32
            if seq32_diff(end, newest_end) > 0:
                end = newest_end
            left = seq32_diff(end, start)
            if left < 0:
                left = 0
        slot = (self._h_first + self._h_count) % HISTORY_SLOTS
        self._h_stream[slot] = stream
        self._h_next[slot] = start
        self._h_left[slot] = left
        self._h_count += 1
        self.history_requests += 1
        return (_RESULT_OK, _R_NONE, 0, ())

    def _history_chunk(self) -> bool:
        """Send the next chunk of the oldest open reply; False when the stream is full."""
        i = self._h_first
        stream = self._h_stream[i]
        ring = self._ring(stream)
        seq = self._h_next[i]
        left = self._h_left[i]
        oldest = ring.oldest_seq()
        if oldest < 0:
            oldest = 0
        elif left:
            behind = seq32_diff(oldest, seq)
            if behind > 0:  # overwritten while the reply was going out: skipped
                skip = behind if behind < left else left
                seq = (seq + skip) & _U32
                left -= skip
        per = _SAMPLES_PER_CHUNK if stream == STREAM_SAMPLES else _EVENTS_PER_CHUNK
        k = left if left < per else per
        size = ring.record_size
        payload = self._payload
        o = _HISTORY_HEADER
        if k:
            slot = ring.slot_of(seq)
            per_page = ring.per_page
            capacity = ring.capacity
            pages = ring.pages
            for _ in range(k):
                page = pages[slot // per_page]
                at = (slot % per_page) * size
                for j in range(size):
                    payload[o + j] = page[at + j]
                o += size
                slot += 1
                if slot >= capacity:
                    slot = 0
        last = k == left
        struct.pack_into("<BBIIBBB", payload, 0, HISTORY, stream, seq, oldest, 1 if last else 0, k, size)
        if not self._send(o, False):
            return False
        self.history_chunks += 1
        if last:
            self._h_first = (i + 1) % HISTORY_SLOTS
            self._h_count -= 1
        else:
            self._h_next[i] = (seq + k) & _U32
            self._h_left[i] = left - k
        return True

    # -- live data -------------------------------------------------------------------
    def _send_record(self, msg_id: int, ring, seq: int) -> bool:
        """TELEMETRY or EVENT: the msg id and ring's stored body of record seq."""
        slot = ring.slot_of(seq)
        per_page = ring.per_page
        size = ring.record_size
        page = ring.pages[slot // per_page]
        at = (slot % per_page) * size
        p = self._payload
        p[0] = msg_id
        for j in range(size):
            p[1 + j] = page[at + j]
        return self._send(1 + size, False)

    def _live_events(self, budget: int) -> int:
        """Send new events; the budget left."""
        self._budget = budget
        self._next_event = self._live(EVENT, self.core.events, self._next_event, self.max_behind_events)
        self.events_sent += budget - self._budget
        self.skipped_events += self._skipped
        return self._budget

    def _live_samples(self, budget: int) -> bool:
        """Send new samples; True when every sample held has gone out."""
        ring = self.core.history
        self._budget = budget
        nxt = self._live(TELEMETRY, ring, self._next_sample, self.max_behind_samples)
        self._next_sample = nxt
        self.samples_sent += budget - self._budget
        self.skipped_samples += self._skipped
        latest = ring.latest_seq()
        return latest < 0 or seq32_diff(latest, nxt) < 0

    def _live(self, msg_id: int, ring, nxt: int, max_behind: int) -> int:
        """Send ring's records from nxt on, at most self._budget of them (which it lowers);
        the next cursor. A cursor more than max_behind behind jumps to the newest record
        (self._skipped: how many it jumped over). Returns ints only: nothing allocated."""
        self._skipped = 0
        latest = ring.latest_seq()
        if latest < 0:
            return nxt
        waiting = seq32_diff(latest, nxt) + 1
        if waiting <= 0:
            return nxt
        if waiting > max_behind or ring.slot_of(nxt) < 0:
            self._skipped = waiting - 1
            nxt = latest
        budget = self._budget
        while budget > 0 and seq32_diff(latest, nxt) >= 0:
            if not self._send_record(msg_id, ring, nxt):
                break
            nxt = (nxt + 1) & _U32
            budget -= 1
        self._budget = budget
        return nxt

    # -- for tests and the virtual board's summary -------------------------------------
    def counters(self) -> dict:
        d = self.decoder
        r = self.receiver
        return {
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "frames_in": d.frames_ok,
            "frames_out": self.frames_out,
            "crc_errors": d.crc_errors,
            "cobs_errors": d.cobs_errors,
            "oversize_drops": d.oversize_drops,
            "bad_frames": self.bad_frames,
            "unknown_frames": self.unknown_frames,
            "handshakes": self.handshakes,
            "version_refusals": self.version_refusals,
            "host_heartbeats": self.host_heartbeats,
            "commands_executed": r.executed_count,
            "duplicates": r.duplicates,
            "drops": r.ahead_drops + r.stale_drops + r.unsynced_drops,
            "ahead_drops": r.ahead_drops,
            "stale_drops": r.stale_drops,
            "unsynced_drops": r.unsynced_drops,
            "samples_sent": self.samples_sent,
            "events_sent": self.events_sent,
            "skipped_samples": self.skipped_samples,
            "skipped_events": self.skipped_events,
            "tx_blocked": self.tx_blocked,
            "tx_overflows": self.tx_overflows,
            "rx_stalls": self.rx_stalls,
            "encode_errors": self.encode_errors,
            "history_requests": self.history_requests,
            "history_chunks": self.history_chunks,
            "history_busy": self.history_busy,
        }
