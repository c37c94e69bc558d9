# Byte streams for isofw.link, built around stream objects a board hands in (the link
# itself never touches a port). Both give the link what it needs, without blocking and
# without allocating:
#
#   read_into(buf) -> n          what has arrived, at most len(buf); 0 when nothing
#   write(buf, off, n) -> m      what the port takes now, m <= n; 0 when it is full
#
# PolledStream: stdio of a board (USB CDC or UART on rp2 and esp32), whose reads and
# writes block: select.poll says what is ready, reads go one byte at a time while it
# says readable, writes at most write_chunk bytes while it says writable.
# NonblockingStream: a file descriptor opened (or set by the parent process) O_NONBLOCK,
# such as the virtual board's pseudo-terminal: reads return what is there, writes what fit.


class PolledStream:
    """rx, tx: MicroPython streams (sys.stdin.buffer, sys.stdout.buffer); rx_poll, tx_poll:
    select.poll objects with rx registered for POLLIN and tx for POLLOUT."""

    def __init__(self, rx, tx, rx_poll, tx_poll, write_chunk: int = 64):
        self._rx = rx
        self._tx = tx
        self._rx_poll = rx_poll
        self._tx_poll = tx_poll
        self._write_chunk = write_chunk
        self._one = bytearray(1)

    def read_into(self, buf) -> int:
        one = self._one
        size = len(buf)
        n = 0
        while n < size and _ready(self._rx_poll):
            if not self._rx.readinto(one, 1):
                break
            buf[n] = one[0]
            n += 1
        return n

    def write(self, buf, off: int, n: int) -> int:
        if not _ready(self._tx_poll):
            return 0
        if n > self._write_chunk:
            n = self._write_chunk  # what a USB CDC FIFO takes without waiting
        m = self._tx.write(buf, off, n)
        return m if m else 0


def _ready(poll) -> bool:
    # ipoll (MicroPython) reuses one tuple: polling allocates nothing
    for _ in poll.ipoll(0):
        return True
    return False


class NonblockingStream:
    """rx, tx: MicroPython streams on O_NONBLOCK descriptors (None from a read or write
    means EAGAIN); the same object may be both."""

    def __init__(self, rx, tx):
        self._rx = rx
        self._tx = tx

    def read_into(self, buf) -> int:
        try:
            n = self._rx.readinto(buf)
        except OSError:  # EAGAIN on some ports, EIO while nobody holds the other end
            return 0
        return n if n else 0

    def write(self, buf, off: int, n: int) -> int:
        try:
            m = self._tx.write(buf, off, n)
        except OSError:
            return 0
        return m if m else 0
