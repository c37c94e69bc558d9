# The message catalog of protocol v1: the one source for the board's and the host's
# encoders and decoders, and for the tables in docs/protocol.md (generated from it by
# isopress.protocol_docs; a test fails when the two disagree).
#
# One entry per message:  (msg_id, name, direction, summary, fields)
# one entry per field:    (name, type, unit, description, since_minor)
#
# Types: u8 u16 u32 i8 i16 i32 f32 (little-endian), str8 (u8 length + UTF-8),
# "<record>[]" (u8 count + fixed records, RECORDS below) and body[] (u8 count, u8 body
# size, then count bodies of that size: HISTORY's sample or event bodies).
# since_minor: the minor version that added the field. A decoder reads a payload that ends
# before a field added after minor 0 as "absent" (None) and ignores bytes after the fields
# it knows, which is how minor versions stay compatible both ways.
#
# Ids (isoproto.ids) and field order are frozen within a major version: add messages or
# trailing fields (with a new minor), never renumber or reorder.
#
# The board does not load this module (its descriptions would cost RAM): the codec runs on
# isoproto.wire, the same catalog reduced to one short string per message, and a test
# checks that wire.SPECS == catalog.wire_specs(). Change both together.

from isoproto.ids import (
    ABORT,
    ACK,
    COMMAND_FIRST,
    COMMAND_LAST,
    EVENT,
    HEARTBEAT,
    HEARTBEAT_HOST,
    HELLO,
    HELLO_HOST,
    HISTORY,
    LOAD_RECIPE_CHUNK,
    NAK,
    PAUSE,
    PROFILE,
    REQUEST_HISTORY,
    RESET_FAULTS,
    RESUME,
    SET_CALIBRATION,
    SET_PROFILE,
    START,
    STREAM_EVENTS,
    STREAM_SAMPLES,
    TELEMETRY,
    is_command,
)

# re-exported: the catalog is where host code looks for message ids
__all__ = [
    "ABORT",
    "ACK",
    "B2H",
    "COMMAND_FIRST",
    "COMMAND_LAST",
    "EVENT",
    "H2B",
    "HEARTBEAT",
    "HEARTBEAT_HOST",
    "HELLO",
    "HELLO_HOST",
    "HISTORY",
    "LOAD_RECIPE_CHUNK",
    "MESSAGES",
    "NAK",
    "PAUSE",
    "PROFILE",
    "RECORDS",
    "REQUEST_HISTORY",
    "RESET_FAULTS",
    "RESUME",
    "SET_CALIBRATION",
    "SET_PROFILE",
    "START",
    "STREAM_EVENTS",
    "STREAM_SAMPLES",
    "TELEMETRY",
    "fields",
    "is_command",
    "message",
    "message_id",
    "message_name",
    "record",
    "record_formats",
    "wire_spec",
    "wire_specs",
]

H2B = "host->board"
B2H = "board->host"

_CMD_SEQ = ("cmd_seq", "u16", "", "command sequence number (wraps at 2^16)", 0)

# The device profile: SET_PROFILE's fields after cmd_seq, and PROFILE's fields.
_PROFILE_FIELDS = (
    ("max_working_mpa", "f32", "MPa", "highest target a recipe may set", 0),
    ("trip_mpa", "f32", "MPa", "software over-pressure trip", 0),
    ("max_ramp_up_mpa_s", "f32", "MPa/s", "fastest allowed pressure rise", 0),
    ("max_ramp_down_mpa_s", "f32", "MPa/s", "fastest allowed pressure fall", 0),
    ("max_hold_s", "f32", "s", "longest allowed hold segment", 0),
    ("margin_mpa", "f32", "MPa", "recipe maximum plus this trips (overpressure_sw)", 0),
    ("host_lost_timeout_ms", "u32", "ms", "no host heartbeat this long: host_lost", 0),
    ("host_lost_policy", "u8", "", "codes.HOST_LOST_*", 0),
)

# TELEMETRY's body: also the record of the board's history ring and of HISTORY stream 0.
_SAMPLE_FIELDS = (
    ("seq", "u32", "", "sample sequence number (wraps at 2^32)", 0),
    ("board_ms", "u32", "ms", "board time since boot", 0),
    ("pressure_mpa", "f32", "MPa", "measured pressure", 0),
    ("setpoint_mpa", "f32", "MPa", "controller setpoint", 0),
    ("pump_duty", "u16", "1/65535", "pump output", 0),
    ("vent_duty", "u16", "1/65535", "vent valve output", 0),
    ("faults", "u16", "", "active faults: bit n = codes.F_*", 0),
    ("state", "u8", "", "machine state codes.ST_*", 0),
    ("flags", "u8", "", "codes.FLAG_* bits (dump valve closed, ...)", 0),
    ("segment", "u8", "", "recipe segment index", 0),
    ("run_id", "u16", "", "run number since boot (0: no run)", 0),
)

# EVENT's body: also the record of HISTORY stream 1.
_EVENT_FIELDS = (
    ("event_seq", "u32", "", "event sequence number (own sequence, wraps at 2^32)", 0),
    ("sample_seq", "u32", "", "sample sequence at which it happened", 0),
    ("board_ms", "u32", "ms", "board time since boot", 0),
    ("kind", "u8", "", "codes.EV_*", 0),
    ("code", "u8", "", "fault bit, new state, segment index, ... (by kind)", 0),
    ("detail", "i32", "", "previous state, run id, recipe id, ... (by kind)", 0),
    ("value", "f32", "MPa", "pressure at the event", 0),
)

# (name, wire code, fields): the code stands for the array in wire.SPECS
RECORDS = (
    (
        "segment",
        "G",
        (
            ("kind", "u8", "", "codes.SEG_RAMP or codes.SEG_HOLD", 0),
            ("target_mpa", "f32", "MPa", "ramp target (0 for a hold)", 0),
            ("rate_mpa_s", "f32", "MPa/s", "ramp rate, positive (0 for a hold)", 0),
            ("duration_s", "f32", "s", "hold time (0 for a ramp)", 0),
        ),
    ),
    (
        "problem",
        "P",
        (
            ("reason", "u8", "", "codes.R_*", 0),
            ("index", "u8", "", "segment index the problem is in", 0),
        ),
    ),
)

MESSAGES = (
    (
        HELLO_HOST,
        "HELLO_HOST",
        H2B,
        "handshake request; not sequenced; the board answers HELLO and resets its command window",
        (
            ("major", "u8", "", "host's protocol major version", 0),
            ("minor", "u8", "", "host's protocol minor version", 0),
            ("session_nonce", "u16", "", "random per session; echoed in HELLO", 0),
            ("next_cmd_seq", "u16", "", "cmd_seq of the host's next command", 0),
        ),
    ),
    (
        HELLO,
        "HELLO",
        B2H,
        "who the board is; answers HELLO_HOST, and is sent unsolicited after boot",
        (
            ("major", "u8", "", "board's protocol major version (first in every version)", 0),
            ("minor", "u8", "", "board's protocol minor version", 0),
            ("firmware", "str8", "", "firmware version", 0),
            ("board_id", "str8", "", "unique board id", 0),
            ("board_kind", "str8", "", "rp2, esp32 or sim", 0),
            ("profile_hash", "u32", "", "isoproto.recipe.profile_hash of the active profile", 0),
            ("cal_id", "str8", "", "transducer calibration id", 0),
            ("cal_date", "str8", "", "calibration date (ISO 8601)", 0),
            ("boot_count", "u32", "", "boots since the board was flashed", 0),
            ("reset_cause", "u8", "", "codes.RESET_*", 0),
            ("latest_sample_seq", "u32", "", "seq of the newest sample", 0),
            ("history_capacity", "u16", "", "samples the history ring holds", 0),
            ("telemetry_period_ms", "u16", "ms", "time between TELEMETRY samples", 0),
            ("session_nonce", "u16", "", "HELLO_HOST's nonce; 0 when unsolicited", 0),
            ("latest_event_seq", "u32", "", "seq of the newest event", 0),
        ),
    ),
    (
        PROFILE,
        "PROFILE",
        B2H,
        "the active device profile; sent after HELLO and whenever it changes",
        _PROFILE_FIELDS,
    ),
    (
        HEARTBEAT_HOST,
        "HEARTBEAT_HOST",
        H2B,
        "host liveness; not sequenced; missing for the profile's timeout raises host_lost",
        (("host_ms", "u32", "ms", "host clock (monotonic)", 0),),
    ),
    (
        HEARTBEAT,
        "HEARTBEAT",
        B2H,
        "board liveness, and the newest seqs so the host sees a gap at the end of a stream",
        (
            ("board_ms", "u32", "ms", "board time since boot", 0),
            ("state", "u8", "", "codes.ST_*", 0),
            ("latest_sample_seq", "u32", "", "seq of the newest sample", 0),
            ("latest_event_seq", "u32", "", "seq of the newest event", 0),
        ),
    ),
    (
        TELEMETRY,
        "TELEMETRY",
        B2H,
        "one control sample (28-byte payload, 32 bytes on the wire)",
        _SAMPLE_FIELDS,
    ),
    (
        EVENT,
        "EVENT",
        B2H,
        "fault raised or cleared, state change, segment change, ...",
        _EVENT_FIELDS,
    ),
    (
        HISTORY,
        "HISTORY",
        B2H,
        "backfill: stored samples or events answering REQUEST_HISTORY",
        (
            ("stream", "u8", "", "0 samples, 1 events", 0),
            ("first_seq", "u32", "", "seq of the first record in this chunk", 0),
            ("oldest_seq", "u32", "", "oldest seq the board still holds", 0),
            ("last_chunk", "u8", "", "1 on the request's last chunk", 0),
            ("records", "body[]", "", "TELEMETRY bodies (stream 0) or EVENT bodies (1)", 0),
        ),
    ),
    (
        LOAD_RECIPE_CHUNK,
        "LOAD_RECIPE_CHUNK",
        H2B,
        "part of a recipe: up to 18 segments; chunks go in order from index 0",
        (
            _CMD_SEQ,
            ("recipe_id", "u32", "", "isoproto.recipe.recipe_id of all segments", 0),
            ("total_segments", "u8", "", "segments in the whole recipe", 0),
            ("first_index", "u8", "", "index of this chunk's first segment", 0),
            ("segments", "segment[]", "", "the segments", 0),
        ),
    ),
    (
        START,
        "START",
        H2B,
        "start the loaded recipe; ACK value = run id",
        (_CMD_SEQ, ("recipe_id", "u32", "", "must match the loaded recipe", 0)),
    ),
    (PAUSE, "PAUSE", H2B, "hold the current pressure", (_CMD_SEQ,)),
    (RESUME, "RESUME", H2B, "continue a paused run", (_CMD_SEQ,)),
    (ABORT, "ABORT", H2B, "end the run: depressurise at the ramp-down rate", (_CMD_SEQ,)),
    (RESET_FAULTS, "RESET_FAULTS", H2B, "clear latched faults whose cause is gone", (_CMD_SEQ,)),
    (
        SET_PROFILE,
        "SET_PROFILE",
        H2B,
        "replace the device profile (only when idle)",
        (_CMD_SEQ,) + _PROFILE_FIELDS,
    ),
    (
        SET_CALIBRATION,
        "SET_CALIBRATION",
        H2B,
        "replace the transducer calibration (only when idle)",
        (
            _CMD_SEQ,
            ("cal_id", "str8", "", "calibration id", 0),
            ("cal_date", "str8", "", "calibration date (ISO 8601)", 0),
            ("range_mpa", "f32", "MPa", "pressure at 20 mA", 0),
            ("shunt_ohm", "f32", "ohm", "current-sense shunt", 0),
            ("offset_mpa", "f32", "MPa", "added after the gain", 0),
            ("gain", "f32", "", "multiplies the nominal reading", 0),
        ),
    ),
    (
        REQUEST_HISTORY,
        "REQUEST_HISTORY",
        H2B,
        "ask for stored records; ACK, then HISTORY chunks",
        (
            _CMD_SEQ,
            ("stream", "u8", "", "0 samples, 1 events", 0),
            ("from_seq", "u32", "", "first seq wanted", 0),
            ("count", "u16", "", "records wanted", 0),
        ),
    ),
    (
        ACK,
        "ACK",
        B2H,
        "command executed (result RESULT_OK)",
        (
            _CMD_SEQ,
            ("result", "u8", "", "codes.RESULT_*", 0),
            ("value", "u32", "", "run id after START, recipe id after a load, else 0", 0),
        ),
    ),
    (
        NAK,
        "NAK",
        B2H,
        "command refused or failed; nothing changed",
        (
            _CMD_SEQ,
            ("result", "u8", "", "codes.RESULT_REJECTED or RESULT_ERROR", 0),
            ("reason", "u8", "", "codes.R_* (the first problem)", 0),
            ("detail", "u16", "", "segment index, field number, ... (by reason)", 0),
            ("problems", "problem[]", "", "every problem found (a bad recipe lists all)", 0),
        ),
    ),
)


def message(msg_id: int) -> tuple | None:
    """The catalog entry of msg_id, or None."""
    for entry in MESSAGES:
        if entry[0] == msg_id:
            return entry
    return None


def message_id(name: str) -> int:
    """The id of the message called name (KeyError for an unknown name)."""
    for entry in MESSAGES:
        if entry[1] == name:
            return entry[0]
    raise KeyError(name)


def message_name(msg_id: int) -> str:
    """The name of msg_id, or "0x.." for an id not in this catalog."""
    entry = message(msg_id)
    return entry[1] if entry is not None else "0x%02x" % msg_id


def fields(msg_id: int) -> tuple:
    """The field tuples of msg_id (KeyError for an id not in the catalog)."""
    entry = message(msg_id)
    if entry is None:
        raise KeyError(msg_id)
    return entry[4]


def record(name: str) -> tuple | None:
    """The field tuple of a record type (RECORDS), or None."""
    for entry in RECORDS:
        if entry[0] == name:
            return entry[2]
    return None


# -- the compact form the codec runs on (isoproto.wire; a test keeps the two equal) ------------

_WIRE_CODES = {
    "u8": "B",
    "u16": "H",
    "u32": "I",
    "i8": "b",
    "i16": "h",
    "i32": "i",
    "f32": "f",
    "str8": "s",
    "body[]": "Y",
}


def _wire_code(ftype: str) -> str:
    code = _WIRE_CODES.get(ftype)
    if code is not None:
        return code
    for entry in RECORDS:
        if entry[0] + "[]" == ftype:
            return entry[1]
    raise KeyError(ftype)


def wire_spec(msg_fields: tuple) -> str:
    """One character per field (struct letter, s = str8, Y = body[], a record's code),
    with a "|" before the first field of each newer minor."""
    out = ""
    minor = 0
    for f in msg_fields:
        while minor < f[4]:
            out += "|"
            minor += 1
        out += _wire_code(f[1])
    return out


def wire_specs() -> dict:
    """{msg_id: wire_spec} for every message: what isoproto.wire.SPECS must hold."""
    return {entry[0]: wire_spec(entry[4]) for entry in MESSAGES}


def record_formats() -> dict:
    """{record code: struct format}: what isoproto.wire.RECORD_FORMATS must hold."""
    return {entry[1]: "<" + "".join(_wire_code(f[1]) for f in entry[2]) for entry in RECORDS}
