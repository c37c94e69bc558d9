"""Decoder fuzz: at least 100 000 random inputs in `make test`, many more in `make fuzz`.

Random bytes, zero-heavy bytes, valid frames damaged in every way, runs with no
delimiter, all fed to both stream decoders as one long stream in random chunks. The
decoders must never raise, stay bounded, agree with each other, and only ever yield a
payload whose correct frame (reference CRC, canonical COBS) really stands between two
delimiters in the input. Every yielded payload and every raw input also goes through the
catalog decoder, which may only raise DecodeError.
"""

from __future__ import annotations

import contextlib
import os
import random

import pytest

from isoproto import catalog, cobs, codec, crc, framing
from isoproto.errors import DecodeError

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100000"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261125"))


def _frame_pool(rng: random.Random) -> list[bytes]:
    pool = []
    for m in catalog.MESSAGES:
        fields = catalog.fields(m[0])
        for _ in range(4):
            vals = []
            for f in fields:
                t = f[1]
                if t == "f32":
                    vals.append(rng.uniform(-1000, 1000))
                elif t == "str8":
                    vals.append(f"fw-{rng.randrange(1000)}")
                elif t.endswith("[]"):
                    vals.append([])
                else:
                    hi = {"u8": 255, "u16": 65535, "u32": 2**32 - 1}.get(t, 127)
                    vals.append(rng.randrange(hi + 1) if t.startswith("u") else rng.randrange(-100, 100))
            pool.append(framing.frame(codec.encode(m[0], tuple(vals))))
    return pool


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b))]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op == 3:
            b = b[: rng.randrange(len(b) + 1)]
        else:
            b[rng.randrange(len(b) + 1) :] = rng.randbytes(rng.randrange(8))
    return bytes(b)


def _input(rng: random.Random, pool: list[bytes]) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(200))
    if kind == 1:  # zero-heavy: many tiny candidate frames
        return bytes(0 if rng.random() < 0.3 else rng.randrange(1, 256) for _ in range(rng.randrange(60)))
    if kind == 2:  # good frames, some damaged
        parts = [rng.choice(pool) for _ in range(rng.randrange(1, 5))]
        return b"".join(_mutate(rng, p) if rng.random() < 0.5 else p for p in parts)
    if kind == 3:  # oversize: a long run without a delimiter, then a good frame
        return bytes(rng.randrange(1, 256) for _ in range(rng.randrange(250, 600))) + rng.choice(pool)
    if kind == 4:  # a frame's pieces with random bytes spliced in
        f = rng.choice(pool)
        cut = rng.randrange(len(f))
        return f[:cut] + rng.randbytes(rng.randrange(4)) + f[cut:]
    return rng.choice(pool)


def _on_the_wire(payload: bytes, window: bytes, window_is_start: bool) -> bool:
    c = crc.crc16_bitwise(payload) ^ 0xFFFF  # the frame CRC, from the reference implementation
    block = cobs.encode(payload + bytes((c >> 8, c & 0xFF))) + b"\0"
    at = window.find(block)
    while at >= 0:
        if (at == 0 and window_is_start) or (at > 0 and window[at - 1] == 0):
            return True
        at = window.find(block, at + 1)
    return False


def _decode_or_decode_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):  # anything else fails the test
        codec.decode(payload)


@pytest.mark.slow
def test_decoder_fuzz() -> None:
    assert FUZZ_EXAMPLES >= 100_000 or "FUZZ_EXAMPLES" in os.environ
    rng = random.Random(FUZZ_SEED)
    pool = _frame_pool(rng)
    board = framing.FrameDecoder()
    host = framing.StreamDecoder()
    recent = b""  # the stream's last bytes: a frame may have begun in an earlier input
    at_start = True
    yielded = 0
    for _ in range(FUZZ_EXAMPLES):
        data = _input(rng, pool)
        cut = rng.randrange(len(data) + 1)
        got_host = host.feed(data[:cut]) + host.feed(data[cut:])
        got_board = board.feed(data)
        assert got_board == got_host, data.hex()
        assert board.buffered <= framing.MAX_ENCODED and host.buffered <= framing.MAX_ENCODED
        window = recent + data
        for p in got_host:
            assert 1 <= len(p) <= framing.MAX_PAYLOAD
            assert _on_the_wire(p, window, at_start and not recent), (p.hex(), data.hex())
            _decode_or_decode_error(p)
        yielded += len(got_host)
        if data:
            _decode_or_decode_error(data)  # the catalog decoder on raw garbage
        recent = window[-2 * framing.MAX_FRAME :]
        at_start = at_start and not window
    counters = ("frames_ok", "crc_errors", "cobs_errors", "oversize_drops")
    assert [getattr(board, c) for c in counters] == [getattr(host, c) for c in counters]
    # the fuzz really reached every path
    assert yielded > FUZZ_EXAMPLES // 10
    assert host.crc_errors > 100 and host.cobs_errors > 1000 and host.oversize_drops > 100
