# The board's half of the command channel: execute each command once, in order, and
# answer a duplicate with the original reply, byte for byte. Preallocated; nothing is
# allocated per command. (The host's half, CommandSender, is in isoproto.reliable.)

from isoproto import framing
from isoproto.errors import ProtocolError
from isoproto.ids import is_command
from isoproto.seqnum import seq16_add, seq16_diff

# CommandReceiver.accept() verdicts
EXECUTE = 0  # the next command: execute it, send the reply, then call executed()
DUPLICATE = 1  # already executed: send reply_frame() again, do not execute
DROP = 2  # ahead of the next expected (one was lost), too old, or not synced: ignore


def command_seq(payload: bytes | bytearray | memoryview, length: int) -> int:
    """The cmd_seq of a command payload[0:length], or -1 when it is not a command.

    Read before decoding, so that a command the board cannot decode (or does not know,
    within the command id range) is still sequenced: answer it NAK (R_MALFORMED,
    R_UNKNOWN_COMMAND) through accept() and executed() like any other.
    """
    if length < 3 or not is_command(payload[0]):
        return -1
    return payload[1] | (payload[2] << 8)


class CommandReceiver:
    """Board side of the command channel; preallocated, nothing allocated per command.

    Keeps the reply frames of the last `window` commands in one bytearray ring so a
    duplicate is answered with the original bytes. Before the first HELLO_HOST it is not
    synced and drops every command (the host must handshake first).

    For every command: verdict = accept(cmd_seq); on EXECUTE run it (or refuse it), send
    the ACK or NAK and call executed(cmd_seq, frame, n) with that reply, refused or not,
    so that a retransmission is answered and never run twice; on DUPLICATE send
    reply_frame(cmd_seq) again; on DROP do nothing.
    """

    def __init__(self, window: int = 8, reply_size: int = framing.MAX_FRAME) -> None:
        self.window = window
        self.reply_size = reply_size
        self._replies = bytearray(window * reply_size)
        self._lens = bytearray(window) if reply_size < 256 else [0] * window
        self._seqs = [0] * window
        self._next_slot = 0
        self.expected = 0
        self.synced = False
        self.executed_count = 0
        self.duplicates = 0
        self.ahead_drops = 0
        self.stale_drops = 0
        self.unsynced_drops = 0

    def reset(self, next_seq: int) -> None:
        """HELLO_HOST: the host's next command will carry next_seq; forget older replies."""
        self.expected = next_seq & 0xFFFF
        for i in range(self.window):
            self._lens[i] = 0
        self.synced = True

    def accept(self, seq: int) -> int:
        """EXECUTE, DUPLICATE or DROP for a command carrying cmd_seq seq."""
        if not self.synced:
            self.unsynced_drops += 1
            return DROP
        d = seq16_diff(seq, self.expected)
        if d == 0:
            return EXECUTE
        if d > 0:
            self.ahead_drops += 1
            return DROP
        if -d <= self.window and self._slot_of(seq) >= 0:
            self.duplicates += 1
            return DUPLICATE
        self.stale_drops += 1
        return DROP

    def executed(self, seq: int, frame: bytes | bytearray | memoryview, n: int) -> None:
        """Record the reply frame[0:n] sent for seq (the command accept() said EXECUTE to)
        and move on to the next seq."""
        if seq != self.expected:
            raise ProtocolError("executed(%d) but %d is the next command" % (seq, self.expected))
        if n > self.reply_size:
            raise ProtocolError("reply of %d bytes, the ring holds %d" % (n, self.reply_size))
        slot = self._next_slot
        base = slot * self.reply_size
        replies = self._replies
        for i in range(n):
            replies[base + i] = frame[i]
        self._lens[slot] = n
        self._seqs[slot] = seq
        self._next_slot = (slot + 1) % self.window
        self.expected = seq16_add(seq, 1)
        self.executed_count += 1

    def reply_frame(self, seq: int) -> tuple[bytearray, int, int]:
        """(buffer, offset, length) of the reply sent for seq; length 0 when not held."""
        slot = self._slot_of(seq)
        if slot < 0:
            return self._replies, 0, 0
        return self._replies, slot * self.reply_size, self._lens[slot]

    def _slot_of(self, seq: int) -> int:
        for i in range(self.window):
            if self._lens[i] and self._seqs[i] == seq:
                return i
        return -1
