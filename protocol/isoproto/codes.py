# Numbers shared by board and host: machine states, faults, NAK reasons, event kinds,
# reset causes. The board sends numbers; the host turns them into words with the tables in
# isoproto.names (kept out of this module: the board never needs the words, and they cost
# ~11 KB of an RP2040's heap). Numbers are part of protocol v1: never renumber, only add.

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

# -- machine states (TELEMETRY.state, EVENT STATE_CHANGED code) ---------------------
ST_BOOT = const(0)
ST_IDLE = const(1)
ST_READY = const(2)  # a valid recipe is loaded
ST_PRESSURISING = const(3)  # running, in a segment that raises pressure
ST_HOLDING = const(4)  # running, in a hold segment
ST_DEPRESSURISING = const(5)  # running, in a segment that lowers pressure (or a controlled vent)
ST_PAUSED = const(6)  # holding the current pressure on request or interlock
ST_COMPLETE = const(7)
ST_FAULT = const(8)  # latched; leaving it needs the cause gone and an explicit reset
ST_ESTOP = const(9)

# -- how the board runs a recipe ------------------------------------------------------
# A ramp down's rate is a limit ("never faster than the recipe allows"): the setpoint
# moves at this fraction of it (per mille) so that the loop's tracking noise, +0.5 % over
# 1 s windows on the nominal scenario, stays under the recipe's rate. A ramp down
# therefore runs 1 % slow, inside the +-2 % the ramp accuracy allows. Autonomous
# depressurisations (abort, host lost, the final vent) use it too.
DOWN_RATE_PERMILLE = const(990)
# ...and its rate goes linearly over this time (a soft start) from the rate it enters
# with (a ramp down just before it, else 0) to its own: from 0, the ramp takes
# DOWN_SOFT_START_MS / 2 longer. Host and board compute durations with both.
DOWN_SOFT_START_MS = const(2000)


# -- faults: bit numbers of TELEMETRY.faults (a u16 mask), EVENT FAULT_* code -------
F_OVERPRESSURE_HW = const(0)  # hard comparator on raw ADC counts (interrupt)
F_OVERPRESSURE_SW = const(1)  # software limit: recipe maximum plus margin
F_RISE_RATE = const(2)
F_FALL_RATE = const(3)
F_TRANSDUCER_LOW = const(4)  # NAMUR NE43: <= 3.6 mA (open wire)
F_TRANSDUCER_HIGH = const(5)  # NAMUR NE43: >= 21 mA (short)
F_TRANSDUCER_STUCK = const(6)  # no change while the pump runs
F_TRANSDUCER_SLEW = const(7)  # physically impossible change
F_TRANSDUCER_MISMATCH = const(8)  # second transducer disagrees
F_PRESSURISE_TIMEOUT = const(9)  # pump driven, pressure not rising: leak or burst bag
F_HOLD_LEAK = const(10)  # decay in a hold faster than the threshold
F_CLOSURE_UNLOCKED = const(11)  # vessel closure not locked
F_ESTOP = const(12)
F_GLOVEBOX_LOST = const(13)  # glovebox permissive lost
F_HOST_LOST = const(14)  # no host heartbeat within the profile's timeout
F_CONFIG_INVALID = const(15)  # bad or missing config on the board

FAULT_COUNT = const(16)


# -- event kinds (EVENT.kind) ------------------------------------------------------
EV_FAULT_RAISED = const(1)  # code = fault bit
EV_FAULT_CLEARED = const(2)  # code = fault bit
EV_STATE_CHANGED = const(3)  # code = new state, detail = previous state
EV_SEGMENT_CHANGED = const(4)  # code = new segment index
EV_RECIPE_LOADED = const(5)  # detail = recipe id
EV_RUN_STARTED = const(6)  # detail = run id
EV_RUN_ENDED = const(7)  # code = final state, detail = run id
EV_LOOP_OVERRUN = const(8)  # detail = overrun count so far
EV_BOOT = const(9)  # code = reset cause


# -- reset causes (HELLO.reset_cause, EVENT BOOT code) -----------------------------
RESET_UNKNOWN = const(0)
RESET_POWER_ON = const(1)
RESET_WATCHDOG = const(2)
RESET_SOFT = const(3)
RESET_HARD = const(4)
RESET_DEEPSLEEP = const(5)


# -- command results (ACK/NAK.result) and reasons (NAK.reason) ---------------------
RESULT_OK = const(0)
RESULT_REJECTED = const(1)  # understood, refused; nothing changed
RESULT_ERROR = const(2)  # could not be parsed or executed; nothing changed

R_NONE = const(0)
R_UNKNOWN_COMMAND = const(1)
R_MALFORMED = const(2)
R_BAD_STATE = const(3)  # e.g. load while running, resume when not paused
R_NO_RECIPE = const(4)  # start without a valid recipe
R_RECIPE_MISMATCH = const(5)  # start names a recipe other than the loaded one
R_TARGET_TOO_HIGH = const(6)  # above maximum working pressure (with margin below the trip)
R_RATE_UP_TOO_HIGH = const(7)
R_RATE_DOWN_TOO_HIGH = const(8)
R_HOLD_TOO_LONG = const(9)
R_NOT_FINITE = const(10)  # NaN or infinite number
R_TOO_MANY_SEGMENTS = const(11)
R_CAUSE_PERSISTS = const(12)  # reset while the fault's cause is still present
R_RECIPE_INCOMPLETE = const(13)  # chunks missing
R_BAD_SEGMENT_KIND = const(14)
R_CHUNK_OUT_OF_RANGE = const(15)
R_VALUE_OUT_OF_RANGE = const(16)  # negative, zero rate, limit beyond the hardware
R_HISTORY_UNAVAILABLE = const(17)  # requested samples no longer in the ring
R_VERSION_MISMATCH = const(18)  # protocol major differs
R_EMPTY_RECIPE = const(19)
R_TARGET_NEGATIVE = const(20)
R_RATE_NOT_POSITIVE = const(21)
R_BUSY = const(22)  # window full or chunked load in progress from another recipe
R_RECIPE_HASH = const(23)  # the recipe id does not match the segments received


# -- recipe segment kinds -------------------------------------------------------------
SEG_RAMP = const(1)  # to target_mpa at rate_mpa_s (up or down by the sign of the change)
SEG_HOLD = const(2)  # at the previous target for duration_s


# -- TELEMETRY.flags bits --------------------------------------------------------------
FLAG_DUMP_CLOSED = const(0x01)  # dump valve energised (closed); 0 = open = safe
FLAG_CLOSURE_LOCKED = const(0x02)
FLAG_ESTOP_OK = const(0x04)  # e-stop released
FLAG_GLOVEBOX_OK = const(0x08)  # glovebox permissive present
FLAG_HOST_OK = const(0x10)  # host heartbeat current
FLAG_HW_TRIP = const(0x20)  # hard over-pressure comparator latched

# -- host-lost policies (device profile) -------------------------------------------------
HOST_LOST_FINISH = const(0)  # finish the recipe autonomously
HOST_LOST_DEPRESSURISE = const(1)  # depressurise at the recipe's ramp-down rate (never a dump)
