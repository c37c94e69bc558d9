# The fault -> action table. docs/safety.md holds the same table for people; a test
# parses that document and checks it against this one, so they cannot drift apart.
#
# Actions, most severe first:
#   DUMP   people at risk: pump off, vent closed, dump valve de-energised (open) at once;
#   VENT   the run is at risk: pump off, depressurise under control at the recipe's
#          ramp-down rate, open the dump valve only once the vessel is near ambient;
#   PAUSE  hold the current pressure until the operator resumes;
#   POLICY host lost: the device profile says FINISH (carry on, report) or DEPRESSURISE
#          (VENT); never a dump;
#   NONE   report only.
# Latched faults stay until their cause is gone AND the host sends RESET_FAULTS.
# Unlatched faults clear themselves when the cause goes (the state they caused does not:
# a paused run waits for RESUME).

from isoproto.codes import (
    F_CLOSURE_UNLOCKED,
    F_CONFIG_INVALID,
    F_ESTOP,
    F_FALL_RATE,
    F_GLOVEBOX_LOST,
    F_HOLD_LEAK,
    F_HOST_LOST,
    F_OVERPRESSURE_HW,
    F_OVERPRESSURE_SW,
    F_PRESSURISE_TIMEOUT,
    F_RISE_RATE,
    F_TRANSDUCER_HIGH,
    F_TRANSDUCER_LOW,
    F_TRANSDUCER_MISMATCH,
    F_TRANSDUCER_SLEW,
    F_TRANSDUCER_STUCK,
    FAULT_COUNT,
    HOST_LOST_DEPRESSURISE,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

ACT_NONE = const(0)
ACT_PAUSE = const(1)
ACT_VENT = const(2)
ACT_DUMP = const(3)
ACT_POLICY = const(4)  # resolved through the profile's host-lost policy

ACTION_NAMES = ("none", "pause", "vent", "dump", "policy")

# bit -> (action, latched). Indexed by the codes.F_* bit numbers.
_TABLE = {
    F_OVERPRESSURE_HW: (ACT_DUMP, True),
    F_OVERPRESSURE_SW: (ACT_DUMP, True),
    F_RISE_RATE: (ACT_VENT, True),
    F_FALL_RATE: (ACT_VENT, True),
    F_TRANSDUCER_LOW: (ACT_DUMP, True),
    F_TRANSDUCER_HIGH: (ACT_DUMP, True),
    F_TRANSDUCER_STUCK: (ACT_DUMP, True),
    F_TRANSDUCER_SLEW: (ACT_DUMP, True),
    F_TRANSDUCER_MISMATCH: (ACT_DUMP, True),
    F_PRESSURISE_TIMEOUT: (ACT_VENT, True),
    F_HOLD_LEAK: (ACT_VENT, True),
    F_CLOSURE_UNLOCKED: (ACT_DUMP, True),
    F_ESTOP: (ACT_DUMP, True),
    F_GLOVEBOX_LOST: (ACT_PAUSE, False),
    F_HOST_LOST: (ACT_POLICY, False),
    F_CONFIG_INVALID: (ACT_DUMP, True),
}

FAULT_ACTION = bytes(_TABLE[bit][0] for bit in range(FAULT_COUNT))
LATCHED_MASK = 0
for _bit in range(FAULT_COUNT):
    if _TABLE[_bit][1]:
        LATCHED_MASK |= 1 << _bit
del _TABLE


def fault_action(bit: int, host_lost_policy: int) -> int:
    action = FAULT_ACTION[bit]
    if action == ACT_POLICY:
        return ACT_VENT if host_lost_policy == HOST_LOST_DEPRESSURISE else ACT_NONE
    return action


def worst_action(mask: int, host_lost_policy: int) -> int:
    """The most severe action any fault in mask calls for."""
    worst = ACT_NONE
    bit = 0
    while mask:
        if mask & 1:
            action = fault_action(bit, host_lost_policy)
            if action > worst:
                worst = action
        mask >>= 1
        bit += 1
    return worst
