# COBS (Consistent Overhead Byte Stuffing, Cheshire & Baker 1999): removes every 0x00 from
# a block of data at a cost of one byte per block of up to 253 bytes, so 0x00 can delimit
# frames. isopress frames hold at most 252 bytes (payload + CRC), so a valid frame has no
# code byte 0xFF; the decoders reject 0xFF as a structure error.
#
# The *_into functions work in caller-supplied buffers and allocate nothing (the board's
# paths); encode()/decode() return new bytes (the host's paths).

from isoproto.errors import FrameError

MAX_BLOCK = 253  # the most data bytes one COBS encoding may hold here (no 0xFF code)


def encoded_size(n: int) -> int:
    """Bytes COBS produces for n data bytes (n <= MAX_BLOCK)."""
    return n + 1


def encode_into(src: bytes | bytearray | memoryview, n: int, dst: bytearray, off: int) -> int:
    """COBS-encode src[0:n] into dst[off:]; returns the bytes written (n + 1)."""
    if n > MAX_BLOCK:
        raise FrameError("COBS block of %d bytes is over %d" % (n, MAX_BLOCK))
    if off + n + 1 > len(dst):
        raise FrameError("COBS output buffer too small: %d bytes needed" % (n + 1))
    code_at = off
    code = 1
    o = off + 1
    i = 0
    while i < n:
        b = src[i]
        if b == 0:
            dst[code_at] = code
            code_at = o
            code = 1
        else:
            dst[o] = b
            code += 1
        o += 1
        i += 1
    dst[code_at] = code
    return o - off


def encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS encoding of data (no trailing delimiter)."""
    if len(data) > MAX_BLOCK:
        raise FrameError("COBS block of %d bytes is over %d" % (len(data), MAX_BLOCK))
    out = bytearray()
    for part in bytes(data).split(b"\0"):
        out.append(len(part) + 1)
        out += part
    return bytes(out)


def decode(block: bytes | bytearray | memoryview) -> bytes:
    """The data of one COBS block (no delimiter inside); FrameError when malformed."""
    out = bytearray(block)
    n = len(out)
    if n == 0:
        raise FrameError("empty COBS block")
    i = 0
    while i < n:
        code = out[i]
        if code in (0, 0xFF):
            raise FrameError("COBS code byte 0x%02x at %d" % (code, i))
        out[i] = 0
        i += code
    if i != n:
        raise FrameError("COBS block ends inside a run (%d bytes, run to %d)" % (n, i))
    return bytes(out[1:])
