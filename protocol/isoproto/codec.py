# Generic encoder and decoder driven by the catalog's wire form (isoproto.wire): the same
# code on board and host.
#
#   encode(msg_id, values) -> payload bytes            values in catalog field order
#   encode_into(buf, offset, msg_id, values) -> n      into a caller's buffer
#   decode(payload[, length]) -> (msg_id, values)      values a tuple in field order
#
# (isoproto.named adds the host-friendly {field: value} form.) Arrays of records are lists
# of tuples; body[] arrays are lists of bytes. Fields a newer minor added decode as None
# when the peer did not send them; bytes after the last known field are ignored. Values
# are checked against their type before anything is written: an EncodeError names the
# message, the field and why, and leaves the caller's buffer untouched. Both runtimes
# accept and refuse the same values (MicroPython's struct would silently wrap an
# out-of-range integer). The hot messages also have hand-written paths (isoproto.samples),
# checked against this codec by tests.

import struct

from isoproto import wire
from isoproto.errors import DecodeError, EncodeError, UnknownMessageError

_MAX_PAYLOAD = 250  # framing.MAX_PAYLOAD (not imported: the codec does not need framing)
_F32_OVERFLOW = 3.4028235677973366e38  # FLT_MAX + half an ulp: rounds to infinity

# wire code -> (size, lowest, highest, type name); highest None marks f32
_SCALARS = {
    "B": (1, 0, 0xFF, "u8"),
    "H": (2, 0, 0xFFFF, "u16"),
    "I": (4, 0, 0xFFFFFFFF, "u32"),
    "b": (1, -0x80, 0x7F, "i8"),
    "h": (2, -0x8000, 0x7FFF, "i16"),
    "i": (4, -0x80000000, 0x7FFFFFFF, "i32"),
    "f": (4, 0, None, "f32"),
}

# plan op kinds; every op: (kind, minor, first field index, ...)
_RUN = 0  # consecutive scalars: (kind, minor, first, stop, fmt, size)
_STR = 1  # str8: (kind, minor, index)
_ARRAY = 2  # fixed records: (kind, minor, index, fmt, record size)
_BODIES = 3  # body[]: (kind, minor, index)

_plans = {}  # msg_id -> (field count, plan), built on first use


def _compile(spec: str) -> tuple:
    plan = []
    minor = 0
    index = 0
    i = 0
    n = len(spec)
    while i < n:
        c = spec[i]
        if c == "|":
            minor += 1
            i += 1
        elif c in _SCALARS:
            first = index
            size = 0
            j = i
            while j < n and spec[j] in _SCALARS:
                size += _SCALARS[spec[j]][0]
                j += 1
                index += 1
            plan.append((_RUN, minor, first, index, "<" + spec[i:j], size))
            i = j
        else:
            if c == "s":
                plan.append((_STR, minor, index))
            elif c == "Y":
                plan.append((_BODIES, minor, index))
            else:
                fmt = wire.RECORD_FORMATS[c]
                plan.append((_ARRAY, minor, index, fmt, struct.calcsize(fmt)))
            index += 1
            i += 1
    return index, plan


def _plan(msg_id: int) -> tuple:
    got = _plans.get(msg_id)
    if got is None:
        spec = wire.SPECS.get(msg_id)
        if spec is None:
            raise UnknownMessageError(msg_id)
        got = _compile(spec)
        _plans[msg_id] = got
    return got


def field_count(msg_id: int) -> int:
    """How many fields msg_id has (UnknownMessageError for an id not in the catalog)."""
    return _plan(msg_id)[0]


def _where(msg_id: int, k: int = -1) -> str:
    # "TELEMETRY.pump_duty" for error messages. The names live in the catalog, which the
    # board does not keep loaded: it is imported here only on the way to an error.
    try:
        from isoproto import catalog

        entry = catalog.message(msg_id)
        if entry is not None:
            return entry[1] if k < 0 else entry[1] + "." + entry[4][k][0]
    except (ImportError, MemoryError):
        pass
    return "0x%02x" % msg_id if k < 0 else "0x%02x field %d" % (msg_id, k)


# -- encoding -------------------------------------------------------------------------


def _not_finite(x: float) -> bool:
    return x != x or x in (float("inf"), float("-inf"))  # noqa: PLR0124 (NaN test without math)


def _scalar_problem(code: str, value: object) -> str:
    """Why value does not fit the scalar type code, or "" when it does."""
    spec = _SCALARS[code]
    if spec[2] is None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "%r is not a number" % (value,)
        # NaN and the infinities pack as themselves; finite values must round to a finite f32
        if -_F32_OVERFLOW < value < _F32_OVERFLOW or _not_finite(value):
            return ""
        return "%r does not fit f32 (|value| < 3.4e38)" % (value,)
    if not isinstance(value, int) or isinstance(value, bool):
        return "%r is not an integer" % (value,)
    if value < spec[1] or value > spec[2]:
        return "%d is out of range for %s (%d..%d)" % (value, spec[3], spec[1], spec[2])
    return ""


def _check_items(what: str, items: object) -> int:
    if not isinstance(items, (tuple, list)):
        raise EncodeError("%s: needs a list, got %r" % (what, items))
    if len(items) > 255:
        raise EncodeError("%s: %d items, at most 255" % (what, len(items)))
    return len(items)


def _check(msg_id: int, values: tuple | list) -> tuple:
    """Check every value; returns (ops to write, payload size)."""
    nfields, plan = _plan(msg_id)
    if not isinstance(values, (tuple, list)):
        raise EncodeError("%s: values must be a tuple or list in catalog order" % _where(msg_id))
    nvalues = len(values)
    if nvalues > nfields:
        raise EncodeError("%s: %d values for %d fields" % (_where(msg_id), nvalues, nfields))
    while nvalues and values[nvalues - 1] is None:
        nvalues -= 1  # trailing fields left out (allowed for a newer minor's fields)
    size = 1
    nops = 0
    for op in plan:
        kind = op[0]
        first = op[2]
        if first >= nvalues:
            if op[1] == 0:
                raise EncodeError("%s: missing" % _where(msg_id, first))
            break
        if kind == _RUN:
            if op[3] > nvalues:
                raise EncodeError("%s: missing" % _where(msg_id, nvalues))
            fmt = op[4]
            for k in range(first, op[3]):
                problem = _scalar_problem(fmt[1 + k - first], values[k])
                if problem:  # the names are looked up only now (the catalog, on the board)
                    raise EncodeError("%s: %s" % (_where(msg_id, k), problem))
            size += op[5]
        else:
            value = values[first]
            if kind == _STR:
                if not isinstance(value, str):
                    raise EncodeError("%s: %r is not a string" % (_where(msg_id, first), value))
                n = len(value.encode("utf-8"))
                if n > 255:
                    raise EncodeError("%s: %d bytes of UTF-8, at most 255" % (_where(msg_id, first), n))
                size += 1 + n
            elif kind == _ARRAY:
                what = _where(msg_id, first)
                count = _check_items(what, value)
                fmt = op[3]
                for rec in value:  # type: ignore[attr-defined]
                    if not isinstance(rec, (tuple, list)) or len(rec) != len(fmt) - 1:
                        raise EncodeError("%s: a record needs %d values, got %r" % (what, len(fmt) - 1, rec))
                    for j in range(len(rec)):
                        problem = _scalar_problem(fmt[1 + j], rec[j])
                        if problem:
                            raise EncodeError("%s: record value %d: %s" % (what, j, problem))
                size += 1 + op[4] * count
            else:
                what = _where(msg_id, first)
                count = _check_items(what, value)
                bsize = len(value[0]) if count else 0  # type: ignore[index]
                for body in value:  # type: ignore[attr-defined]
                    if not isinstance(body, (bytes, bytearray, memoryview)) or len(body) != bsize:
                        raise EncodeError("%s: bodies must be bytes, all of one size" % what)
                if bsize > 255 or (count and bsize == 0):
                    raise EncodeError("%s: body size %d, must be 1..255" % (what, bsize))
                size += 2 + bsize * count
        nops += 1
    if size > _MAX_PAYLOAD:
        raise EncodeError("%s: payload of %d bytes, at most %d" % (_where(msg_id), size, _MAX_PAYLOAD))
    return nops, size


def encode_into(buf: bytearray, offset: int, msg_id: int, values: tuple | list) -> int:
    """Write msg_id and its body into buf[offset:]; returns the payload length."""
    nops, size = _check(msg_id, values)
    if offset < 0 or offset + size > len(buf):
        raise EncodeError("%s: buffer too small (%d bytes needed at %d)" % (_where(msg_id), size, offset))
    plan = _plan(msg_id)[1]
    buf[offset] = msg_id
    off = offset + 1
    for op in plan[:nops]:
        kind = op[0]
        if kind == _RUN:
            struct.pack_into(op[4], buf, off, *values[op[2] : op[3]])
            off += op[5]
        elif kind == _STR:
            raw = values[op[2]].encode("utf-8")
            buf[off] = len(raw)
            buf[off + 1 : off + 1 + len(raw)] = raw
            off += 1 + len(raw)
        elif kind == _ARRAY:
            items = values[op[2]]
            buf[off] = len(items)
            off += 1
            for rec in items:
                struct.pack_into(op[3], buf, off, *rec)
                off += op[4]
        else:
            items = values[op[2]]
            bsize = len(items[0]) if items else 0
            buf[off] = len(items)
            buf[off + 1] = bsize
            off += 2
            for body in items:
                buf[off : off + bsize] = body
                off += bsize
    return off - offset


def encode(msg_id: int, values: tuple | list) -> bytes:
    """The payload (msg id + body) for values in catalog order."""
    size = _check(msg_id, values)[1]
    buf = bytearray(size)
    encode_into(buf, 0, msg_id, values)
    return bytes(buf)


# -- decoding -------------------------------------------------------------------------


def _short(msg_id: int, k: int, need: int, have: int) -> DecodeError:
    return DecodeError("%s: payload ends at byte %d, needs %d" % (_where(msg_id, k), have, need))


def decode(payload: bytes | bytearray | memoryview, length: int = -1) -> tuple:
    """(msg_id, values) of payload[0:length] (length -1: all of it)."""
    end = len(payload) if length < 0 else length
    if end < 1 or end > len(payload):
        raise DecodeError("empty payload")
    msg_id = payload[0]
    nfields, plan = _plan(msg_id)
    values = []
    off = 1
    for op in plan:
        kind = op[0]
        first = op[2]
        if off >= end and op[1] > 0:
            break  # the peer's minor predates these fields: absent
        if kind == _RUN:
            if off + op[5] > end:
                raise _short(msg_id, first, off + op[5], end)
            values.extend(struct.unpack_from(op[4], payload, off))
            off += op[5]
        elif kind == _STR:
            if off >= end or off + 1 + payload[off] > end:
                raise _short(msg_id, first, off + 1 + (payload[off] if off < end else 0), end)
            n = payload[off]
            try:
                values.append(bytes(payload[off + 1 : off + 1 + n]).decode("utf-8"))
            except ValueError:  # UnicodeError on both runtimes
                raise DecodeError("%s: not valid UTF-8" % _where(msg_id, first))
            off += 1 + n
        elif kind == _ARRAY:
            if off >= end or off + 1 + payload[off] * op[4] > end:
                raise _short(msg_id, first, off + 1 + (payload[off] * op[4] if off < end else 0), end)
            items = []
            n = payload[off]
            off += 1
            for _ in range(n):
                items.append(struct.unpack_from(op[3], payload, off))
                off += op[4]
            values.append(items)
        else:
            if off + 2 > end:
                raise _short(msg_id, first, off + 2, end)
            n = payload[off]
            bsize = payload[off + 1]
            off += 2
            if n and not bsize:
                raise DecodeError("%s: %d bodies of size 0" % (_where(msg_id, first), n))
            if off + n * bsize > end:
                raise _short(msg_id, first, off + n * bsize, end)
            items = []
            for _ in range(n):
                items.append(bytes(payload[off : off + bsize]))
                off += bsize
            values.append(items)
    while len(values) < nfields:
        values.append(None)
    return msg_id, tuple(values)
