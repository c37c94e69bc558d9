# Generic encoder and decoder driven by the catalog: the same code on board and host.
#
#   encode(msg_id, values) -> payload bytes            values in catalog field order
#   encode_into(buf, offset, msg_id, values) -> n      into a caller's buffer
#   decode(payload[, length]) -> (msg_id, values)      values a tuple in field order
#   encode_dict(name, fields) / decode_dict(payload)   the host-friendly named form
#
# Arrays of records are lists of tuples (or of dicts in the named form); body[] arrays are
# lists of bytes. Fields a newer minor added decode as None when the peer did not send
# them; bytes after the last known field are ignored. Values are checked against their
# type before anything is written: an EncodeError names the message, the field and why,
# and leaves the caller's buffer untouched. Both runtimes accept and refuse the same
# values (MicroPython's struct would silently wrap an out-of-range integer).
#
# The hot messages have hand-written paths in isoproto.samples; tests check them against
# this codec.

import struct

from isoproto import catalog
from isoproto.errors import DecodeError, EncodeError, UnknownMessageError

_MAX_PAYLOAD = 250  # framing.MAX_PAYLOAD (not imported: the codec does not need framing)
_F32_OVERFLOW = 3.4028235677973366e38  # FLT_MAX + half an ulp: rounds to infinity

# type -> (struct char, size, lowest, highest); highest None marks f32
_SCALARS = {
    "u8": ("B", 1, 0, 0xFF),
    "u16": ("H", 2, 0, 0xFFFF),
    "u32": ("I", 4, 0, 0xFFFFFFFF),
    "i8": ("b", 1, -0x80, 0x7F),
    "i16": ("h", 2, -0x8000, 0x7FFF),
    "i32": ("i", 4, -0x80000000, 0x7FFFFFFF),
    "f32": ("f", 4, 0, None),
}

# plan op kinds
_RUN = 0  # consecutive scalars: (kind, since, first, stop, fmt, size)
_STR = 1  # str8: (kind, since, index)
_ARRAY = 2  # fixed records: (kind, since, index, fmt, size, record fields)
_BODIES = 3  # body[]: (kind, since, index)

_plans = {}  # msg_id -> (entry, plan), built on first use (keeps the board's RAM for used ones)


def _scalar_format(fields: tuple, what: str) -> tuple:
    fmt = "<"
    size = 0
    for f in fields:
        spec = _SCALARS.get(f[1])
        if spec is None:
            raise EncodeError("%s.%s: records hold scalars only, not %s" % (what, f[0], f[1]))
        fmt += spec[0]
        size += spec[1]
    return fmt, size


def _compile(fields: tuple, what: str) -> list:
    plan = []
    i = 0
    n = len(fields)
    while i < n:
        name, ftype, _unit, _doc, since = fields[i]
        if ftype in _SCALARS:
            j = i
            while j < n and fields[j][1] in _SCALARS and fields[j][4] == since:
                j += 1
            fmt, size = _scalar_format(fields[i:j], what)
            plan.append((_RUN, since, i, j, fmt, size))
            i = j
            continue
        if ftype == "str8":
            plan.append((_STR, since, i))
        elif ftype == "body[]":
            plan.append((_BODIES, since, i))
        elif ftype.endswith("[]"):
            rec = catalog.record(ftype[:-2])
            if rec is None:
                raise EncodeError("%s.%s: unknown record type %s" % (what, name, ftype))
            fmt, size = _scalar_format(rec, what + "." + name)
            plan.append((_ARRAY, since, i, fmt, size, rec))
        else:
            raise EncodeError("%s.%s: unknown type %s" % (what, name, ftype))
        i += 1
    return plan


def _plan(msg_id: int) -> tuple:
    got = _plans.get(msg_id)
    if got is None:
        entry = catalog.message(msg_id)
        if entry is None:
            raise UnknownMessageError(msg_id)
        got = (entry, _compile(entry[4], entry[1]))
        _plans[msg_id] = got
    return got


def fields(msg_id: int) -> tuple:
    """The catalog's field tuples of msg_id (UnknownMessageError if it has none)."""
    return _plan(msg_id)[0][4]


# -- encoding -------------------------------------------------------------------------


def _not_finite(x: float) -> bool:
    return x != x or x in (float("inf"), float("-inf"))  # noqa: PLR0124 (NaN test without math)


def _check_scalar(what: str, ftype: str, value: object) -> None:
    spec = _SCALARS[ftype]
    if spec[3] is None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise EncodeError("%s: %r is not a number" % (what, value))
        # NaN and the infinities pack as themselves; finite values must round to a finite f32
        if -_F32_OVERFLOW < value < _F32_OVERFLOW or _not_finite(value):
            return
        raise EncodeError("%s: %r does not fit f32 (|value| < 3.4e38)" % (what, value))
    if not isinstance(value, int) or isinstance(value, bool):
        raise EncodeError("%s: %r is not an integer" % (what, value))
    if value < spec[2] or value > spec[3]:
        raise EncodeError("%s: %d is out of range for %s (%d..%d)" % (what, value, ftype, spec[2], spec[3]))


def _check_record(what: str, rec_fields: tuple, record: object) -> None:
    if not isinstance(record, (tuple, list)) or len(record) != len(rec_fields):
        raise EncodeError("%s: a record needs %d values, got %r" % (what, len(rec_fields), record))
    for k in range(len(rec_fields)):
        _check_scalar(what + "." + rec_fields[k][0], rec_fields[k][1], record[k])


def _check_count(what: str, items: object) -> None:
    if not isinstance(items, (tuple, list)):
        raise EncodeError("%s: needs a list, got %r" % (what, items))
    if len(items) > 255:
        raise EncodeError("%s: %d items, at most 255" % (what, len(items)))


def _present_ops(entry: tuple, plan: list, values: tuple | list) -> tuple:
    """The plan ops whose fields are given; checks every value; returns (ops, body size)."""
    name = entry[1]
    flds = entry[4]
    if not isinstance(values, (tuple, list)):
        raise EncodeError("%s: values must be a tuple or list in catalog order" % name)
    nvalues = len(values)
    while nvalues and values[nvalues - 1] is None and flds[nvalues - 1][4] > 0:
        nvalues -= 1  # trailing optional fields left out
    if nvalues > len(flds):
        raise EncodeError("%s: %d values for %d fields" % (name, nvalues, len(flds)))
    size = 0
    count = 0
    for op in plan:
        first = op[2]
        if first >= nvalues:
            if op[1] == 0:
                raise EncodeError("%s.%s: missing (required since 1.0)" % (name, flds[first][0]))
            break
        kind = op[0]
        if kind == _RUN:
            if op[3] > nvalues:
                raise EncodeError("%s.%s: missing" % (name, flds[nvalues][0]))
            for k in range(first, op[3]):
                _check_scalar(name + "." + flds[k][0], flds[k][1], values[k])
            size += op[5]
        else:
            what = name + "." + flds[first][0]
            value = values[first]
            if kind == _STR:
                if not isinstance(value, str):
                    raise EncodeError("%s: %r is not a string" % (what, value))
                n = len(value.encode("utf-8"))
                if n > 255:
                    raise EncodeError("%s: %d bytes of UTF-8, at most 255" % (what, n))
                size += 1 + n
            elif kind == _ARRAY:
                _check_count(what, value)
                for rec in value:
                    _check_record(what, op[5], rec)
                size += 1 + op[4] * len(value)
            else:
                _check_count(what, value)
                bsize = len(value[0]) if value else 0
                for body in value:
                    if not isinstance(body, (bytes, bytearray, memoryview)) or len(body) != bsize:
                        raise EncodeError("%s: bodies must be bytes, all of one size" % what)
                if bsize > 255 or (value and bsize == 0):
                    raise EncodeError("%s: body size %d, must be 1..255" % (what, bsize))
                size += 2 + bsize * len(value)
        count += 1
    if size + 1 > _MAX_PAYLOAD:
        raise EncodeError("%s: payload of %d bytes, at most %d" % (name, size + 1, _MAX_PAYLOAD))
    return count, size


def encode_into(buf: bytearray, offset: int, msg_id: int, values: tuple | list) -> int:
    """Write msg_id and its body into buf[offset:]; returns the payload length."""
    entry, plan = _plan(msg_id)
    nops, size = _present_ops(entry, plan, values)
    if offset < 0 or offset + 1 + size > len(buf):
        raise EncodeError("%s: buffer too small (%d bytes needed at %d)" % (entry[1], size + 1, offset))
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
    entry, plan = _plan(msg_id)
    _nops, size = _present_ops(entry, plan, values)
    buf = bytearray(size + 1)
    encode_into(buf, 0, msg_id, values)
    return bytes(buf)


# -- decoding -------------------------------------------------------------------------


def _short(name: str, fname: str, need: int, have: int) -> DecodeError:
    return DecodeError("%s.%s: payload ends at byte %d, needs %d" % (name, fname, have, need))


def decode(payload: bytes | bytearray | memoryview, length: int = -1) -> tuple:
    """(msg_id, values) of payload[0:length] (length -1: all of it)."""
    end = len(payload) if length < 0 else length
    if end < 1 or end > len(payload):
        raise DecodeError("empty payload")
    msg_id = payload[0]
    entry, plan = _plan(msg_id)
    name = entry[1]
    flds = entry[4]
    values = []
    off = 1
    for op in plan:
        kind = op[0]
        first = op[2]
        if off >= end and op[1] > 0:
            break  # the peer's minor predates these fields: absent
        if kind == _RUN:
            if off + op[5] > end:
                raise _short(name, flds[first][0], off + op[5], end)
            values.extend(struct.unpack_from(op[4], payload, off))
            off += op[5]
        elif kind == _STR:
            if off >= end or off + 1 + payload[off] > end:
                raise _short(name, flds[first][0], off + 1 + (payload[off] if off < end else 0), end)
            n = payload[off]
            try:
                values.append(bytes(payload[off + 1 : off + 1 + n]).decode("utf-8"))
            except ValueError:  # UnicodeError on both runtimes
                raise DecodeError("%s.%s: not valid UTF-8" % (name, flds[first][0]))
            off += 1 + n
        elif kind == _ARRAY:
            if off >= end or off + 1 + payload[off] * op[4] > end:
                need = off + 1 + (payload[off] * op[4] if off < end else 0)
                raise _short(name, flds[first][0], need, end)
            items = []
            n = payload[off]
            off += 1
            for _ in range(n):
                items.append(struct.unpack_from(op[3], payload, off))
                off += op[4]
            values.append(items)
        else:
            if off + 2 > end:
                raise _short(name, flds[first][0], off + 2, end)
            n = payload[off]
            bsize = payload[off + 1]
            off += 2
            if n and not bsize:
                raise DecodeError("%s.%s: %d bodies of size 0" % (name, flds[first][0], n))
            if off + n * bsize > end:
                raise _short(name, flds[first][0], off + n * bsize, end)
            items = []
            for _ in range(n):
                items.append(bytes(payload[off : off + bsize]))
                off += bsize
            values.append(items)
    while len(values) < len(flds):
        values.append(None)
    return msg_id, tuple(values)


# -- the named form (host side; works on the board too, allocating freely) -------------------


def _body_fields(msg_id: int, values: tuple | list) -> tuple | None:
    # HISTORY's bodies are TELEMETRY bodies (stream 0) or EVENT bodies (stream 1)
    if msg_id != catalog.HISTORY:
        return None
    if values[0] == catalog.STREAM_SAMPLES:
        return fields(catalog.TELEMETRY)
    if values[0] == catalog.STREAM_EVENTS:
        return fields(catalog.EVENT)
    return None


def decode_dict(payload: bytes | bytearray | memoryview, length: int = -1) -> tuple:
    """(message name, {field: value}); records as dicts, HISTORY bodies as dicts."""
    msg_id, values = decode(payload, length)
    entry = _plan(msg_id)[0]
    flds = entry[4]
    out = {}
    for k in range(len(flds)):
        fname, ftype = flds[k][0], flds[k][1]
        value = values[k]
        if value is not None and ftype.endswith("[]"):
            if ftype == "body[]":
                body_fields = _body_fields(msg_id, values)
                if body_fields is not None:
                    fmt, size = _scalar_format(body_fields, entry[1])
                    for b in value:
                        if len(b) < size:
                            raise DecodeError("HISTORY.records: body of %d bytes, needs %d" % (len(b), size))
                    value = [_named(body_fields, struct.unpack_from(fmt, b, 0)) for b in value]
            else:
                value = [_named(_record_fields(ftype), rec) for rec in value]
        out[fname] = value
    return entry[1], out


def _named(rec_fields: tuple, rec: tuple | list) -> dict:
    d = {}
    for k in range(len(rec_fields)):
        d[rec_fields[k][0]] = rec[k]
    return d


def _record_fields(ftype: str) -> tuple:
    rec = catalog.record(ftype[:-2])
    if rec is None:
        raise EncodeError("unknown record type %s" % ftype)
    return rec


def _positional(what: str, rec_fields: tuple, rec: object) -> tuple:
    if isinstance(rec, dict):
        for key in rec:
            if catalog_field_index(rec_fields, key) < 0:
                raise EncodeError("%s: unknown field %r" % (what, key))
        out = []
        for f in rec_fields:
            if f[0] not in rec:
                raise EncodeError("%s: missing field %s" % (what, f[0]))
            out.append(rec[f[0]])
        return tuple(out)
    if isinstance(rec, (tuple, list)):
        return tuple(rec)
    raise EncodeError("%s: a record is a tuple, a list or a dict, not %r" % (what, rec))


def catalog_field_index(flds: tuple, fname: str) -> int:
    for k in range(len(flds)):
        if flds[k][0] == fname:
            return k
    return -1


def values_from_dict(name: str, named: dict) -> tuple:
    """Catalog-ordered values for message name from {field: value} (EncodeError names
    unknown and missing fields)."""
    try:
        msg_id = catalog.message_id(name)
    except KeyError:
        raise EncodeError("unknown message %r" % name)
    flds = fields(msg_id)
    for key in named:
        if catalog_field_index(flds, key) < 0:
            raise EncodeError("%s: unknown field %r" % (name, key))
    values = []
    for f in flds:
        fname, ftype, since = f[0], f[1], f[4]
        if fname not in named:
            if since == 0:
                raise EncodeError("%s: missing field %s" % (name, fname))
            values.append(None)
            continue
        value = named[fname]
        if ftype.endswith("[]") and isinstance(value, (list, tuple)):
            if ftype == "body[]":
                body_fields = _body_fields(msg_id, [named.get("stream")])
                if body_fields is not None:
                    value = [_pack_body(name + "." + fname, body_fields, b) for b in value]
            else:
                rec_fields = _record_fields(ftype)
                value = [_positional(name + "." + fname, rec_fields, r) for r in value]
        values.append(value)
    return tuple(values)


def _pack_body(what: str, body_fields: tuple, body: object) -> bytes:
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    rec = _positional(what, body_fields, body)
    _check_record(what, body_fields, rec)
    fmt, _size = _scalar_format(body_fields, what)
    return struct.pack(fmt, *rec)


def encode_dict(name: str, named: dict) -> bytes:
    """The payload for message name from {field: value}."""
    values = values_from_dict(name, named)
    return encode(catalog.message_id(name), values)
