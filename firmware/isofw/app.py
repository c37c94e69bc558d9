# Boot and the firmware's main loop.
#
# Each tick: read the board (the interrupt's oversampled transducer mean, the inputs, the
# hard-trip latch), step the core, write the outputs. Only then the slow work: the serial
# link (read bytes, dispatch commands to the core, write TELEMETRY/EVENT frames), the
# board's side effects of commands (re-arm the hard trip), the watchdog, and garbage
# collection, so nothing ever sits between a measurement and the actuation that depends
# on it.

import gc
import sys

from isofw.calibration import Calibration
from isofw.control import ActuatorModel, PressureController
from isofw.core import Inputs, PressCore
from isofw.profile import DeviceProfile


def build_core(config: dict, errors=(), board_kind="", reset_cause=0, boot_count=0, packers=(None, None)):
    """A PressCore from a complete config (isofw.config.load); errors make it fault-only."""
    profile_doc = config["profile"]
    profile = DeviceProfile(**profile_doc) if profile_doc and not errors else DeviceProfile()
    cal = config["calibration"]
    calibration = Calibration(
        cal["range_mpa"],
        cal["shunt_ohm"],
        cal["adc_vref_v"],
        cal["offset_mpa"],
        cal["gain"],
        cal["cal_id"],
        cal["cal_date"],
    )
    control = config["control"]
    model = ActuatorModel(
        control["pump_rate_mpa_s"],
        control["pump_stall_mpa"],
        control["vent_rate_mpa_s"],
        control["stiffening_per_mpa"],
    )
    controller = PressureController(
        control["kp_per_s"],
        control["ki_per_s2"],
        control["hold_ki_per_s2"],
        control["integral_limit_mpa_s"],
        control["switch_band_mpa_s"],
        model,
    )
    core = PressCore(
        profile,
        calibration,
        controller,
        config["safety"],
        ambient_mpa=control["ambient_mpa"],
        filter_alpha=control["filter_alpha"],
        filter_beta=control["filter_beta"],
        telemetry_decimation=config["telemetry_decimation"],
        history_samples=config["history_samples"],
        config_errors=errors,
        board_kind=board_kind,
        board_id=config["board_id"],
        reset_cause=reset_cause,
        boot_count=boot_count,
        control_period_ms=config["control_period_ms"],
        sample_packer=packers[0],
        event_packer=packers[1],
    )
    core.gc_every_ticks = config["gc_every_ticks"]
    return core


def load_config(board) -> tuple:
    """(config, errors) from the board's config.json. The validator is needed once, at
    boot: it is imported here and dropped again, which gives its ~13 KB back to the heap."""
    from isofw import config as config_mod

    config, errors = config_mod.load(board.read_config_text(), board.name)
    del config_mod
    sys.modules.pop("isofw.config", None)
    import isofw

    if hasattr(isofw, "config"):
        delattr(isofw, "config")
    gc.collect()
    return (config, errors)


def boot(board, packers=(None, None)) -> PressCore:
    """Validate the board's config and build the core. A bad or missing config gives a
    core latched in F_CONFIG_INVALID: outputs safe, every error kept in core.config_errors."""
    config, errors = load_config(board)
    for line in errors:
        print("config error:", line)
    board.configure(config)
    return build_core(config, errors, board.name, board.reset_cause(), board.boot_count(), packers)


def run(board, core: PressCore, link=None, observer=None) -> int:
    """Run until the board says stop (the virtual board at the end of its time).

    link: an object with service(now_ms) that reads the host's bytes, dispatches commands
    to the core and writes frames; it runs after the outputs are written. Returns the
    number of missed control ticks (overruns).
    """
    period_ms = core.control_period_ms
    inputs = Inputs()
    armed_counts = core.trip_counts
    board.arm_overpressure_trip(armed_counts)
    gc_every = core.gc_every_ticks
    mem_free = getattr(gc, "mem_free", None)  # MicroPython only
    gc_count = 0
    # The core's clock: milliseconds since boot, advanced by the tick schedule, so it
    # never wraps like the board's ticks_ms().
    now_ms = 0
    board.start_clock(period_ms)
    last_irq_ticks = board.irq_ticks()
    while board.keep_running:
        board.read_inputs(inputs)
        core.step(now_ms, inputs)
        board.write_outputs(core.pump_duty, core.vent_duty, core.dump_closed)
        # -- the outputs are out; everything below may take its time.
        if link is not None:
            link.service(now_ms)
        if core.trip_counts != armed_counts:  # a new profile or calibration moved the trip
            armed_counts = core.trip_counts
            board.arm_overpressure_trip(armed_counts)
        if core.take_hw_rearm():
            board.clear_overpressure_trip()
        if observer is not None:
            observer(now_ms, core)
        # The watchdog is fed only when this loop ran AND the interrupt monitor advanced:
        # a dead timer interrupt means no hard over-pressure trip, so the board resets.
        irq_ticks = board.irq_ticks()
        if irq_ticks != last_irq_ticks:
            board.feed_watchdog()
            last_irq_ticks = irq_ticks
        # Collect on a fixed cadence, here after the outputs: MicroPython collects by
        # itself only when an allocation fails, which must then never happen inside
        # step(). The budget (docs/firmware.md): gc_every_ticks * bytes allocated per
        # tick stays well below the free heap after a collection, which is recorded.
        gc_count += 1
        if gc_count >= gc_every:
            gc_count = 0
            gc.collect()
            if mem_free is not None:
                core.heap_free_after_gc = mem_free()
        missed = board.wait_next_tick()
        if missed:
            core.note_overruns(missed)
        now_ms += period_ms * (missed + 1)
    return core.overruns
