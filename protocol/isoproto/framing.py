# Frames on the wire: COBS(payload || crc16) || 0x00.
#
#   payload  = msg_id u8 || body          1 .. MAX_PAYLOAD (250) bytes
#   crc16    = CRC-16 (poly 0x1021, init 0xFFFF, xorout 0xFFFF) of the payload, big-endian
#   COBS     = one code byte per run of non-zero bytes: +1 byte for <= 252 bytes
#   0x00     = the delimiter; it never appears inside a frame
#
# so the largest frame on the wire is 250 + 2 + 1 + 1 = 254 bytes. A receiver that lost
# sync drops bytes up to the next 0x00 and is back in step with the following frame.
# Empty frames (0x00 0x00) are idle filler: a sender may send a lone 0x00 when it opens the
# port or after a pause, so line noise before it cannot spoil the next real frame.
#
# Two decoders with identical results and counters (a test feeds both the same streams):
# FrameDecoder for the board (one preallocated buffer, nothing allocated per byte or per
# frame), StreamDecoder for the host (bytes.split and binascii: about 3x faster on CPython).

from isoproto import cobs
from isoproto.crc import frame_crc
from isoproto.errors import FrameError

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

MAX_PAYLOAD = const(250)  # msg id + body
MAX_ENCODED = const(253)  # COBS of payload + CRC, without the delimiter
MAX_FRAME = const(254)  # on the wire, delimiter included
CRC_SIZE = const(2)
OVERHEAD = const(4)  # CRC 2 + COBS code 1 + delimiter 1 (payloads up to 252 bytes)

_BUF = const(252)  # bytes after the first COBS code byte: payload + CRC, decoded in place


def frame_size(payload_len: int) -> int:
    """Bytes on the wire for a payload of payload_len bytes."""
    return payload_len + OVERHEAD


def _check_payload_len(n: int) -> None:
    if n < 1 or n > MAX_PAYLOAD:
        raise FrameError("payload of %d bytes: must be 1..%d" % (n, MAX_PAYLOAD))


def frame_into(dst: bytearray, off: int, payload: bytearray, n: int) -> int:
    """Frame payload[0:n] into dst[off:]; returns the frame length (n + 4).

    payload must have two spare bytes after n: the CRC is written there (the board's
    payload buffers are MAX_PAYLOAD + 2 long). Allocates nothing.
    """
    _check_payload_len(n)
    if len(payload) < n + CRC_SIZE:
        raise FrameError("payload buffer needs 2 spare bytes after the payload for the CRC")
    crc = frame_crc(payload, 0, n)
    payload[n] = crc >> 8
    payload[n + 1] = crc & 0xFF
    written = cobs.encode_into(payload, n + CRC_SIZE, dst, off)
    end = off + written
    if end >= len(dst):
        raise FrameError("frame buffer too small: %d bytes needed" % (written + 1))
    dst[end] = 0
    return written + 1


def frame(payload: bytes | bytearray | memoryview) -> bytes:
    """The frame for one payload, delimiter included (host side: returns new bytes)."""
    n = len(payload)
    _check_payload_len(n)
    crc = frame_crc(payload)
    return cobs.encode(bytes(payload) + bytes((crc >> 8, crc & 0xFF))) + b"\0"


class FrameDecoder:
    """Board-side stream decoder: one preallocated buffer, no allocation per byte or frame.

    Call push() with received bytes; it consumes up to the end of the next good frame and
    returns where it stopped. When payload_len > 0, buf[0:payload_len] holds that frame's
    payload (valid until the next push). Damaged frames are counted and skipped: crc_errors,
    cobs_errors (bad structure or shorter than msg id + CRC), oversize_drops (more than
    MAX_ENCODED bytes before a delimiter: the rest up to the next 0x00 is discarded).
    push() never raises for any byte content.
    """

    def __init__(self) -> None:
        self.buf = bytearray(_BUF)
        self.payload_len = 0
        self.frames_ok = 0
        self.crc_errors = 0
        self.cobs_errors = 0
        self.oversize_drops = 0
        self._n = -1  # bytes stored after the first code byte; -1: frame not started
        self._code0 = 0
        self._discarding = False

    def reset(self) -> None:
        """Forget a partial frame (e.g. after the port was reopened)."""
        self._n = -1
        self._discarding = False
        self.payload_len = 0

    @property
    def buffered(self) -> int:
        """Bytes of the current partial frame held (never more than MAX_ENCODED)."""
        return self._n + 1

    def push(self, data: bytes | bytearray | memoryview, start: int = 0, end: int = -1) -> int:
        """Consume data[start:end] up to the end of the next good frame; returns the index
        after the last byte consumed (end when no good frame ended)."""
        self.payload_len = 0
        if end < 0:
            end = len(data)
        buf = self.buf
        n = self._n
        discarding = self._discarding
        i = start
        while i < end:
            b = data[i]
            i += 1
            if b == 0:
                if discarding:
                    discarding = False
                elif n >= 0:
                    self._n = -1
                    self._discarding = False
                    if self._finish(n):
                        return i
                n = -1
            elif discarding:
                pass
            elif n < 0:
                self._code0 = b
                n = 0
            elif n < _BUF:
                buf[n] = b
                n += 1
            else:
                self.oversize_drops += 1
                discarding = True
                n = -1
        self._n = n
        self._discarding = discarding
        return i

    def _finish(self, n: int) -> bool:
        # In-place COBS decode: each code byte becomes the 0x00 it stands for.
        buf = self.buf
        q = self._code0 - 1
        while q < n:
            code = buf[q]
            if code == 0xFF:
                break
            buf[q] = 0
            q += code
        if q != n or self._code0 == 0xFF or n < 3:
            self.cobs_errors += 1
            return False
        if frame_crc(buf, 0, n - CRC_SIZE) != (buf[n - 2] << 8) | buf[n - 1]:
            self.crc_errors += 1
            return False
        self.payload_len = n - CRC_SIZE
        self.frames_ok += 1
        return True

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """All good payloads in data, as new bytes (convenience; allocates per frame)."""
        out = []
        i = 0
        end = len(data)
        while i < end:
            i = self.push(data, i, end)
            if self.payload_len:
                out.append(bytes(self.buf[: self.payload_len]))
        return out


class StreamDecoder:
    """Host-side stream decoder: same results and counters as FrameDecoder, faster.

    feed() takes any chunk of bytes and returns the payloads (bytes) of the good frames
    that ended in it. The partial frame kept between calls never exceeds MAX_ENCODED bytes.
    feed() never raises for any byte content; a non-bytes argument is a FrameError.
    """

    def __init__(self) -> None:
        self.frames_ok = 0
        self.crc_errors = 0
        self.cobs_errors = 0
        self.oversize_drops = 0
        self._pending = b""
        self._discarding = False

    def reset(self) -> None:
        """Forget a partial frame (e.g. after the port was reopened)."""
        self._pending = b""
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes of the current partial frame held (never more than MAX_ENCODED)."""
        return len(self._pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FrameError("feed() takes bytes, not %s" % type(data).__name__)
        if self._pending:
            data = self._pending + data
        parts = bytes(data).split(b"\0")
        tail = parts.pop()
        out = []
        for part in parts:
            if self._discarding:
                self._discarding = False
                continue
            n = len(part)
            if n == 0:
                continue
            if n > MAX_ENCODED:
                self.oversize_drops += 1
                continue
            payload = self._decode(part)
            if payload is not None:
                out.append(payload)
        if self._discarding or len(tail) > MAX_ENCODED:
            if not self._discarding:
                self.oversize_drops += 1
                self._discarding = True
            tail = b""
        self._pending = tail
        return out

    def _decode(self, block: bytes) -> bytes | None:
        buf = bytearray(block)
        n = len(buf)
        i = 0
        while i < n:
            code = buf[i]
            if code == 0xFF:
                break
            buf[i] = 0
            i += code
        if i != n or n < 4:
            self.cobs_errors += 1
            return None
        if frame_crc(buf, 1, n - CRC_SIZE) != (buf[n - 2] << 8) | buf[n - 1]:
            self.crc_errors += 1
            return None
        self.frames_ok += 1
        return bytes(buf[1 : n - CRC_SIZE])
