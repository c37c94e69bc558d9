# Words for the numbers in isoproto.codes: what the host shows an operator in gloves.
# Host side (and tests): the board sends numbers and never imports this module. Index a
# table with the code; a code beyond a table's end comes from a newer board (show it as a
# number).

STATE_NAMES = (
    "boot",
    "idle",
    "ready",
    "pressurising",
    "holding",
    "depressurising",
    "paused",
    "complete",
    "fault",
    "estop",
)

FAULT_NAMES = (
    "overpressure_hw",
    "overpressure_sw",
    "rise_rate",
    "fall_rate",
    "transducer_low",
    "transducer_high",
    "transducer_stuck",
    "transducer_slew",
    "transducer_mismatch",
    "pressurise_timeout",
    "hold_leak",
    "closure_unlocked",
    "estop",
    "glovebox_lost",
    "host_lost",
    "config_invalid",
)

# Words an operator in gloves can act on (host side turns fault codes into these).
FAULT_TEXT = (
    "over-pressure: hardware trip on the raw transducer reading",
    "over-pressure: above the recipe maximum plus margin",
    "pressure rising faster than the device allows",
    "pressure falling faster than the device allows",
    "transducer current too low (open wire?)",
    "transducer current too high (short circuit?)",
    "transducer reading stuck while the pump runs",
    "transducer reading changed faster than physically possible",
    "the two transducers disagree",
    "pump running but pressure not rising (leak or burst bag?)",
    "pressure decaying in a hold faster than allowed (leak?)",
    "vessel closure not locked",
    "emergency stop pressed",
    "glovebox permissive lost",
    "host heartbeat lost",
    "board configuration missing or invalid",
)

EVENT_NAMES = (
    "none",
    "fault_raised",
    "fault_cleared",
    "state_changed",
    "segment_changed",
    "recipe_loaded",
    "run_started",
    "run_ended",
    "loop_overrun",
    "boot",
)

RESET_NAMES = ("unknown", "power_on", "watchdog", "soft", "hard", "deepsleep")

REASON_NAMES = (
    "none",
    "unknown_command",
    "malformed",
    "bad_state",
    "no_recipe",
    "recipe_mismatch",
    "target_too_high",
    "rate_up_too_high",
    "rate_down_too_high",
    "hold_too_long",
    "not_finite",
    "too_many_segments",
    "cause_persists",
    "recipe_incomplete",
    "bad_segment_kind",
    "chunk_out_of_range",
    "value_out_of_range",
    "history_unavailable",
    "version_mismatch",
    "empty_recipe",
    "target_negative",
    "rate_not_positive",
    "busy",
    "recipe_hash",
)

REASON_TEXT = (
    "",
    "the board does not know this command",
    "the command could not be decoded",
    "not allowed in the press's current state",
    "no valid recipe is loaded",
    "the recipe named does not match the loaded one",
    "target above the maximum working pressure",
    "ramp-up rate above the device maximum",
    "ramp-down rate above the device maximum",
    "hold longer than the device maximum",
    "a number is NaN or infinite",
    "more segments than the board holds",
    "the fault's cause is still present",
    "not all recipe chunks arrived",
    "unknown segment kind",
    "chunk index outside the recipe",
    "value out of range",
    "the requested samples are no longer on the board",
    "protocol major version differs",
    "the recipe has no segments",
    "target pressure is negative",
    "rate must be positive",
    "the board is busy; retry",
    "the recipe id does not match the segments received (chunks corrupted or mixed)",
)

SEGMENT_NAMES = ("none", "ramp", "hold")
