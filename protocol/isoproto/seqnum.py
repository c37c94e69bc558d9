# Serial-number arithmetic (RFC 1982) for the wrapping sequence numbers: u16 command
# sequences, u32 sample and event sequences. "a after b" means 0 < (a - b) mod 2^n < 2^(n-1).


def seq16_add(a: int, n: int) -> int:
    return (a + n) & 0xFFFF


def seq16_diff(a: int, b: int) -> int:
    """a - b as a signed distance in -32768..32767."""
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


def seq32_add(a: int, n: int) -> int:
    return (a + n) & 0xFFFFFFFF


def seq32_diff(a: int, b: int) -> int:
    """a - b as a signed distance in -2^31..2^31-1."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d
