# The catalog in the compact form the codec runs on, on the board and on the host: one
# string per message, one character per field, in catalog order:
#
#   B H I b h i f   u8 u16 u32 i8 i16 i32 f32 (little-endian, as in struct)
#   s               str8: u8 length + UTF-8
#   G P             arrays of fixed records (RECORD_FORMATS): u8 count + records
#   Y               body[]: u8 count, u8 body size, the bodies
#   |               the fields after it came with the next minor version
#
# isoproto.catalog is the source (names, units, descriptions, docs); this table is what is
# left of it for the wire, small enough for the board's RAM. A test checks
# SPECS == catalog.wire_specs() and RECORD_FORMATS == catalog.record_formats().

from isoproto.ids import (
    ABORT,
    ACK,
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
    TELEMETRY,
)

SPECS = {
    HELLO_HOST: "BBHH",
    HELLO: "BBsssIssIBIHHHI",
    PROFILE: "ffffffIB",
    HEARTBEAT_HOST: "I",
    HEARTBEAT: "IBII",
    TELEMETRY: "IIffHHHBBBH",
    EVENT: "IIIBBif",
    HISTORY: "BIIBY",
    LOAD_RECIPE_CHUNK: "HIBBG",
    START: "HI",
    PAUSE: "H",
    RESUME: "H",
    ABORT: "H",
    RESET_FAULTS: "H",
    SET_PROFILE: "HffffffIB",
    SET_CALIBRATION: "Hssffff",
    REQUEST_HISTORY: "HBIH",
    ACK: "HBI",
    NAK: "HBBHP",
}

RECORD_FORMATS = {
    "G": "<Bfff",  # segment: kind, target_mpa, rate_mpa_s, duration_s
    "P": "<BB",  # problem: reason, index
}
