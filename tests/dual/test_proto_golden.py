# The frozen byte vectors of protocol v1 (golden/protocol_v1.json), decoded and
# re-encoded byte-exactly by both runtimes. A failure here means the wire format changed:
# that needs a new protocol version, not a new golden file.

import json

from isoproto import catalog, codec, framing

_HERE = __file__.rsplit("/", 1)[0]


def _golden():
    with open(_HERE + "/golden/protocol_v1.json") as f:
        return json.load(f)


def _unhex(s):
    return bytes.fromhex(s) if hasattr(bytes, "fromhex") else __import__("binascii").unhexlify(s)


def _from_json(value):
    # golden values: lists for arrays, {"hex": ...} for bodies
    if isinstance(value, dict):
        return _unhex(value["hex"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _to_json(value):
    if isinstance(value, (bytes, bytearray)):
        return {"hex": "".join("%02x" % b for b in value)}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def test_every_message_of_the_catalog_has_a_golden_vector():
    names = set(m["name"] for m in _golden()["messages"])
    for entry in catalog.MESSAGES:
        assert entry[1] in names, entry[1]


def test_golden_values_encode_to_the_golden_payload_and_frame():
    for m in _golden()["messages"]:
        values = tuple(_from_json(m["values"]))
        payload = codec.encode(m["id"], values)
        assert payload == _unhex(m["payload"]), m["case"]
        assert framing.frame(payload) == _unhex(m["frame"]), m["case"]
        buf = bytearray(framing.MAX_PAYLOAD + 2)
        n = codec.encode_into(buf, 0, m["id"], values)
        out = bytearray(framing.MAX_FRAME)
        k = framing.frame_into(out, 0, buf, n)
        assert bytes(out[:k]) == _unhex(m["frame"]), m["case"]


def test_golden_frames_decode_to_the_golden_values_with_both_decoders():
    for m in _golden()["messages"]:
        frame = _unhex(m["frame"])
        board = framing.FrameDecoder()
        host = framing.StreamDecoder()
        got_board = board.feed(frame)
        got_host = host.feed(frame)
        assert got_board == got_host == [_unhex(m["payload"])], m["case"]
        msg_id, values = codec.decode(got_host[0])
        assert msg_id == m["id"]
        assert _to_json(values) == m["values"], m["case"]


def test_golden_streams_give_the_golden_payloads_and_counters():
    for s in _golden()["streams"]:
        stream = _unhex(s["stream"])
        want = [_unhex(p) for p in s["payloads"]]
        for dec in (framing.FrameDecoder(), framing.StreamDecoder()):
            assert dec.feed(stream) == want, s["name"]
            got = {
                "frames_ok": dec.frames_ok,
                "crc_errors": dec.crc_errors,
                "cobs_errors": dec.cobs_errors,
                "oversize_drops": dec.oversize_drops,
            }
            assert got == s["counters"], (s["name"], got)


def test_a_hand_checked_telemetry_frame():
    # Worked by hand in docs/protocol.md: 28-byte payload, 32 bytes on the wire.
    payload = codec.encode(catalog.TELEMETRY, (1, 2, 250.5, 251.0, 3, 4, 5, 6, 7, 8, 9))
    assert payload == _unhex("2001000000020000000080" + "7a430000" + "7b43030004000500060708090" + "0")
    frame = framing.frame(payload)
    assert len(frame) == 32
    assert frame == _unhex("032001010102020101010480" + "7a4301047b4303020402050506070809" + "034eb200")
