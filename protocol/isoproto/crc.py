# CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, xorout 0. Check value: the
# CRC of b"123456789" is 0x29B1. It equals CPython's binascii.crc_hqx(data, 0xFFFF), which
# runs at C speed on the host; MicroPython's binascii has only crc32, so the board uses the
# table-driven version below (the table is built on first use: 512 bytes).
#
# Frames carry the CRC big-endian after the payload. Because the CRC is not reflected and
# has no final xor, the CRC over payload || crc is 0: a receiver checks a whole frame with
# one call and compares with 0.

import binascii

CRC_INIT = 0xFFFF

_table = None


def _build_table() -> bytearray:
    table = bytearray(512)
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        crc &= 0xFFFF
        table[2 * i] = crc >> 8
        table[2 * i + 1] = crc & 0xFF
    return table


def crc16_table(
    data: bytes | bytearray | memoryview, start: int = 0, end: int = -1, crc: int = CRC_INIT
) -> int:
    """CRC of data[start:end] (end -1 = to the end), pure Python; allocates nothing after
    the first call, so the board can check frames in its preallocated buffers."""
    global _table
    t = _table
    if t is None:
        t = _table = _build_table()
    if end < 0:
        end = len(data)
    i = start
    while i < end:
        j = 2 * ((crc >> 8) ^ data[i])
        # (crc << 8) ^ table[j], with the table entry stored as two bytes
        crc = (((crc & 0xFF) ^ t[j]) << 8) | t[j + 1]
        i += 1
    return crc


def crc16_bitwise(data: bytes | bytearray | memoryview, crc: int = CRC_INIT) -> int:
    """Reference implementation straight from the definition: tests compare the others to it."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


_crc_hqx = getattr(binascii, "crc_hqx", None)

if _crc_hqx is not None:  # CPython: C speed

    def crc16(
        data: bytes | bytearray | memoryview, start: int = 0, end: int = -1, crc: int = CRC_INIT
    ) -> int:
        """CRC-16/CCITT-FALSE of data[start:end] (end -1 = to the end)."""
        if start == 0 and end < 0:
            return _crc_hqx(data, crc)  # type: ignore[misc]
        if end < 0:
            end = len(data)
        return _crc_hqx(memoryview(data)[start:end], crc)  # type: ignore[misc]

else:  # MicroPython
    crc16 = crc16_table
