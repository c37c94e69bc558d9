# The protocol's whole exception set. Every error isoproto raises is one of these, so a
# caller catches ProtocolError at one place and knows nothing else leaks out of a decoder.


class ProtocolError(Exception):
    """Base of every error isoproto raises."""


class FrameError(ProtocolError):
    """A frame could not be built or taken apart (size, COBS structure, CRC)."""


class EncodeError(ProtocolError):
    """Values do not fit the catalog: the message names the message, the field and why."""


class DecodeError(ProtocolError):
    """A payload does not decode against the catalog (too short, bad string, bad array)."""


class UnknownMessageError(DecodeError):
    """The message id is not in this catalog (a newer peer's message): count and ignore it."""

    def __init__(self, msg_id: int) -> None:
        super().__init__("unknown message id 0x%02x" % msg_id)
        self.msg_id = msg_id
