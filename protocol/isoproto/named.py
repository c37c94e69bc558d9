# The host-friendly named form of messages: {field: value} dicts, records as dicts and
# HISTORY's bodies unpacked into sample or event dicts. Built on isoproto.codec with the
# names from isoproto.catalog; runs on the board too but is meant for the host.

import struct

from isoproto import catalog, codec, codes, names, wire
from isoproto.errors import DecodeError, EncodeError


def _record_fields(ftype: str) -> tuple:
    rec = catalog.record(ftype[:-2])
    if rec is None:
        raise EncodeError("unknown record type %s" % ftype)
    return rec


def _body_msg(stream: object) -> int:
    # HISTORY's bodies are TELEMETRY bodies (stream 0) or EVENT bodies (stream 1)
    if stream == catalog.STREAM_SAMPLES:
        return catalog.TELEMETRY
    if stream == catalog.STREAM_EVENTS:
        return catalog.EVENT
    return -1


def _named(rec_fields: tuple, rec: tuple | list) -> dict:
    d = {}
    for k in range(len(rec_fields)):
        d[rec_fields[k][0]] = rec[k]
    return d


def decode_dict(payload: bytes | bytearray | memoryview, length: int = -1) -> tuple:
    """(message name, {field: value}); records as dicts, HISTORY bodies as dicts."""
    msg_id, values = codec.decode(payload, length)
    entry = catalog.message(msg_id)
    if entry is None:  # in wire.SPECS but not in the catalog: a test forbids it
        raise DecodeError("0x%02x has no names in the catalog" % msg_id)
    flds = entry[4]
    out = {}
    for k in range(len(flds)):
        fname, ftype = flds[k][0], flds[k][1]
        value = values[k]
        if value is not None and ftype == "body[]":
            body_msg = _body_msg(values[0])
            if body_msg >= 0:
                fmt = "<" + wire.SPECS[body_msg]
                size = struct.calcsize(fmt)
                for b in value:
                    if len(b) < size:
                        raise DecodeError(
                            "%s.%s: body of %d bytes, needs %d" % (entry[1], fname, len(b), size)
                        )
                body_fields = catalog.fields(body_msg)
                value = [_named(body_fields, struct.unpack_from(fmt, b, 0)) for b in value]
        elif value is not None and ftype.endswith("[]"):
            rec_fields = _record_fields(ftype)
            value = [_named(rec_fields, rec) for rec in value]
        out[fname] = value
    return entry[1], out


def _index(flds: tuple, fname: str) -> int:
    for k in range(len(flds)):
        if flds[k][0] == fname:
            return k
    return -1


def _positional(what: str, rec_fields: tuple, rec: object) -> tuple:
    if isinstance(rec, dict):
        for key in rec:
            if _index(rec_fields, key) < 0:
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


def _pack_body(what: str, body_msg: int, body: object) -> bytes:
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    rec = _positional(what, catalog.fields(body_msg), body)
    # check through the codec (names the field), then pack the body without the msg id
    return codec.encode(body_msg, rec)[1:]


def values_from_dict(name: str, named: dict) -> tuple:
    """Catalog-ordered values for message name from {field: value} (EncodeError names
    unknown and missing fields; fields a newer minor added may be left out)."""
    try:
        msg_id = catalog.message_id(name)
    except KeyError:
        raise EncodeError("unknown message %r" % name)
    flds = catalog.fields(msg_id)
    for key in named:
        if _index(flds, key) < 0:
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
            what = name + "." + fname
            if ftype == "body[]":
                body_msg = _body_msg(named.get("stream"))
                if body_msg >= 0:
                    value = [_pack_body(what, body_msg, b) for b in value]
            else:
                rec_fields = _record_fields(ftype)
                value = [_positional(what, rec_fields, r) for r in value]
        values.append(value)
    return tuple(values)


def encode_dict(name: str, named: dict) -> bytes:
    """The payload for message name from {field: value}."""
    values = values_from_dict(name, named)
    return codec.encode(catalog.message_id(name), values)


def _reason_text(reason: int) -> str:
    if 0 <= reason < len(names.REASON_TEXT) and names.REASON_TEXT[reason]:
        return names.REASON_TEXT[reason]
    return "reason %d" % reason  # a newer board's code


def reply_text(msg_id: int, values: tuple | list) -> str:
    """Words an operator can act on for a decoded ACK or NAK, e.g. "refused: target above
    the maximum working pressure (segment 4); ramp-up rate above the device maximum
    (segment 4)"."""
    if msg_id == catalog.ACK:
        return "done"
    if msg_id != catalog.NAK:
        raise DecodeError("reply_text takes ACK or NAK, not 0x%02x" % msg_id)
    result, reason, detail, problems = values[1], values[2], values[3], values[4] or []
    verb = "refused" if result == codes.RESULT_REJECTED else "failed"
    if problems:
        parts = ["%s (segment %d)" % (_reason_text(p[0]), p[1]) for p in problems]
    elif detail:
        parts = ["%s (detail %d)" % (_reason_text(reason), detail)]
    else:
        parts = [_reason_text(reason)]
    return verb + ": " + "; ".join(parts)
