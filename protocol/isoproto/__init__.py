# isoproto: the isopress serial protocol, the same files on the board and on the host.
# Message catalog, framing and sequencing only: no I/O.

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
