# The board's serial link (isofw.link) against a host built from isoproto's framing and
# codec, over an in-memory byte stream, with the firmware core on the virtual board's
# plant. CPython and MicroPython.

import gc
import sys

from board import SimBoard, config_with, read_config
from isofw.app import boot
from isofw.core import Inputs
from isofw.link import Link, decode_command
from isofw.recipe import hold, ramp, recipe_id
from isoproto import codec, codes, framing
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
    TELEMETRY,
)
from isoproto.samples import unpack_event, unpack_sample

_MICROPYTHON = sys.implementation.name == "micropython"
CYCLE = [ramp(50.0, 2.0), hold(5.0), ramp(0.0, 1.0)]
PROFILE_VALUES = (400.0, 420.0, 2.0, 1.0, 7200.0, 10.0, 10000, codes.HOST_LOST_DEPRESSURISE)


class MemStream:
    """The board's byte stream: what the host wrote, what the board wrote. Preallocated
    and copied byte by byte, so that the stream itself allocates nothing (the link's
    allocation test measures service() with it). room limits what write() takes per
    call (None: everything), like a full USB or UART buffer."""

    def __init__(self, size=32768):
        self.inbuf = bytearray(size)
        self.in_pos = 0
        self.in_len = 0
        self.out = bytearray(size)
        self.out_len = 0
        self.room = None

    def feed(self, data):
        if self.in_pos == self.in_len:
            self.in_pos = 0
            self.in_len = 0
        n = self.in_len
        for i in range(len(data)):
            self.inbuf[n + i] = data[i]
        self.in_len = n + len(data)

    def read_into(self, buf):
        n = self.in_len - self.in_pos
        n = min(n, len(buf))
        pos = self.in_pos
        src = self.inbuf
        for i in range(n):
            buf[i] = src[pos + i]
        self.in_pos = pos + n
        return n

    def write(self, buf, off, n):
        if self.room is not None and n > self.room:
            n = self.room
        out = self.out
        at = self.out_len
        for i in range(n):
            out[at + i] = buf[off + i]
        self.out_len = at + n
        return n

    def take_output(self):
        data = bytes(self.out[: self.out_len])
        self.out_len = 0
        return data


class Host:
    """The host's side: frames out with isoproto.framing, frames in split and decoded."""

    def __init__(self, stream):
        self.stream = stream
        self.decoder = framing.FrameDecoder()
        self.pending = b""
        self.seq = 0

    def send_raw(self, data):
        self.stream.feed(data)

    def send(self, msg_id, values):
        self.send_raw(framing.frame(codec.encode(msg_id, values)))

    def command(self, msg_id, *args):
        seq = self.seq
        self.send(msg_id, (seq,) + args)
        self.seq = (seq + 1) & 0xFFFF
        return seq

    def handshake(self, rig, nonce=0x1234, next_seq=0):
        self.seq = next_seq
        self.send(HELLO_HOST, (1, 0, nonce, next_seq))
        rig.tick()
        return self.take()

    def frames(self):
        """Whole frames (with their delimiter) the board wrote since the last call."""
        data = self.pending + self.stream.take_output()
        parts = data.split(b"\0")
        self.pending = parts.pop()
        return [p + b"\0" for p in parts if p]

    def take(self):
        """[(msg_id, values, frame bytes)] of every frame the board wrote since last time."""
        out = []
        for raw in self.frames():
            payloads = self.decoder.feed(raw)
            assert len(payloads) == 1, raw
            msg_id, values = codec.decode(payloads[0])
            out.append((msg_id, values, raw))
        return out


class Rig:
    """Firmware core on the virtual board's plant, the link on a MemStream; tick() is one
    turn of isofw.app.run's loop (read, step, write, link.service)."""

    def __init__(self, config_text=None, **link_options):
        self.board = SimBoard(config_text or read_config(), 1e6, 1, 0.0, False)
        self.core = boot(self.board)
        self.stream = MemStream()
        self.link = Link(self.core, self.stream, **link_options)
        self.host = Host(self.stream)
        self.inputs = Inputs()
        self.now_ms = 0
        self.period_ms = self.core.control_period_ms
        self.board.arm_overpressure_trip(self.core.trip_counts)
        self.board.start_clock(self.period_ms)

    def step(self):
        b = self.board
        core = self.core
        b.read_inputs(self.inputs)
        core.step(self.now_ms, self.inputs)
        b.write_outputs(core.pump_duty, core.vent_duty, core.dump_closed)

    def advance(self):
        self.board.wait_next_tick()
        self.now_ms += self.period_ms

    def tick(self, n=1):
        for _ in range(n):
            self.step()
            self.link.service(self.now_ms)
            self.advance()


def _of(messages, msg_id):
    return [m for m in messages if m[0] == msg_id]


def _replies(messages):
    return [m for m in messages if m[0] == ACK or m[0] == NAK]


def _load_and_start(rig, segments=CYCLE):
    host = rig.host
    rid = recipe_id(segments)
    host.command(LOAD_RECIPE_CHUNK, rid, len(segments), 0, list(segments))
    rig.tick()
    host.command(START, rid)
    rig.tick()
    return host.take()  # everything the board sent meanwhile


# -- session ------------------------------------------------------------------------


def test_attach_writes_a_delimiter_then_hello_and_profile_unsolicited():
    rig = Rig()
    data = bytes(rig.stream.out[:4])
    assert data[0] == 0  # a lone 0x00 first: line noise before it ends there
    assert data[1] != 0
    messages = rig.host.take()
    assert [m[0] for m in messages] == [HELLO, PROFILE]
    hello = messages[0][1]
    info = rig.core.hello_info()
    assert hello[0] == 1 and hello[1] == 0  # protocol 1.0
    assert hello[2] == info["firmware_version"] and hello[3] == info["board_id"] == "sim-0001"
    assert hello[4] == "sim" and hello[5] == info["profile_hash"]
    assert hello[6] == info["cal_id"] and hello[7] == info["cal_date"]
    assert hello[8] == info["boot_count"] and hello[9] == info["reset_cause"]
    assert hello[11] == info["history_capacity"] and hello[12] == info["telemetry_period_ms"]
    assert hello[13] == 0  # session_nonce 0: unsolicited
    assert hello[14] == rig.core.events.latest_seq()
    assert tuple(messages[1][1]) == rig.core.profile.values()


def test_commands_before_hello_host_are_dropped():
    rig = Rig()
    rig.host.take()
    rig.host.command(LOAD_RECIPE_CHUNK, recipe_id(CYCLE), 3, 0, list(CYCLE))
    rig.tick()
    assert _replies(rig.host.take()) == []
    assert rig.core.recipe.count == 0  # not executed
    c = rig.link.counters()
    assert c["unsynced_drops"] == 1 and c["commands_executed"] == 0


def test_hello_host_answers_hello_and_profile_and_resets_the_command_window():
    rig = Rig()
    host = rig.host
    host.take()
    rig.tick(30)
    messages = host.handshake(rig, nonce=0xBEEF, next_seq=100)
    session = [m for m in messages if m[0] == HELLO or m[0] == PROFILE]
    assert [m[0] for m in session] == [HELLO, PROFILE]
    hello = session[0][1]
    assert hello[13] == 0xBEEF  # the nonce echoed
    assert hello[10] == rig.core.sample_seq  # the newest sample when HELLO went
    assert hello[14] == rig.core.events.latest_seq()
    host.seq = 99  # older than the window: dropped
    host.command(PAUSE)
    rig.tick()
    assert _replies(host.take()) == []
    seq = host.command(PAUSE)  # 100: the next one, executed (refused: nothing runs)
    rig.tick()
    replies = _replies(host.take())
    assert len(replies) == 1 and replies[0][0] == NAK and replies[0][1][0] == seq == 100
    assert replies[0][1][2] == codes.R_BAD_STATE
    # a second handshake moves the window again
    host.handshake(rig, nonce=7, next_seq=5000)
    host.command(RESET_FAULTS)
    rig.tick()
    replies = _replies(host.take())
    assert [(r[0], r[1][0]) for r in replies] == [(ACK, 5000)]
    assert rig.link.counters()["handshakes"] == 2


def test_hello_host_of_another_major_is_answered_but_commands_stay_dropped():
    rig = Rig()
    host = rig.host
    host.take()
    host.send(HELLO_HOST, (2, 0, 0x4242, 0))
    rig.tick()
    messages = host.take()
    assert [m[0] for m in messages if m[0] in (HELLO, PROFILE)] == [HELLO, PROFILE]
    assert _of(messages, HELLO)[0][1][13] == 0x4242
    host.seq = 0
    host.command(RESET_FAULTS)
    rig.tick()
    assert _replies(host.take()) == []
    assert rig.link.counters()["version_refusals"] == 1
    assert rig.link.counters()["unsynced_drops"] == 1


# -- commands -----------------------------------------------------------------------


def test_the_board_computes_recipe_ids_and_profile_hashes_as_the_protocol_does():
    from isoproto import recipe as proto_recipe

    for segments in (CYCLE, [ramp(250.0, 1.0), hold(300.0), ramp(0.0, 0.5)], [hold(1.0)]):
        assert recipe_id(segments) == proto_recipe.recipe_id(segments)
    rig = Rig()
    assert rig.core.profile.profile_hash() == proto_recipe.profile_hash(rig.core.profile.values())
    hello, profile = rig.host.take()
    assert hello[1][5] == proto_recipe.profile_hash(profile[1])  # what a host checks


def test_every_command_verb_is_executed_and_answered_as_the_core_returns_it():
    rig = Rig()
    host = rig.host
    core = rig.core
    host.handshake(rig)
    # SET_PROFILE: ACK with the new profile hash, then PROFILE again
    new_profile = (300.0, 420.0, 2.0, 1.0, 3600.0, 10.0, 20000, codes.HOST_LOST_FINISH)
    seq = host.command(SET_PROFILE, *new_profile)
    rig.tick()
    messages = host.take()
    acks = _of(messages, ACK)
    assert [a[1][0] for a in acks] == [seq]
    assert acks[0][1][2] == core.profile.profile_hash()
    profiles = _of(messages, PROFILE)
    assert len(profiles) == 1 and tuple(profiles[0][1]) == new_profile
    assert [m[0] for m in messages].index(ACK) < [m[0] for m in messages].index(PROFILE)
    # SET_CALIBRATION
    seq = host.command(SET_CALIBRATION, "cal-7", "2027-01-02", 600.0, 150.0, 0.0, 1.0)
    rig.tick()
    replies = _replies(host.take())
    assert [(r[0], r[1][0]) for r in replies] == [(ACK, seq)]
    assert core.calibration.cal_id == "cal-7"
    # LOAD_RECIPE_CHUNK in two chunks: staged count, then the recipe id
    segments = [ramp(20.0, 2.0), hold(2.0), ramp(0.0, 1.0)]
    rid = recipe_id(segments)
    host.command(LOAD_RECIPE_CHUNK, rid, 3, 0, segments[:2])
    host.command(LOAD_RECIPE_CHUNK, rid, 3, 2, segments[2:])
    rig.tick()
    replies = _replies(host.take())
    assert [(r[0], r[1][2]) for r in replies] == [(ACK, 2), (ACK, rid)]
    assert core.state == codes.ST_READY and core.recipe.recipe_id == rid
    # START: ACK value the run id
    seq = host.command(START, rid)
    rig.tick()
    replies = _replies(host.take())
    assert [(r[0], r[1][0], r[1][2]) for r in replies] == [(ACK, seq, core.run_id)]
    assert core.run_id == 1 and core.state == codes.ST_PRESSURISING
    rig.tick(50)
    host.command(PAUSE)
    rig.tick()
    assert core.state == codes.ST_PAUSED
    host.command(RESUME)
    rig.tick()
    assert core.state == codes.ST_PRESSURISING
    host.command(ABORT)
    rig.tick()
    assert core.state == codes.ST_DEPRESSURISING
    replies = _replies(host.take())
    assert [r[0] for r in replies] == [ACK, ACK, ACK]
    assert rig.link.counters()["commands_executed"] == 8


def test_refusals_are_naked_with_the_cores_reason_detail_and_problems():
    rig = Rig()
    host = rig.host
    core = rig.core
    host.handshake(rig)
    bad = [ramp(450.0, 1.0), ramp(100.0, 9.0)]  # too high; coming down too fast
    rid = recipe_id(bad)
    want = core.load_recipe_chunk(rid, 2, 0, bad)  # what the core says (it changes nothing)
    assert want[0] == codes.RESULT_REJECTED and len(want[3]) == 2
    host.command(LOAD_RECIPE_CHUNK, rid, 2, 0, bad)
    host.command(START, 12345)
    host.command(RESUME)
    rig.tick()
    naks = _replies(host.take())
    assert [n[0] for n in naks] == [NAK, NAK, NAK]
    first = naks[0][1]
    assert (first[1], first[2], first[3]) == (want[0], want[1], want[2])
    assert [tuple(p) for p in first[4]] == [tuple(p) for p in want[3]]
    assert naks[1][1][2] == codes.R_NO_RECIPE
    assert naks[2][1][2] == codes.R_BAD_STATE and naks[2][1][3] == codes.ST_IDLE
    assert core.recipe.count == 0 and core.state == codes.ST_IDLE


def test_a_duplicate_gets_the_identical_reply_bytes_and_is_not_executed_again():
    rig = Rig()
    host = rig.host
    core = rig.core
    host.handshake(rig)
    replies = _replies(_load_and_start(rig))
    start_reply = replies[1]
    assert start_reply[0] == ACK and core.run_id == 1
    events_before = core.events.next_seq
    start_frame = framing.frame(codec.encode(START, (1, recipe_id(CYCLE))))
    host.send_raw(start_frame)  # the host did not see the ACK: sends it again
    host.send_raw(start_frame)
    rig.tick()
    again = _replies(host.take())
    assert [r[2] for r in again] == [start_reply[2], start_reply[2]]  # byte for byte
    assert core.run_id == 1  # not run twice
    assert core.events.next_seq == events_before
    c = rig.link.counters()
    assert c["duplicates"] == 2 and c["commands_executed"] == 2


def test_a_command_ahead_of_the_next_is_dropped_go_back_n():
    rig = Rig()
    host = rig.host
    host.handshake(rig, next_seq=10)
    host.send(RESET_FAULTS, (11,))  # 10 was lost on the way
    rig.tick()
    assert _replies(host.take()) == []
    host.send(RESET_FAULTS, (10,))
    host.send(RESET_FAULTS, (11,))
    rig.tick()
    assert [(r[0], r[1][0]) for r in _replies(host.take())] == [(ACK, 10), (ACK, 11)]
    assert rig.link.counters()["ahead_drops"] == 1


def test_malformed_and_unknown_commands_are_naked_and_still_sequenced():
    rig = Rig()
    host = rig.host
    host.handshake(rig)
    host.send_raw(framing.frame(bytes([LOAD_RECIPE_CHUNK, 0, 0, 1, 2])))  # cut short
    host.send_raw(framing.frame(bytes([0x55, 1, 0, 9, 9])))  # a command id this board lacks
    host.send_raw(framing.frame(bytes([SET_CALIBRATION, 2, 0, 3, 0xFF, 0xFE, 0xFD])))  # bad UTF-8
    host.send_raw(framing.frame(bytes([0x55, 1, 0, 9, 9])))  # retransmitted: same NAK
    host.send(RESET_FAULTS, (3,))  # the window moved on: 3 is next
    rig.tick()
    replies = _replies(host.take())
    got = [(r[0], r[1][0], r[1][1], r[1][2]) for r in replies]
    assert got == [
        (NAK, 0, codes.RESULT_ERROR, codes.R_MALFORMED),
        (NAK, 1, codes.RESULT_ERROR, codes.R_UNKNOWN_COMMAND),
        (NAK, 2, codes.RESULT_ERROR, codes.R_MALFORMED),
        (NAK, 1, codes.RESULT_ERROR, codes.R_UNKNOWN_COMMAND),
        (ACK, 3, codes.RESULT_OK, 0),
    ]
    assert replies[1][2] == replies[3][2]


def test_the_links_command_decoder_agrees_with_the_codec_on_every_command():
    commands = [
        (LOAD_RECIPE_CHUNK, (7, 0xDEADBEEF, 20, 18, [(1, 250.5, 1.25, 0.0), (2, 0.0, 0.0, 300.0)])),
        (LOAD_RECIPE_CHUNK, (8, 1, 1, 0, [])),
        (START, (9, 0x12345678)),
        (PAUSE, (10,)),
        (RESUME, (11,)),
        (ABORT, (12,)),
        (RESET_FAULTS, (13,)),
        (SET_PROFILE, (14, 400.0, 420.0, 2.0, 1.0, 7200.0, 10.0, 10000, 1)),
        (SET_CALIBRATION, (15, "cal-\u00e9", "2026-11-25", 600.0, 150.0, -0.5, 1.01)),
        (REQUEST_HISTORY, (16, 1, 0xFFFFFFF0, 500)),
    ]
    for msg_id, values in commands:
        payload = codec.encode(msg_id, values)
        want = codec.decode(payload)[1][1:]
        got = decode_command(payload, len(payload))
        assert got, (msg_id, got)  # not None (malformed), not () (unknown)
        if want:  # (the four commands without arguments decode as (None,))
            assert len(got) == len(want), (msg_id, got)
        for k in range(len(want)):
            a = got[k]
            b = want[k]
            if isinstance(b, list):
                assert [tuple(x) for x in a] == [tuple(x) for x in b], msg_id
            else:
                assert a == b, (msg_id, a, b)
        # a newer minor's trailing bytes are ignored, like the codec does
        longer = payload + b"\x01\x02"
        assert decode_command(longer, len(longer)) == got
        # every truncation the codec refuses is refused, and only those
        for n in range(1, len(payload)):
            try:
                codec.decode(payload, n)
                codec_ok = True
            except Exception:
                codec_ok = False
            assert (decode_command(payload, n) is not None) == codec_ok, (msg_id, n)
    bad_utf8 = bytes([SET_CALIBRATION, 1, 0, 2, 0xC3, 0x28, 0]) + bytes(16)
    assert decode_command(bad_utf8, len(bad_utf8)) is None
    assert decode_command(bytes([0x55, 1, 0]), 3) == ()  # unknown: () not None


def test_non_command_frames_that_do_not_decode_or_are_unknown_are_counted_and_ignored():
    rig = Rig()
    host = rig.host
    host.handshake(rig)
    host.send_raw(framing.frame(bytes([HEARTBEAT_HOST, 1])))  # too short
    host.send_raw(framing.frame(bytes([TELEMETRY]) + bytes(27)))  # board->host id
    host.send_raw(framing.frame(bytes([0x3A, 1, 2])))  # unknown id
    host.send_raw(framing.frame(bytes([HELLO_HOST, 1])))  # too short
    host.send(RESET_FAULTS, (0,))
    rig.tick()
    assert [r[0] for r in _replies(host.take())] == [ACK]
    c = rig.link.counters()
    assert c["bad_frames"] == 2 and c["unknown_frames"] == 2


# -- heartbeats -----------------------------------------------------------------------


def test_the_board_sends_a_heartbeat_every_250_ms_with_the_latest_seqs():
    rig = Rig()
    rig.host.take()
    rig.tick(100)  # one second
    beats = _of(rig.host.take(), HEARTBEAT)
    assert [b[1][0] for b in beats] == [0, 250, 500, 750]
    last = beats[-1][1]
    assert last[1] == codes.ST_IDLE
    assert last[2] == 75  # the sample of that tick (seq = ms / 10) was recorded before it
    assert last[3] == rig.core.events.latest_seq()


def _host_lost_raised(core):
    return any(e[3] == codes.EV_FAULT_RAISED and e[4] == codes.F_HOST_LOST for e in core.events.since(0))


def test_host_heartbeats_keep_the_run_alive_and_their_absence_raises_host_lost():
    text = config_with({"profile": {"host_lost_timeout_ms": 500}})
    rig = Rig(text)
    host = rig.host
    core = rig.core
    host.handshake(rig)
    assert _replies(_load_and_start(rig, [ramp(30.0, 2.0), hold(60.0), ramp(0.0, 1.0)]))[1][0] == ACK
    for i in range(150):  # 1.5 s with a HEARTBEAT_HOST every 100 ms
        if i % 10 == 0:
            host.send(HEARTBEAT_HOST, (i * 10,))
        rig.tick()
    assert not _host_lost_raised(core)
    assert core.state == codes.ST_PRESSURISING
    assert rig.link.counters()["host_heartbeats"] == 15
    rig.tick(35)  # 440 ms of silence since the last one (at i = 140): within the timeout
    assert not _host_lost_raised(core) and core.state == codes.ST_PRESSURISING
    rig.tick(20)
    assert _host_lost_raised(core)
    assert core.state == codes.ST_FAULT  # the profile's policy: depressurise


def test_any_valid_command_counts_as_host_liveness():
    text = config_with({"profile": {"host_lost_timeout_ms": 500}})
    rig = Rig(text)
    host = rig.host
    host.handshake(rig)
    _load_and_start(rig, [ramp(30.0, 2.0), hold(60.0), ramp(0.0, 1.0)])
    for _ in range(10):
        host.command(RESUME)  # refused (not paused), but the host is alive
        rig.tick(40)
    assert not _host_lost_raised(rig.core)
    assert rig.core.state == codes.ST_PRESSURISING


# -- live data ------------------------------------------------------------------------


def test_every_sample_and_event_goes_out_once_with_consecutive_seqs():
    rig = Rig()
    host = rig.host
    messages = host.handshake(rig)
    messages += _load_and_start(rig)
    rig.tick(300)
    messages += host.take()
    seqs = [m[1][0] for m in _of(messages, TELEMETRY)]
    assert seqs == list(range(rig.core.sample_seq + 1))
    events = [m[1] for m in _of(messages, EVENT)]
    assert [e[0] for e in events] == list(range(rig.core.events.next_seq))
    assert events[0][3] == codes.EV_BOOT
    assert codes.EV_RUN_STARTED in [e[3] for e in events]
    # each frame is the ring's record, byte for byte
    last = _of(messages, TELEMETRY)[-1][1]
    assert tuple(last) == tuple(rig.core.history.sample(last[0]))
    assert rig.link.counters()["skipped_samples"] == 0
    pressures = [m[1][2] for m in _of(messages, TELEMETRY)]
    assert pressures[-1] > pressures[0] + 2.0  # the plant is pumping up


def test_a_full_stream_never_blocks_the_loop_and_a_cursor_far_behind_jumps_to_the_newest():
    rig = Rig()
    host = rig.host
    link = rig.link
    host.handshake(rig)
    rig.tick(10)
    before = [m[1][0] for m in _of(host.take(), TELEMETRY)]
    rig.stream.room = 0  # the host stopped reading: the port takes nothing
    rig.tick(50)  # half a second: within the bound, the cursor waits
    assert host.take() == []
    assert link.counters()["skipped_samples"] == 0 and link.counters()["tx_blocked"] >= 50
    rig.stream.room = None
    rig.tick()
    seqs = [m[1][0] for m in _of(host.take(), TELEMETRY)]
    # catching up at 8 frames a tick from where it stopped: nothing skipped
    assert seqs == list(range(before[-1] + 1, before[-1] + 9))
    rig.tick(10)
    got = [m[1][0] for m in _of(host.take(), TELEMETRY)]
    assert got[0] == seqs[-1] + 1 and got[-1] == rig.core.sample_seq  # caught up
    assert got == list(range(got[0], got[-1] + 1))
    rig.stream.room = 0
    rig.tick(250)  # 2.5 s: more than a second's worth behind
    rig.stream.room = None
    rig.tick(30)
    resumed = [m[1][0] for m in _of(host.take(), TELEMETRY)]
    assert resumed[0] > got[-1] + 100  # the cursor jumped over what it could not send
    assert resumed == list(range(resumed[0], resumed[-1] + 1))
    assert resumed[-1] == rig.core.sample_seq
    c = link.counters()
    assert c["skipped_samples"] == resumed[0] - got[-1] - 1  # every skipped record counted
    assert c["samples_sent"] + c["skipped_samples"] == rig.core.sample_seq + 1


def test_partial_writes_finish_each_frame_before_the_next_one_starts():
    rig = Rig()
    host = rig.host
    host.handshake(rig)
    _load_and_start(rig)
    sent_before = rig.link.samples_sent
    rig.stream.room = 7  # a slow port: 7 bytes per write call
    rig.tick(200)
    rig.stream.room = None
    rig.tick(30)
    messages = host.take()
    assert host.decoder.crc_errors == 0 and host.decoder.cobs_errors == 0
    seqs = [m[1][0] for m in _of(messages, TELEMETRY)]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    c = rig.link.counters()
    assert len(seqs) == c["samples_sent"] - sent_before
    assert c["skipped_samples"] > 0  # 14 bytes a tick cannot carry 32-byte samples at 100 Hz
    assert c["samples_sent"] + c["skipped_samples"] == rig.core.sample_seq + 1
    assert _of(messages, HEARTBEAT)  # heartbeats still got through


def test_replies_wait_in_the_fifo_while_the_port_is_full_and_none_is_lost():
    rig = Rig()
    host = rig.host
    host.handshake(rig)
    rig.stream.room = 0
    for _ in range(6):
        host.command(RESET_FAULTS)
    rig.tick(5)
    rig.stream.room = None
    rig.tick()
    replies = _replies(host.take())
    assert [r[1][0] for r in replies] == [0, 1, 2, 3, 4, 5]
    # HELLO_HOSTs (two frames each) fill the FIFO: the input waits unread, then is answered
    rig.stream.room = 0
    for nonce in range(20):
        host.send(HELLO_HOST, (1, 0, nonce, 6))
    rig.tick(3)
    assert rig.link.counters()["rx_stalls"] > 0
    rig.stream.room = None
    rig.tick(20)
    hellos = _of(host.take(), HELLO)
    assert [h[1][13] for h in hellos] == list(range(20))
    assert rig.link.counters()["tx_overflows"] == 0


# -- history --------------------------------------------------------------------------


def _history(messages):
    out = []
    for m in _of(messages, HISTORY):
        stream, first_seq, oldest_seq, last, bodies = m[1]
        out.append((stream, first_seq, oldest_seq, last, bodies))
    return out


def test_request_history_is_acked_then_answered_in_paced_chunks():
    rig = Rig()
    host = rig.host
    core = rig.core
    host.handshake(rig)
    rig.tick(100)
    host.take()
    seq = host.command(REQUEST_HISTORY, 0, 10, 20)
    rig.step()
    rig.link.service(rig.now_ms)
    rig.advance()
    messages = host.take()
    kinds = [m[0] for m in messages if m[0] in (ACK, HISTORY)]
    assert kinds == [ACK, HISTORY]  # the ACK first; one chunk per tick
    assert messages[[m[0] for m in messages].index(ACK)][1][0] == seq
    telemetry_first = [m[0] for m in messages].index(TELEMETRY)
    assert telemetry_first < [m[0] for m in messages].index(HISTORY)  # live data first
    rig.tick(2)
    chunks = _history(messages + host.take())
    assert [(c[1], len(c[4]), c[3]) for c in chunks] == [(10, 8, 0), (18, 8, 0), (26, 4, 1)]
    for c in chunks:
        assert c[0] == 0 and c[2] == 0  # samples; the oldest held is seq 0
        for i, body in enumerate(c[4]):
            assert unpack_sample(body) == core.history.sample(c[1] + i)
    rig.tick(3)
    assert _history(host.take()) == []  # done


def test_history_skips_what_is_no_longer_held_and_nothing_held_gets_one_empty_last_chunk():
    rig = Rig(config_with({"history_samples": 16}))
    host = rig.host
    core = rig.core
    host.handshake(rig)
    rig.tick(40)
    host.take()
    oldest = core.history.oldest_seq()  # the next tick's step moves it on by one
    host.command(REQUEST_HISTORY, 0, 2, 30)  # 2 .. 31: the ring holds oldest+1 .. 31 then
    host.command(REQUEST_HISTORY, 0, 1000, 5)  # none yet
    rig.tick(4)
    chunks = _history(host.take())
    assert [(c[1], len(c[4]), c[3]) for c in chunks] == [(oldest + 1, 31 - oldest, 1), (1000, 0, 1)]
    assert chunks[0][2] == oldest + 1 and chunks[1][2] == oldest + 2  # oldest held as sent
    for i, body in enumerate(chunks[0][4]):
        assert unpack_sample(body)[0] == oldest + 1 + i
    # events: the ring never empties; its records come back as EVENT bodies
    host.command(REQUEST_HISTORY, 1, 0, 100)
    rig.tick(4)
    chunks = _history(host.take())
    assert chunks[0][0] == 1 and chunks[0][1] == 0 and chunks[-1][3] == 1
    bodies = [b for c in chunks for b in c[4]]
    assert len(bodies) == core.events.latest_seq() + 1
    assert unpack_event(bodies[0])[3] == codes.EV_BOOT
    assert tuple(unpack_event(bodies[-1])) == tuple(core.events.event(core.events.latest_seq()))


def test_a_third_open_history_request_is_refused_busy():
    rig = Rig()
    host = rig.host
    host.handshake(rig)
    rig.tick(50)
    host.take()
    host.command(REQUEST_HISTORY, 0, 0, 16)
    host.command(REQUEST_HISTORY, 0, 16, 16)
    host.command(REQUEST_HISTORY, 0, 32, 16)
    host.command(REQUEST_HISTORY, 7, 0, 1)  # no such stream
    rig.tick()
    messages = host.take()
    replies = _replies(messages)
    got = [(r[0], r[1][2] if r[0] == NAK else 0) for r in replies]
    assert got == [(ACK, 0), (ACK, 0), (NAK, codes.R_BUSY), (NAK, codes.R_VALUE_OUT_OF_RANGE)]
    rig.tick(6)
    chunks = _history(messages + host.take())
    assert [(c[1], c[3]) for c in chunks] == [(0, 0), (8, 1), (16, 0), (24, 1)]  # in order
    assert rig.link.counters()["history_busy"] == 1


def test_backfill_waits_while_live_data_is_behind():
    rig = Rig(history_chunks_per_tick=2)
    host = rig.host
    host.handshake(rig)
    rig.tick(30)
    host.take()
    rig.stream.room = 0
    host.command(REQUEST_HISTORY, 0, 0, 40)
    rig.tick(40)  # the ACK waits in the FIFO, live data 40 samples behind
    rig.stream.room = None
    chunks_per_tick = []
    for _ in range(12):
        rig.tick()
        messages = host.take()
        chunks = _history(messages)
        live = [m[1][0] for m in _of(messages, TELEMETRY)]
        if chunks:  # history only goes once live data has caught up, this very tick
            assert live and live[-1] == rig.core.sample_seq, (live, rig.core.sample_seq)
        chunks_per_tick.append(len(chunks))
    assert chunks_per_tick[0] == 0  # 41 samples behind: live first
    # 0..31 were held when the request came (records newer than that are not sent): 4 chunks
    assert sum(chunks_per_tick) == 4 and max(chunks_per_tick) == 2, str(chunks_per_tick)  # paced


# -- damage on the line --------------------------------------------------------------


def test_garbage_and_bit_flipped_frames_between_frames_disturb_nothing():
    rig = Rig()
    host = rig.host
    host.handshake(rig)
    good = [framing.frame(codec.encode(RESET_FAULTS, (s,))) for s in range(6)]
    flipped = bytearray(good[2])
    flipped[3] ^= 0x10
    noise = bytes([0x13, 0x7F, 0xFF, 0x01, 0x42, 0x99, 0x05]) + b"\0"
    host.send_raw(good[0] + noise + bytes(flipped) + good[1] + b"\xff" * 300 + b"\0" + good[2])
    host.send_raw(bytes([0x03, 0x41, 0x07]) + good[3])  # noise without a delimiter: spoils 3
    host.send_raw(good[3] + b"\0\0\0" + good[4])  # the host retransmits 3
    rig.tick()
    replies = _replies(host.take())
    assert [r[1][0] for r in replies] == [0, 1, 2, 3, 4]
    c = rig.link.counters()
    assert c["crc_errors"] + c["cobs_errors"] >= 2 and c["oversize_drops"] == 1
    assert c["commands_executed"] == 5 and c["duplicates"] == 0


# -- allocation -----------------------------------------------------------------------


def _alloc(fn):
    if not _MICROPYTHON:
        fn()
        return 0
    gc.collect()
    before = gc.mem_alloc()  # type: ignore[attr-defined]
    fn()
    return gc.mem_alloc() - before  # type: ignore[attr-defined]


def test_the_per_tick_path_allocates_nothing_under_micropython():
    rig = Rig(history_chunks_per_tick=1)
    host = rig.host
    link = rig.link
    host.handshake(rig)
    _load_and_start(rig)
    rig.tick(30)  # warm: CRC table, codec plans
    host.take()
    beat = framing.frame(codec.encode(HEARTBEAT_HOST, (5,)))
    results = []

    def one_tick(extra=b""):
        rig.step()  # the core allocates its floats here, outside the measure
        if extra:
            host.send_raw(extra)
        now = rig.now_ms
        results.append(_alloc(lambda: link.service(now)))
        rig.advance()

    for _ in range(30):  # telemetry every tick, heartbeats, events of the run
        one_tick()
    one_tick(beat)  # a host heartbeat in
    host.command(REQUEST_HISTORY, 0, 0, 24)
    one_tick()  # the request itself decodes (a command allocates its values)
    for _ in range(3):  # the chunks
        one_tick()
    messages = host.take()
    assert len(_history(messages)) == 3
    assert len(_of(messages, HEARTBEAT)) >= 1
    assert results[:31] == [0] * 31, results
    assert results[32:] == [0, 0, 0], results
    if _MICROPYTHON:
        assert results[31] > 0  # the measure sees allocation: decoding a command allocates
