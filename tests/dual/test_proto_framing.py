# The frame CRC, COBS and the two stream decoders, under CPython and MicroPython.

import random

from isoproto import catalog, cobs, codec, crc, framing
from isoproto.errors import FrameError


def _tele(seq):
    return codec.encode(catalog.TELEMETRY, (seq, seq * 10, 100.5, 101.0, 1000, 0, 0, 3, 1, 0, 1))


def _on_the_wire(payload, stream):
    # COBS without 0xFF codes is canonical: a payload was decoded from a frame with the right
    # CRC exactly when its correct frame (bitwise reference CRC) stands between delimiters.
    assert 1 <= len(payload) <= framing.MAX_PAYLOAD
    c = crc.crc16_bitwise(payload) ^ 0xFFFF  # the frame CRC from the reference implementation
    block = cobs.encode(payload + bytes((c >> 8, c & 0xFF))) + b"\x00"
    at = stream.find(block)
    while at >= 0:
        if at == 0 or stream[at - 1] == 0:
            return True
        at = stream.find(block, at + 1)
    return False


def test_crc_check_value_and_implementations_agree():
    assert crc.crc16(b"123456789") == 0x29B1  # the catalogued check value of CRC-16/CCITT-FALSE
    assert crc.crc16_table(b"123456789") == 0x29B1
    assert crc.crc16_bitwise(b"123456789") == 0x29B1
    random.seed(1)
    for n in (0, 1, 2, 31, 252):
        data = bytes(random.getrandbits(8) for _ in range(n))
        ref = crc.crc16_bitwise(data)
        assert crc.crc16(data) == ref
        assert crc.crc16_table(data) == ref
        buf = bytearray(b"\xaa\xbb" + data + b"\xcc")
        assert crc.crc16(buf, 2, 2 + n) == ref
        assert crc.crc16_table(buf, 2, 2 + n) == ref


def test_the_frame_crc_is_crc16_genibus():
    # poly 0x1021, init 0xFFFF, xorout 0xFFFF: the catalogued check value
    assert crc.frame_crc(b"123456789") == 0xD64E
    assert crc.frame_crc(b"x123456789y", 1, 10) == 0xD64E


def test_a_stray_byte_before_the_delimiter_is_detected():
    # Without the final xor this damage (COBS reads 0x01 as one more 0x00 after the CRC)
    # passed the check for every frame; now each golden-like frame refuses it.
    for seq in range(200):
        frame = framing.frame(_tele(seq))
        for stray in (b"\x01", b"\x01\x01", b"\x02\x00"[:1]):
            damaged = frame[:-1] + stray + b"\x00"
            assert framing.StreamDecoder().feed(damaged) == []
            assert framing.FrameDecoder().feed(damaged) == []


def test_cpython_uses_binascii_crc_hqx_and_micropython_the_table():
    import binascii
    import sys

    if sys.implementation.name == "cpython":
        assert crc.crc16 is not crc.crc16_table
        assert binascii.crc_hqx(b"123456789", 0xFFFF) == crc.crc16_table(b"123456789")
    else:
        assert crc.crc16 is crc.crc16_table


def test_cobs_vectors_from_the_paper():
    # Cheshire & Baker / Wikipedia examples (delimiter not included)
    vectors = [
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    ]
    for data, enc in vectors:
        assert cobs.encode(data) == enc
        assert cobs.decode(enc) == data
        out = bytearray(10)
        n = cobs.encode_into(data, len(data), out, 1)
        assert bytes(out[1 : 1 + n]) == enc


def test_cobs_refuses_malformed_blocks():
    for bad in (b"", b"\x00", b"\x05\x11", b"\x02\x11\x05", b"\xff" + b"\x01" * 254):
        try:
            cobs.decode(bad)
        except FrameError:
            continue
        raise AssertionError("decoded %r" % bad)


def test_frame_sizes_are_documented_ones():
    assert framing.MAX_PAYLOAD == 250
    assert framing.MAX_FRAME == 254
    assert len(framing.frame(b"\x01" * 250)) == 254
    assert len(framing.frame(b"\x00" * 250)) == 254
    assert len(framing.frame(_tele(7))) == 32
    for bad in (b"", b"\x01" * 251):
        try:
            framing.frame(bad)
        except FrameError:
            continue
        raise AssertionError("framed %d bytes" % len(bad))


def test_frame_into_equals_frame_and_leaves_the_rest_of_the_buffer():
    payload = bytearray(framing.MAX_PAYLOAD + 2)
    p = _tele(5)
    payload[: len(p)] = p
    out = bytearray(b"\xee" * 300)
    n = framing.frame_into(out, 3, payload, len(p))
    assert bytes(out[3 : 3 + n]) == framing.frame(p)
    assert out[2] == 0xEE and out[3 + n] == 0xEE


def test_both_decoders_recover_every_frame_after_garbage_truncation_and_flips():
    frames = [framing.frame(_tele(i)) for i in range(6)]
    stream = (
        b"\x01\x02\x03"  # garbage before the first delimiter
        + b"\x00"
        + frames[0]
        + frames[1][:9]  # truncated: merges with frames[2], both lost
        + frames[2]
        + bytes(x ^ (0x10 if i == 12 else 0) for i, x in enumerate(frames[3]))  # bit flip
        + frames[4]
        + b"\x00\x00\x00"  # idle filler
        + frames[5]
    )
    want = [_tele(0), _tele(4), _tele(5)]
    for dec in (framing.FrameDecoder(), framing.StreamDecoder()):
        assert dec.feed(stream) == want
        assert dec.frames_ok == 3
        assert dec.crc_errors + dec.cobs_errors == 3


def test_oversize_garbage_is_dropped_and_the_buffer_stays_bounded():
    junk = bytes(range(1, 256)) * 8  # 2040 bytes, no delimiter
    after = framing.frame(_tele(9))
    for dec in (framing.FrameDecoder(), framing.StreamDecoder()):
        for i in range(0, len(junk), 100):
            dec.feed(junk[i : i + 100])
            assert dec.buffered <= framing.MAX_ENCODED
        assert dec.feed(b"\x00" + after) == [_tele(9)]
        assert dec.oversize_drops == 1


def test_decoders_agree_on_random_streams_split_at_random_points():
    random.seed(7)
    good = [framing.frame(_tele(i)) for i in range(20)]
    for _ in range(60):
        parts = []
        for _ in range(random.randrange(1, 8)):
            r = random.random()
            if r < 0.5:
                parts.append(good[random.randrange(len(good))])
            elif r < 0.8:
                parts.append(bytes(random.getrandbits(8) for _ in range(random.randrange(0, 40))))
            else:
                f = bytearray(good[random.randrange(len(good))])
                f[random.randrange(len(f))] ^= 1 << random.randrange(8)
                parts.append(bytes(f))
        stream = b"".join(parts)
        board = framing.FrameDecoder()
        host = framing.StreamDecoder()
        got_board = []
        got_host = []
        i = 0
        while i < len(stream):
            j = min(len(stream), i + random.randrange(1, 50))
            got_board += board.feed(stream[i:j])
            got_host += host.feed(stream[i:j])
            i = j
        assert got_board == got_host
        assert board.frames_ok == host.frames_ok == len(got_host)
        assert board.crc_errors == host.crc_errors
        assert board.cobs_errors == host.cobs_errors
        assert board.oversize_drops == host.oversize_drops
        for p in got_host:
            assert _on_the_wire(p, stream)


def test_push_consumes_up_to_each_good_frame():
    a = framing.frame(_tele(1))
    b = framing.frame(_tele(2))
    data = a + b
    dec = framing.FrameDecoder()
    i = dec.push(data)
    assert i == len(a)
    assert bytes(dec.buf[: dec.payload_len]) == _tele(1)
    i = dec.push(data, i)
    assert i == len(data)
    assert bytes(dec.buf[: dec.payload_len]) == _tele(2)
    assert dec.push(data, i) == len(data) and dec.payload_len == 0


def test_a_short_fuzz_never_raises_and_never_yields_a_bad_crc():
    # The long fuzz (>= 100 000 inputs) runs under CPython in tests/protocol.
    random.seed(11)
    for _ in range(400):
        n = random.randrange(0, 120)
        data = bytes(random.getrandbits(8) if random.random() < 0.8 else 0 for _ in range(n))
        for dec in (framing.FrameDecoder(), framing.StreamDecoder()):
            for payload in dec.feed(data):
                assert _on_the_wire(payload, data)
            assert dec.buffered <= framing.MAX_ENCODED


def test_stream_decoder_refuses_a_non_bytes_argument_with_its_own_error():
    try:
        framing.StreamDecoder().feed("text")  # type: ignore[arg-type]
    except FrameError:
        return
    raise AssertionError("no FrameError")
