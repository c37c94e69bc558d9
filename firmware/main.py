# Board entry point: MicroPython runs main.py after boot. The board module is the only
# difference between an RP2040, an ESP32 and the virtual board.
#
# Boot is always safe: the board layer drives every output to its safe level before
# anything else; a bad or missing config gives a core that only reports F_CONFIG_INVALID.

import board
from isofw.app import boot, run

b = board.make()
core = boot(b)
link = board.attach_link(b, core)
try:
    run(b, core, link, b.observer)
except KeyboardInterrupt:  # Ctrl-C at a REPL, SIGINT from the virtual board's launcher
    b.keep_running = False
finally:
    # Whatever ended the loop (on a board: an exception), leave the press safe; on a
    # board the watchdog, no longer fed, then resets it.
    b.write_outputs(0, 0, False)
b.finish(core, core.overruns)
