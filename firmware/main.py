# Board entry point: MicroPython runs main.py after boot. The board module is the only
# difference between an RP2040, an ESP32 and the virtual board.

import board
from isofw.app import build_core, run

b = board.make()
core = build_core(b.config)
overruns = run(b, core, b.observer)
b.finish(core, overruns)
