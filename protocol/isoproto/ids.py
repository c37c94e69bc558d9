# Message ids and stream numbers of protocol v1: the catalog's keys, in a module of their
# own so that board code can name a message without loading the catalog's tables.
# Ids by range: 0x10-0x1F session, 0x20-0x2F board data, 0x40-0x5F commands (sequenced:
# every body starts with cmd_seq u16), 0x60-0x6F command replies; 0x00 is never used.
# Frozen within a major version: add ids, never renumber.

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

HELLO_HOST = const(0x10)
HELLO = const(0x11)
PROFILE = const(0x12)
HEARTBEAT_HOST = const(0x13)
HEARTBEAT = const(0x14)
TELEMETRY = const(0x20)
EVENT = const(0x21)
HISTORY = const(0x22)
LOAD_RECIPE_CHUNK = const(0x40)
START = const(0x41)
PAUSE = const(0x42)
RESUME = const(0x43)
ABORT = const(0x44)
RESET_FAULTS = const(0x45)
SET_PROFILE = const(0x46)
SET_CALIBRATION = const(0x47)
REQUEST_HISTORY = const(0x48)
ACK = const(0x60)
NAK = const(0x61)

COMMAND_FIRST = const(0x40)  # ids COMMAND_FIRST..COMMAND_LAST carry cmd_seq first
COMMAND_LAST = const(0x5F)

STREAM_SAMPLES = const(0)  # HISTORY / REQUEST_HISTORY stream
STREAM_EVENTS = const(1)


def is_command(msg_id: int) -> bool:
    return COMMAND_FIRST <= msg_id <= COMMAND_LAST
