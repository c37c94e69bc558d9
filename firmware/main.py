# Board entry point: MicroPython runs main.py after boot. The board module is the only
# difference between an RP2040, an ESP32 and the virtual board.
#
# Boot is always safe: the board layer drives every output to its safe level before
# anything else; a bad or missing config gives a core that only reports F_CONFIG_INVALID.
#
# Maintenance: with the board's maintenance input held at reset, nothing else starts: no
# control loop, no serial link (which would take the port and ignore Ctrl-C), no
# watchdog. The outputs stay as make() left them, safe, and main.py returns to the REPL,
# so `isopress firmware deploy` (mpremote) can copy a new bundle.

import board

b = board.make()
if b.maintenance_requested():
    print("isopress: maintenance mode: outputs safe, control loop not started, REPL free")
else:
    from isofw.app import boot, run

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
