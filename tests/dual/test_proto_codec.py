# The catalog-driven codec: round trips, refusals that name the field, minor-version rules.

from isoproto import catalog, codec, codes, wire
from isoproto import named as named_form
from isoproto.errors import DecodeError, EncodeError, UnknownMessageError

_SAMPLE_VALUES = {
    "u8": 200,
    "u16": 65000,
    "u32": 4000000000,
    "i8": -100,
    "i16": -30000,
    "i32": -2000000000,
    "f32": 250.25,
    "str8": "TX-0042 µ",
}


def _example(fields):
    values = []
    for f in fields:
        t = f[1]
        if t in _SAMPLE_VALUES:
            values.append(_SAMPLE_VALUES[t])
        elif t == "body[]":
            values.append([b"\x01" * 27, b"\x02" * 27])
        else:
            rec = catalog.record(t[:-2])
            assert rec is not None
            values.append([tuple(_SAMPLE_VALUES[r[1]] for r in rec)] * 3)
    return tuple(values)


def _raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type as exc:
        return str(exc)
    raise AssertionError("%s not raised" % exc_type.__name__)


def test_catalog_ids_and_names_are_unique_and_in_their_ranges():
    ids = [m[0] for m in catalog.MESSAGES]
    names = [m[1] for m in catalog.MESSAGES]
    assert len(set(ids)) == len(ids) and len(set(names)) == len(names)
    for m in catalog.MESSAGES:
        assert m[2] in (catalog.H2B, catalog.B2H)
        assert 0 < m[0] < 0x100
        for f in m[4]:
            assert len(f) == 5 and f[4] == 0  # v1.0: every field since minor 0
        if catalog.is_command(m[0]):
            assert m[2] == catalog.H2B
            assert m[4][0][0] == "cmd_seq" and m[4][0][1] == "u16", m[1]


def test_every_message_round_trips_in_both_forms():
    for m in catalog.MESSAGES:
        values = _example(m[4])
        payload = codec.encode(m[0], values)
        msg_id, got = codec.decode(payload)
        assert msg_id == m[0]
        for k in range(len(values)):
            want = values[k]
            if isinstance(want, list) and want and isinstance(want[0], tuple):
                assert [tuple(r) for r in got[k]] == want, (m[1], k)
            elif isinstance(want, list):
                assert [bytes(b) for b in got[k]] == want, (m[1], k)
            else:
                assert got[k] == want, (m[1], m[4][k][0], got[k], want)
        name, named = named_form.decode_dict(payload)
        assert name == m[1]
        if m[0] != catalog.HISTORY:  # HISTORY bodies become dicts by stream (below)
            assert named_form.encode_dict(name, named) == payload


def test_history_bodies_expand_by_stream():
    from isoproto import samples

    body = bytearray(samples.SAMPLE_BODY_SIZE)
    samples.pack_sample_into(body, 0, 5, 50, 1.5, 2.5, 1, 2, 3, 4, 5, 6, 7)
    payload = codec.encode(catalog.HISTORY, (catalog.STREAM_SAMPLES, 5, 1, 1, [bytes(body)]))
    name, named = named_form.decode_dict(payload)
    assert name == "HISTORY"
    assert named["records"][0]["pressure_mpa"] == 1.5 and named["records"][0]["seq"] == 5
    assert named_form.encode_dict("HISTORY", named) == payload


def test_history_bodies_too_short_for_their_stream_are_a_decode_error():
    payload = codec.encode(catalog.HISTORY, (catalog.STREAM_SAMPLES, 5, 1, 1, [b"\x00" * 22]))
    assert codec.decode(payload)[1][4] == [b"\x00" * 22]  # the raw form keeps them
    assert "needs 27" in _raises(DecodeError, named_form.decode_dict, payload)


def test_bad_values_are_refused_naming_message_and_field():
    tele = list(_example(catalog.fields(catalog.TELEMETRY)))
    tele[4] = 70000
    msg = _raises(EncodeError, codec.encode, catalog.TELEMETRY, tuple(tele))
    assert "TELEMETRY.pump_duty" in msg and "u16" in msg
    tele[4] = 1.5
    assert "not an integer" in _raises(EncodeError, codec.encode, catalog.TELEMETRY, tuple(tele))
    tele[4] = 0
    tele[2] = "high"
    assert "TELEMETRY.pressure_mpa" in _raises(EncodeError, codec.encode, catalog.TELEMETRY, tuple(tele))
    tele[2] = 1e39
    assert "f32" in _raises(EncodeError, codec.encode, catalog.TELEMETRY, tuple(tele))
    msg = _raises(EncodeError, codec.encode, catalog.START, (1,))
    assert "START.recipe_id" in msg and "missing" in msg
    msg = _raises(EncodeError, named_form.encode_dict, "START", {"cmd_seq": 1, "recipe": 5})
    assert "unknown field" in msg and "recipe" in msg
    assert "unknown message" in _raises(EncodeError, named_form.encode_dict, "LAUNCH", {})
    long_id = "x" * 256
    msg = _raises(
        EncodeError, codec.encode, catalog.SET_CALIBRATION, (1, long_id, "", 600.0, 150.0, 0.0, 1.0)
    )
    assert "SET_CALIBRATION.cal_id" in msg
    too_many = [(codes.SEG_RAMP, 1.0, 1.0, 0.0)] * 19
    msg = _raises(EncodeError, codec.encode, catalog.LOAD_RECIPE_CHUNK, (1, 2, 19, 0, too_many))
    assert "payload of" in msg


def test_a_refused_encode_into_leaves_the_buffer_untouched():
    buf = bytearray(b"\x55" * 40)
    _raises(EncodeError, codec.encode_into, buf, 0, catalog.ACK, (1, 0, -1))
    _raises(EncodeError, codec.encode_into, buf, 35, catalog.ACK, (1, 0, 1))  # no room
    assert buf == bytearray(b"\x55" * 40)


def test_special_floats_pass_through():
    inf = float("inf")
    payload = codec.encode(catalog.EVENT, (1, 2, 3, 1, 0, 0, inf))
    assert codec.decode(payload)[1][6] == inf
    nan = codec.decode(codec.encode(catalog.EVENT, (1, 2, 3, 1, 0, 0, float("nan"))))[1][6]
    assert nan != nan  # noqa: PLR0124 (the NaN test that needs no math module)


def test_short_payloads_and_bad_strings_raise_decode_error():
    payload = codec.encode(catalog.TELEMETRY, _example(catalog.fields(catalog.TELEMETRY)))
    for n in range(1, len(payload)):
        assert "TELEMETRY" in _raises(DecodeError, codec.decode, payload[:n])
    bad_utf8 = bytearray(codec.encode(catalog.SET_CALIBRATION, (1, "ab", "", 1.0, 1.0, 0.0, 1.0)))
    bad_utf8[4] = 0xFF
    assert "UTF-8" in _raises(DecodeError, codec.decode, bytes(bad_utf8))
    assert _raises(DecodeError, codec.decode, b"")
    try:
        codec.decode(b"\x7e\x01\x02")
    except UnknownMessageError as exc:
        assert exc.msg_id == 0x7E
    else:
        raise AssertionError("unknown id decoded")


def test_trailing_bytes_of_a_newer_minor_are_ignored():
    payload = codec.encode(catalog.TELEMETRY, _example(catalog.fields(catalog.TELEMETRY)))
    assert codec.decode(payload + b"\x01\x02\x03") == codec.decode(payload)
    nak = codec.encode(catalog.NAK, (1, 1, 6, 0, [(6, 0)]))
    assert codec.decode(nak + b"\xaa") == codec.decode(nak)


def test_decode_with_a_length_reads_only_that_much_of_the_buffer():
    payload = codec.encode(catalog.ACK, (3, 0, 77))
    buf = bytearray(payload + b"\xff" * 10)
    assert codec.decode(buf, len(payload)) == codec.decode(payload)


def test_fields_a_newer_minor_adds_decode_as_absent_from_an_older_peer():
    # A made-up v1.1 message: one field since minor 0, two since minor 1.
    test_id = 0x7D
    entry = (
        test_id,
        "TEST_V11",
        catalog.B2H,
        "test only",
        (
            ("a", "u16", "", "", 0),
            ("b", "u32", "", "added in 1.1", 1),
            ("c", "str8", "", "added in 1.1", 1),
        ),
    )
    saved = catalog.MESSAGES
    catalog.MESSAGES = saved + (entry,)
    wire.SPECS[test_id] = catalog.wire_spec(entry[4])
    try:
        assert wire.SPECS[test_id] == "H|Is"
        old = codec.encode(test_id, (7,))  # a 1.0 peer sends only a
        assert old == b"\x7d\x07\x00"
        assert codec.decode(old) == (test_id, (7, None, None))
        assert codec.encode(test_id, (7, None, None)) == old
        new = codec.encode(test_id, (7, 9, "x"))
        assert codec.decode(new) == (test_id, (7, 9, "x"))
        assert named_form.decode_dict(old) == ("TEST_V11", {"a": 7, "b": None, "c": None})
        _raises(DecodeError, codec.decode, new[:5])  # ends inside a field: malformed
        msg = _raises(EncodeError, codec.encode, test_id, ())  # a is required
        assert "TEST_V11.a" in msg and "missing" in msg
    finally:
        catalog.MESSAGES = saved
        del wire.SPECS[test_id]
        codec._plans.pop(test_id, None)


def test_the_wire_table_is_the_catalog_in_compact_form():
    assert catalog.wire_specs() == wire.SPECS
    assert catalog.record_formats() == wire.RECORD_FORMATS
    for m in catalog.MESSAGES:
        assert codec.field_count(m[0]) == len(m[4])


def test_replies_in_words():
    assert named_form.reply_text(catalog.ACK, (1, 0, 3)) == "done"
    nak = (
        7,
        codes.RESULT_REJECTED,
        codes.R_TARGET_TOO_HIGH,
        4,
        [(codes.R_TARGET_TOO_HIGH, 4), (codes.R_HOLD_TOO_LONG, 9)],
    )
    assert named_form.reply_text(catalog.NAK, nak) == (
        "refused: target above the maximum working pressure (segment 4); "
        "hold longer than the device maximum (segment 9)"
    )
    assert named_form.reply_text(catalog.NAK, (1, codes.RESULT_REJECTED, codes.R_BAD_STATE, 0, [])) == (
        "refused: not allowed in the press's current state"
    )
    assert named_form.reply_text(catalog.NAK, (1, codes.RESULT_ERROR, 200, 0, [])) == "failed: reason 200"
