# The firmware's main loop: read the board, step the core, write the outputs, then do
# the slow work (telemetry, garbage collection) after the outputs are safe on the pins.

import gc

from isofw.calibration import Calibration
from isofw.control import PressureController
from isofw.core import DeviceProfile, PressCore


def build_core(config: dict) -> PressCore:
    profile = DeviceProfile(**config.get("profile", {}))
    calibration = Calibration(**config.get("calibration", {}))
    controller = PressureController(**config.get("control", {}))
    return PressCore(profile, calibration, controller)


def run(board, core: PressCore, observer=None):
    """Run until the board says stop (the virtual board at the end of its time)."""
    period_ms = board.control_period_ms
    board.arm_overpressure_trip(core.calibration.mpa_to_counts(core.profile.trip_mpa))
    # The core's clock: milliseconds since boot, advanced by the tick schedule, so it
    # never wraps like the board's ticks_ms().
    now_ms = 0
    overruns = 0
    board.start_clock(period_ms)
    while board.keep_running:
        counts = board.read_pressure_counts()
        core.step(now_ms, counts, board.overpressure_tripped())
        board.write_outputs(core.pump_duty, core.vent_duty, core.dump_closed)
        for verb, arg in board.host_commands(now_ms):
            if verb == "load":
                core.load_recipe(arg)
            elif verb == "start":
                core.start(now_ms)
        if observer is not None:
            observer(now_ms, core)
        board.feed_watchdog()
        # Collect now, right after the outputs went out, so a collection never sits
        # between a measurement and the actuation that depends on it.
        gc.collect()
        missed = board.wait_next_tick()
        overruns += missed
        now_ms += period_ms * (missed + 1)
    return overruns
