# Protocol versions at the handshake. A different major is refused with words that say
# both versions and what to reflash; any minor of the same major is accepted (a decoder
# reads the fields it knows and ignores the rest).
#
# Frozen across every major version, so that versions can always be compared: HELLO's id
# (0x11) and HELLO_HOST's id (0x10), the first two body bytes of both (major u8, minor u8)
# and HELLO's third field, the firmware version (str8), so a refusal can name it.

from isoproto import PROTOCOL_MAJOR, PROTOCOL_MINOR
from isoproto.errors import DecodeError
from isoproto.ids import HELLO, HELLO_HOST


def peer_version(payload: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(major, minor) from a HELLO or HELLO_HOST payload of any protocol version."""
    if len(payload) < 3 or payload[0] not in (HELLO, HELLO_HOST):
        raise DecodeError("not a HELLO or HELLO_HOST payload")
    return payload[1], payload[2]


def board_version_problem(board_major: int, board_minor: int, firmware: str = "") -> str:
    """For the host: "" when the board's protocol is compatible, else the refusal."""
    if board_major == PROTOCOL_MAJOR:
        return ""
    fw = " (firmware %s)" % firmware if firmware else ""
    if board_major < PROTOCOL_MAJOR:
        advice = (
            "reflash the board with firmware built for protocol %d.x (isopress firmware build, then copy "
            "it to the board), or use an isopress host release that speaks protocol %d.x"
            % (PROTOCOL_MAJOR, board_major)
        )
    else:
        advice = (
            "upgrade the isopress host to a release that speaks protocol %d.x, or reflash the board with "
            "firmware built for protocol %d.x" % (board_major, PROTOCOL_MAJOR)
        )
    return "refused: the board speaks protocol %d.%d%s but this host speaks %d.%d: %s" % (
        board_major,
        board_minor,
        fw,
        PROTOCOL_MAJOR,
        PROTOCOL_MINOR,
        advice,
    )


def host_version_problem(host_major: int, host_minor: int) -> str:
    """For the board: "" when the host's protocol is compatible, else the refusal."""
    if host_major == PROTOCOL_MAJOR:
        return ""
    return "refused: the host speaks protocol %d.%d but this firmware speaks %d.%d: reflash or upgrade" % (
        host_major,
        host_minor,
        PROTOCOL_MAJOR,
        PROTOCOL_MINOR,
    )


def hello_problem(payload: bytes | bytearray | memoryview) -> str:
    """For the host: "" when a board's HELLO (of any version) is compatible, else the
    refusal naming both versions, the board's firmware and what to reflash."""
    major, minor = peer_version(payload)
    if major == PROTOCOL_MAJOR:
        return ""
    firmware = ""
    if len(payload) > 3 and 4 + payload[3] <= len(payload):
        try:
            firmware = bytes(payload[4 : 4 + payload[3]]).decode("utf-8")
        except ValueError:  # not text: leave it out of the message
            firmware = ""
    return board_version_problem(major, minor, firmware)
