# The frame check: CRC-16 with the CCITT polynomial 0x1021, init 0xFFFF, not reflected,
# and a final xor of 0xFFFF (catalogued as CRC-16/GENIBUS; check value of b"123456789":
# 0xD64E). crc16() is the register without the final xor, i.e. CRC-16/CCITT-FALSE (check
# 0x29B1), which equals CPython's binascii.crc_hqx(data, 0xFFFF) and runs at C speed on
# the host; MicroPython's binascii has only crc32, so the board uses the table-driven
# version below (the table is built on first use: 512 bytes). frame_crc() adds the xor.
#
# Why the final xor (the design first named plain CCITT-FALSE): with no final xor the CRC
# over payload || crc is 0, and it stays 0 when zero bytes are appended, so a frame that
# picks up one stray byte (a 0x01 before its delimiter means "one more 0x00" to COBS) would
# be accepted with a longer payload. The fuzz found exactly that; with the xor, single-byte
# damage gets through at the 2^-16 rate of any other error (docs/protocol.md, section 1).

import binascii

CRC_INIT = 0xFFFF
FRAME_XOROUT = 0xFFFF

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


def frame_crc(data: bytes | bytearray | memoryview, start: int = 0, end: int = -1) -> int:
    """The CRC a frame carries after data[start:end] (end -1 = to the end)."""
    return crc16(data, start, end) ^ FRAME_XOROUT
