"""Property tests (CPython, hypothesis): round trips of every message, refusals of bad
values, and arbitrary damage to frame streams."""

from __future__ import annotations

import binascii
import struct
from typing import Any

from hypothesis import assume, event, given
from hypothesis import strategies as st
from proto_strategies import message, same, scalar

from isoproto import catalog, codec, crc, framing, samples
from isoproto import named as named_form
from isoproto.errors import DecodeError, EncodeError, FrameError
from isoproto.writer import FrameWriter


def _payload_size(msg_id: int, vals: tuple[Any, ...]) -> int:
    size = 1
    for f, v in zip(catalog.fields(msg_id), vals, strict=True):
        t = f[1]
        if t == "str8":
            size += 1 + len(v.encode())
        elif t == "body[]":
            size += 2 + sum(len(b) for b in v)
        elif t.endswith("[]"):
            size += 1 + len(v) * struct.calcsize("<" + catalog.wire_spec(catalog.record(t[:-2]) or ()))
        else:
            size += struct.calcsize("<" + catalog.wire_spec((f,)))
    return size


@given(message())
def test_every_message_round_trips_or_is_refused_only_for_its_size(msg: tuple[int, tuple[Any, ...]]) -> None:
    msg_id, vals = msg
    size = _payload_size(msg_id, vals)
    if size > framing.MAX_PAYLOAD:
        try:
            codec.encode(msg_id, vals)
        except EncodeError as exc:
            assert f"payload of {size} bytes" in str(exc)
            return
        raise AssertionError("an oversize payload was encoded")
    payload = codec.encode(msg_id, vals)
    assert len(payload) == size
    got_id, got = codec.decode(payload)
    assert got_id == msg_id and same(got, vals)
    # through a frame and both stream decoders, byte-exact
    frame = framing.frame(payload)
    assert len(frame) == size + framing.OVERHEAD <= framing.MAX_FRAME
    assert framing.StreamDecoder().feed(frame) == [payload]
    assert framing.FrameDecoder().feed(frame) == [payload]
    # the named form, and encode_into at an offset
    name, named = named_form.decode_dict(payload)
    assert codec.encode(msg_id, named_form.values_from_dict(name, named)) == payload
    buf = bytearray(300)
    n = codec.encode_into(buf, 7, msg_id, vals)
    assert bytes(buf[7 : 7 + n]) == payload


@given(
    st.sampled_from([m[0] for m in catalog.MESSAGES]).flatmap(
        lambda msg_id: st.tuples(st.just(msg_id), st.integers(0, len(catalog.fields(msg_id)) - 1))
    ),
    st.one_of(
        st.integers(-(2**40), 2**40), st.floats(), st.text(max_size=3), st.none(), st.binary(max_size=3)
    ),
)
def test_any_wrong_value_is_an_encode_error_naming_the_field(where: tuple[int, int], bad: Any) -> None:
    msg_id, k = where
    f = catalog.fields(msg_id)[k]
    vals = [_valid(x) for x in catalog.fields(msg_id)]
    vals[k] = bad
    try:
        codec.encode(msg_id, tuple(vals))
    except EncodeError as exc:
        assert f[0] in str(exc) or "payload of" in str(exc)
        return
    # accepted: then it was a valid value of that type after all
    assert _fits(f[1], bad)


def _valid(f: tuple[Any, ...]) -> Any:
    t = f[1]
    if t == "str8":
        return "x"
    if t.endswith("[]"):
        return []
    return 1


def _fits(ftype: str, v: Any) -> bool:
    if ftype == "str8":
        return isinstance(v, str) and len(v.encode()) <= 255
    if ftype.endswith("[]"):
        return isinstance(v, (list, tuple)) and len(v) == 0
    if ftype == "f32":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    lo, hi = {"u8": (0, 255), "u16": (0, 65535), "u32": (0, 2**32 - 1), "i8": (-128, 127),
              "i16": (-(2**15), 2**15 - 1), "i32": (-(2**31), 2**31 - 1)}[ftype]  # fmt: skip
    return isinstance(v, int) and lo <= v <= hi


@given(st.tuples(*(scalar(f[1]) for f in catalog.fields(catalog.TELEMETRY))))
def test_fast_telemetry_paths_equal_the_catalog_codec(sample: tuple[Any, ...]) -> None:
    payload = codec.encode(catalog.TELEMETRY, sample)
    buf = bytearray(samples.TELEMETRY_PAYLOAD_SIZE)
    samples.pack_telemetry_into(buf, 0, *sample)
    assert bytes(buf) == payload
    assert same(samples.telemetry_values(payload), sample)
    w = FrameWriter()
    n = w.telemetry(*sample)
    assert bytes(w.frame[:n]) == framing.frame(payload)
    assert n == 32


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_crc_implementations_agree(data: bytes, init: int) -> None:
    ref = crc.crc16_bitwise(data, init)
    assert crc.crc16_table(data, 0, -1, init) == ref
    assert crc.crc16(data, 0, -1, init) == ref
    assert binascii.crc_hqx(data, init) == ref


# -- damaged streams -------------------------------------------------------------------------

_OPS = st.one_of(
    st.just(("keep",)),
    st.just(("keep",)),
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(1, 40)),
    st.tuples(st.just("drop"), st.integers(0, 10_000)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=30)),
    st.tuples(st.just("oversize"), st.integers(256, 700)),
)


def _damage(frame: bytes, op: tuple[Any, ...]) -> tuple[bytes, bool]:
    """The bytes to send in place of frame, and whether frame itself went out untouched."""
    kind = op[0]
    if kind == "keep":
        return frame, True
    if kind == "flip":
        b = bytearray(frame)
        b[op[1] % len(b)] ^= 1 << op[2]
        return bytes(b), False
    if kind == "truncate":
        return frame[: max(0, len(frame) - op[1])], False
    if kind == "drop":
        i = op[1] % len(frame)
        return frame[:i] + frame[i + 1 :], False
    if kind == "insert":
        i = op[1] % (len(frame) + 1)
        if i == len(frame) or (i == 0 and op[2] == 0):
            return frame[:i] + bytes([op[2]]) + frame[i:], op[2] == 0
        return frame[:i] + bytes([op[2]]) + frame[i:], False
    if kind == "garbage":  # after the frame, before the next one
        return frame + op[1], True
    return bytes([0x41]) * op[1] + frame, False  # a run of bytes with no delimiter


@given(
    st.lists(message(), min_size=3, max_size=12),
    st.data(),
)
def test_damaged_streams_never_yield_a_wrong_message_and_recover_every_intact_frame(
    msgs: list[tuple[int, tuple[Any, ...]]], data: st.DataObject
) -> None:
    payloads: list[bytes] = []
    for msg_id, vals in msgs:
        try:
            p = codec.encode(msg_id, vals)
        except EncodeError:
            continue
        if p not in payloads:
            payloads.append(p)
    assume(payloads)
    stream = bytearray()
    intact: list[int] = []
    for i, p in enumerate(payloads):
        frame = framing.frame(p)
        sent, untouched = _damage(frame, data.draw(_OPS, label=f"op {i}"))
        start = len(stream)
        stream += sent
        if untouched and sent.startswith(frame) and (start == 0 or stream[start - 1] == 0):
            intact.append(i)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts"))
    board = framing.FrameDecoder()
    host = framing.StreamDecoder()
    got_board: list[bytes] = []
    got_host: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        chunk = bytes(stream[prev:cut])
        got_board += board.feed(chunk)
        got_host += host.feed(chunk)
        assert board.buffered <= framing.MAX_ENCODED and host.buffered <= framing.MAX_ENCODED
        prev = cut
    assert got_board == got_host
    # no wrong message: everything decoded was sent, in order
    indices = []
    for p in got_host:
        if p in payloads:
            indices.append(payloads.index(p))
            continue
        # CRC-16 let a damaged frame through: the design allows that with probability
        # ~2^-16 per damaged frame (the `make fuzz` profile finds such cases, e.g. one byte
        # inserted just before the CRC). It is still no wrong message if the catalog
        # refuses it (the host drops it) or reads the values of the frame it came from (a
        # byte after the last field is what a newer minor sends, and is ignored).
        event("CRC-16 collision")
        try:
            msg = codec.decode(p)
        except DecodeError:
            continue
        same_as = [i for i, q in enumerate(payloads) if same(codec.decode(q), msg)]
        assert same_as, f"a message that was never sent was decoded: {p.hex()}"
        indices.append(same_as[0])
    assert indices == sorted(set(indices))
    event(f"damaged frames: {len(payloads) - len(intact)}")
    event(f"intact frames decoded: {len(intact)}")
    # every intact frame after the damage is recovered
    for i in intact:
        assert i in indices, f"intact frame {i} lost"


@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_any_bytes_are_decoded_without_raising(data: bytes, cuts: list[int]) -> None:
    board = framing.FrameDecoder()
    host = framing.StreamDecoder()
    prev = 0
    out_b: list[bytes] = []
    out_h: list[bytes] = []
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        out_b += board.feed(data[prev:cut])
        out_h += host.feed(data[prev:cut])
        prev = cut
    assert out_b == out_h
    assert (board.frames_ok, board.crc_errors, board.cobs_errors, board.oversize_drops) == (
        host.frames_ok,
        host.crc_errors,
        host.cobs_errors,
        host.oversize_drops,
    )


def test_frame_refuses_payloads_outside_1_to_250_bytes() -> None:
    for n in (0, 251, 1000):
        try:
            framing.frame(b"\x01" * n)
        except FrameError:
            continue
        raise AssertionError(n)
