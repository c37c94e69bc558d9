# isofw: the press's control core. Pure logic: no `machine`, no clock reads, no I/O.
# Time and inputs come in as arguments; outputs go back as values. The board layer
# (firmware/boards/<board>/board.py) is the only code that touches hardware.

FIRMWARE_VERSION = "0.1.0"
