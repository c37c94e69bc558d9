# isoproto: the isopress serial protocol, the same files on the board and on the host.
# Message catalog, framing and sequencing only: no I/O. docs/protocol.md describes it.
#
#   board and host   ids, wire, codec, framing (crc, cobs), samples, writer, history,
#                    receiver, recipe, version, codes, seqnum, errors
#   host (and docs)  catalog (names, units, descriptions), named, reliable
#
# Nothing is imported here: the board loads only the modules it uses.

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
