# The hand-written hot paths against the catalog, and the board's allocation budget:
# encoding a telemetry sample into a preallocated buffer allocates nothing. MicroPython
# proves it with gc.mem_alloc(); CPython has no such counter (and boxes every int), so
# there the same code paths run and only their output is checked.

import gc
import struct
import sys

from isoproto import catalog, codec, framing, samples
from isoproto.history import HistoryReply, RecordRing
from isoproto.receiver import EXECUTE, CommandReceiver
from isoproto.writer import FrameWriter

_MICROPYTHON = sys.implementation.name == "micropython"
_TYPES = {"u8": "B", "u16": "H", "u32": "I", "i8": "b", "i16": "h", "i32": "i", "f32": "f"}


def _format_of(msg_id):
    return "<" + "".join(_TYPES[f[1]] for f in catalog.fields(msg_id))


def test_hand_written_formats_match_the_catalog():
    assert _format_of(catalog.TELEMETRY) == samples.SAMPLE_FORMAT
    assert _format_of(catalog.EVENT) == samples.EVENT_FORMAT
    assert struct.calcsize(samples.SAMPLE_FORMAT) == samples.SAMPLE_BODY_SIZE == 27
    assert struct.calcsize(samples.EVENT_FORMAT) == samples.EVENT_BODY_SIZE == 22
    assert samples.TELEMETRY_PAYLOAD_SIZE == 28
    assert framing.frame_size(samples.TELEMETRY_PAYLOAD_SIZE) == 32


def test_fast_paths_give_the_codec_bytes():
    sample = (4000000000, 123456, 250.25, -0.5, 65535, 12, 0x8001, 4, 0x3F, 19, 65535)
    buf = bytearray(40)
    n = samples.pack_telemetry_into(buf, 2, *sample)
    assert bytes(buf[2 : 2 + n]) == codec.encode(catalog.TELEMETRY, sample)
    assert samples.unpack_sample(buf, 3) == sample
    assert samples.telemetry_values(bytes(buf[2 : 2 + n])) == sample
    assert samples.body_seq(buf, 3) == 4000000000
    event = (7, 4000000001, 99, 1, 10, -5, 1.75)
    n = samples.pack_event_payload_into(buf, 0, *event)
    assert bytes(buf[:n]) == codec.encode(catalog.EVENT, event)
    assert samples.unpack_event(buf, 1) == event


def test_frame_writer_frames_equal_the_generic_ones():
    w = FrameWriter()
    sample = (9, 900, 100.5, 101.0, 100, 0, 0, 3, 1, 0, 1)
    n = w.telemetry(*sample)
    assert bytes(w.frame[:n]) == framing.frame(codec.encode(catalog.TELEMETRY, sample))
    body = bytearray(30)
    samples.pack_sample_into(body, 3, *sample)
    n = w.telemetry_from(body, 3)
    assert bytes(w.frame[:n]) == framing.frame(codec.encode(catalog.TELEMETRY, sample))
    event = (1, 9, 900, 3, 4, 2, 100.5)
    n = w.event(*event)
    assert bytes(w.frame[:n]) == framing.frame(codec.encode(catalog.EVENT, event))
    samples.pack_event_into(body, 0, *event)
    n = w.event_from(body, 0)
    assert bytes(w.frame[:n]) == framing.frame(codec.encode(catalog.EVENT, event))
    n = w.heartbeat(5, 1, 9, 1)
    assert bytes(w.frame[:n]) == framing.frame(codec.encode(catalog.HEARTBEAT, (5, 1, 9, 1)))
    n = w.ack(65535, 0, 12)
    assert bytes(w.frame[:n]) == framing.frame(codec.encode(catalog.ACK, (65535, 0, 12)))
    n = w.nak(3, 1, 6, 2, [(6, 2), (7, 5)])
    assert bytes(w.frame[:n]) == framing.frame(codec.encode(catalog.NAK, (3, 1, 6, 2, [(6, 2), (7, 5)])))
    n = w.message(catalog.START, (4, 77))
    assert bytes(w.frame[:n]) == framing.frame(codec.encode(catalog.START, (4, 77)))


def _alloc(fn):
    if not _MICROPYTHON:
        fn()
        return 0
    gc.collect()
    before = gc.mem_alloc()  # type: ignore[attr-defined]
    fn()
    return gc.mem_alloc() - before  # type: ignore[attr-defined]


def test_telemetry_encode_into_a_preallocated_buffer_allocates_nothing():
    w = FrameWriter()
    ring = RecordRing(16, samples.SAMPLE_BODY_SIZE)
    # the floats exist before the measured calls: the caller hands them in, boxed
    pressure = 251.5
    setpoint = 250.0

    def pack_sample():
        samples.pack_sample_into(ring.buf, 0, 123456, 7000, pressure, setpoint, 900, 0, 0, 4, 1, 2, 3)

    def pack_telemetry_frame():
        w.telemetry(123456, 7000, pressure, setpoint, 900, 0, 0, 4, 1, 2, 3)

    def ring_and_frame():
        off = ring.append(77)
        samples.pack_sample_into(ring.buf, off, 77, 7000, pressure, setpoint, 900, 0, 0, 4, 1, 2, 3)
        w.telemetry_from(ring.buf, off)

    def event_frame():
        w.event(5, 77, 7000, 1, 10, 0, pressure)

    problems = ((6, 2), (7, 5))  # the firmware's own preallocated list of problems
    reply = HistoryReply(ring, 0)

    def replies_and_heartbeat():
        w.heartbeat(7000, 4, 123456, 9)
        w.ack(65535, 0, 12)
        w.nak(3, 1, 6, 2, problems)

    def history_chunks():
        reply.start(70, 8)
        while w.history_chunk(reply):
            pass

    pack_telemetry_frame()  # first call builds the CRC table (once, 512 bytes)
    for seq in range(60, 77):
        ring.append(seq)
    for fn in (
        pack_sample,
        pack_telemetry_frame,
        ring_and_frame,
        event_frame,
        replies_and_heartbeat,
        history_chunks,
    ):
        assert _alloc(fn) == 0, fn
    want = framing.frame(codec.encode(catalog.TELEMETRY, (77, 7000, 251.5, 250.0, 900, 0, 0, 4, 1, 2, 3)))
    ring_and_frame()
    assert bytes(w.frame[: len(want)]) == want
    event_frame()
    want = framing.frame(codec.encode(catalog.EVENT, (5, 77, 7000, 1, 10, 0, 251.5)))
    assert bytes(w.frame[: len(want)]) == want


def test_board_command_path_allocates_nothing_per_frame():
    w = FrameWriter()
    dec = framing.FrameDecoder()
    rx = CommandReceiver()
    rx.reset(5)
    frame = framing.frame(codec.encode(catalog.PAUSE, (5,)))
    dec.feed(frame)  # warm up

    def receive_and_ack():
        dec.push(frame)
        assert dec.payload_len == 3
        seq = dec.buf[1] | (dec.buf[2] << 8)
        assert rx.accept(seq) == EXECUTE
        n = w.ack(seq, 0, 0)
        rx.executed(seq, w.frame, n)

    assert _alloc(receive_and_ack) == 0
    assert rx.executed_count == 1 and rx.expected == 6
    buf, off, n = rx.reply_frame(5)
    assert bytes(buf[off : off + n]) == framing.frame(codec.encode(catalog.ACK, (5, 0, 0)))
