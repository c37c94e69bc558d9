"""Write tests/dual/golden/protocol_v1.json: the frozen byte vectors of protocol v1.

Run once per protocol minor (``python tests/protocol/make_golden.py --force``) and review
the diff: a vector that changes means the wire format changed. The dual tests decode and
re-encode every vector byte-exactly under CPython and MicroPython.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from isoproto import catalog, codec, framing, samples
from isoproto import codes as c
from isoproto.recipe import profile_hash, recipe_id

GOLDEN = Path(__file__).resolve().parents[1] / "dual" / "golden" / "protocol_v1.json"

# Floats are all exact in f32, so a decoded value equals the JSON value.
_SAMPLE = (1234567, 3600250, 250.25, 250.5, 32768, 1024, 0, c.ST_HOLDING, 0x1F, 2, 7)
_EVENT = (42, 1234560, 3600000, c.EV_FAULT_RAISED, c.F_HOLD_LEAK, -3, 248.75)
_PROFILE = (400.0, 420.0, 2.0, 1.0, 3600.0, 10.0, 5000, c.HOST_LOST_DEPRESSURISE)
_RECIPE = [(c.SEG_RAMP, 250.0, 1.0, 0.0), (c.SEG_HOLD, 0.0, 0.0, 300.0), (c.SEG_RAMP, 0.0, 0.5, 0.0)]
_RECIPE_ID = recipe_id(_RECIPE)
_PROFILE_HASH = profile_hash(_PROFILE)


def _bodies(fmt: str, rows: list[tuple[Any, ...]]) -> list[bytes]:
    import struct

    return [struct.pack(fmt, *r) for r in rows]


CASES: list[tuple[str, str, tuple[Any, ...]]] = [
    ("hello_host", "HELLO_HOST", (1, 0, 0xBEEF, 100)),
    (
        "hello",
        "HELLO",
        (
            1,
            0,
            "1.0.0+g1a2b3c",
            "rp2-e6614103e7",
            "rp2",
            _PROFILE_HASH,
            "TX-0042",
            "2026-11-25",
            17,
            c.RESET_WATCHDOG,
            1234567,
            1200,
            100,
            0xBEEF,
            42,
        ),
    ),
    (
        "hello_unicode",
        "HELLO",
        (1, 0, "1.0", "sim-µ", "sim", 0, "Kalibrierung ÄÖÜ", "", 0, 0, 0, 0, 100, 0, 0),
    ),
    ("profile", "PROFILE", _PROFILE),
    ("heartbeat_host", "HEARTBEAT_HOST", (86400000,)),
    ("heartbeat", "HEARTBEAT", (3600250, c.ST_HOLDING, 1234567, 42)),
    ("telemetry", "TELEMETRY", _SAMPLE),
    ("telemetry_zeros", "TELEMETRY", (0, 0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0)),
    (
        "telemetry_max",
        "TELEMETRY",
        (0xFFFFFFFF, 0xFFFFFFFF, -1.5, 600.0, 65535, 65535, 0xFFFF, 255, 255, 255, 65535),
    ),
    ("event", "EVENT", _EVENT),
    (
        "history_samples",
        "HISTORY",
        (
            catalog.STREAM_SAMPLES,
            1234560,
            1233400,
            0,
            _bodies(samples.SAMPLE_FORMAT, [(1234560 + i, *_SAMPLE[1:]) for i in range(8)]),
        ),
    ),
    (
        "history_events",
        "HISTORY",
        (catalog.STREAM_EVENTS, 40, 1, 1, _bodies(samples.EVENT_FORMAT, [_EVENT, (43, *_EVENT[1:])])),
    ),
    ("history_empty", "HISTORY", (catalog.STREAM_SAMPLES, 5, 900, 1, [])),
    (
        "load_recipe_chunk",
        "LOAD_RECIPE_CHUNK",
        (
            7,
            _RECIPE_ID,
            3,
            0,
            _RECIPE,
        ),
    ),
    ("start", "START", (8, _RECIPE_ID)),
    ("pause", "PAUSE", (9,)),
    ("resume", "RESUME", (10,)),
    ("abort", "ABORT", (0xFFFF,)),
    ("reset_faults", "RESET_FAULTS", (0,)),
    ("set_profile", "SET_PROFILE", (11, *_PROFILE)),
    ("set_calibration", "SET_CALIBRATION", (12, "TX-0042", "2026-11-25", 600.0, 150.0, -0.25, 1.0078125)),
    ("request_history", "REQUEST_HISTORY", (13, catalog.STREAM_SAMPLES, 1234500, 8)),
    ("ack", "ACK", (8, c.RESULT_OK, 3)),
    ("nak", "NAK", (7, c.RESULT_REJECTED, c.R_BAD_STATE, 0, [])),
    (
        "nak_problems",
        "NAK",
        (
            7,
            c.RESULT_REJECTED,
            c.R_TARGET_TOO_HIGH,
            4,
            [(c.R_TARGET_TOO_HIGH, 4), (c.R_RATE_UP_TOO_HIGH, 4), (c.R_HOLD_TOO_LONG, 9)],
        ),
    ),
]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"hex": bytes(value).hex()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _streams() -> list[dict[str, Any]]:
    tele = framing.frame(codec.encode(catalog.TELEMETRY, _SAMPLE))
    ack = framing.frame(codec.encode(catalog.ACK, (8, 0, 3)))
    bad_code = bytearray(tele)
    bad_code[10] ^= 0x01  # a COBS code byte: the structure breaks
    bad_data = bytearray(tele)
    bad_data[12] ^= 0x01  # a data byte: only the CRC notices
    oversize = bytes([0x55]) * 300 + b"\0"
    cases = [
        ("clean", b"\0" + tele + ack),
        ("garbage_then_frames", b"\x13\x37\xff\x01" + b"\0" + tele + ack),
        ("bit_flip_code_byte", bytes(bad_code) + ack),
        ("bit_flip_data_byte", bytes(bad_data) + ack),
        ("truncated_frame", tele[:15] + b"\0" + ack),
        ("oversize_then_frame", oversize + ack),
        ("merged_by_lost_delimiter", tele[:-1] + ack + tele),
    ]
    out = []
    for name, stream in cases:
        dec = framing.StreamDecoder()
        payloads = dec.feed(stream)
        out.append(
            {
                "name": name,
                "stream": stream.hex(),
                "payloads": [p.hex() for p in payloads],
                "counters": {
                    "frames_ok": dec.frames_ok,
                    "crc_errors": dec.crc_errors,
                    "cobs_errors": dec.cobs_errors,
                    "oversize_drops": dec.oversize_drops,
                },
            }
        )
    return out


def build() -> dict[str, Any]:
    messages = []
    for case, name, values in CASES:
        msg_id = catalog.message_id(name)
        payload = codec.encode(msg_id, values)
        messages.append(
            {
                "case": case,
                "name": name,
                "id": msg_id,
                "values": _jsonable(values),
                "payload": payload.hex(),
                "frame": framing.frame(payload).hex(),
            }
        )
    return {"protocol": "1.0", "messages": messages, "streams": _streams()}


def render(golden: dict[str, Any]) -> str:
    """JSON with one vector per line: reviewable diffs, ASCII only."""
    lines = ["{", f' "protocol": {json.dumps(golden["protocol"])},', ' "messages": [']
    rows = [json.dumps(m, ensure_ascii=True) for m in golden["messages"]]
    lines += ["  " + r + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows)]
    lines += [" ],", ' "streams": [']
    rows = [json.dumps(m, ensure_ascii=True) for m in golden["streams"]]
    lines += ["  " + r + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows)]
    lines += [" ]", "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if GOLDEN.exists() and "--force" not in argv:
        print(f"{GOLDEN} exists; --force overwrites it", file=sys.stderr)
        return 1
    GOLDEN.write_text(render(build()))
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
