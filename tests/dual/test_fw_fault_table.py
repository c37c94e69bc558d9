# docs/safety.md's fault -> action table is the code's table, and the control step does
# what it says for every fault. CPython and MicroPython.

from isofw import config, faults
from isofw.app import build_core
from isofw.core import VENT_FAULT, Inputs
from isofw.recipe import hold, ramp
from isofw.safety import BIT_HW, BIT_SW
from isofw.sensing import BIT_LOW
from isoproto import codes, names

_REPO = __file__.rsplit("/", 3)[0]


def _doc_table() -> dict:
    """bit -> (name, action, latched) from the table in docs/safety.md."""
    rows = {}
    with open(_REPO + "/docs/safety.md") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and cells[0].isdigit():
                rows[int(cells[0])] = (cells[1], cells[2], cells[3])
    return rows


def test_the_document_lists_every_fault_once():
    table = _doc_table()
    assert sorted(table) == list(range(codes.FAULT_COUNT))


def test_the_document_and_the_code_agree_on_name_action_and_latching():
    for bit, (name, action, latched) in _doc_table().items():
        assert name == names.FAULT_NAMES[bit], bit
        assert action == faults.ACTION_NAMES[faults.FAULT_ACTION[bit]], (name, action)
        assert latched == ("yes" if faults.LATCHED_MASK & (1 << bit) else "no"), name


# The literal const() masks in the modules (MicroPython folds only literals) and the
# protocol's bit numbers they stand for.
_MASKS = {
    "BIT_HW": codes.F_OVERPRESSURE_HW,
    "BIT_SW": codes.F_OVERPRESSURE_SW,
    "BIT_RISE": codes.F_RISE_RATE,
    "BIT_FALL": codes.F_FALL_RATE,
    "BIT_LOW": codes.F_TRANSDUCER_LOW,
    "BIT_HIGH": codes.F_TRANSDUCER_HIGH,
    "BIT_STUCK": codes.F_TRANSDUCER_STUCK,
    "BIT_SLEW": codes.F_TRANSDUCER_SLEW,
    "BIT_MISMATCH": codes.F_TRANSDUCER_MISMATCH,
    "BIT_PRESSURISE": codes.F_PRESSURISE_TIMEOUT,
    "BIT_LEAK": codes.F_HOLD_LEAK,
    "BIT_CLOSURE": codes.F_CLOSURE_UNLOCKED,
    "BIT_ESTOP": codes.F_ESTOP,
    "BIT_GLOVEBOX": codes.F_GLOVEBOX_LOST,
    "BIT_HOST": codes.F_HOST_LOST,
    "BIT_CONFIG": codes.F_CONFIG_INVALID,
}


def test_fault_bit_constants_match_the_protocol_codes():
    assert BIT_HW == 1 << codes.F_OVERPRESSURE_HW
    assert BIT_SW == 1 << codes.F_OVERPRESSURE_SW
    assert BIT_LOW == 1 << codes.F_TRANSDUCER_LOW
    from isofw import commands, core, safety, sensing

    seen = 0
    for module in (core, commands, safety, sensing):
        for name in dir(module):
            if name.startswith("BIT_"):
                assert getattr(module, name) == 1 << _MASKS[name], name
                seen += 1
    assert seen >= len(_MASKS)


def test_worst_action_wins():
    both = (1 << codes.F_GLOVEBOX_LOST) | (1 << codes.F_HOLD_LEAK)
    assert faults.worst_action(both, codes.HOST_LOST_FINISH) == faults.ACT_VENT
    both |= 1 << codes.F_ESTOP
    assert faults.worst_action(both, codes.HOST_LOST_FINISH) == faults.ACT_DUMP
    host = 1 << codes.F_HOST_LOST
    assert faults.worst_action(host, codes.HOST_LOST_FINISH) == faults.ACT_NONE
    assert faults.worst_action(host, codes.HOST_LOST_DEPRESSURISE) == faults.ACT_VENT


# -- every fault through the real step ---------------------------------------------------


class _Injector:
    """Stands in for the monitor's check(): the real checks, plus the injected bits."""

    def __init__(self, real):
        self.real = real
        self.bits = 0

    def __call__(self, *args):
        return self.real(*args) | self.bits


def _running_core(policy):
    with open(_REPO + "/firmware/boards/sim/config.json") as f:
        cfg, errors = config.load(f.read(), "sim")
    cfg["profile"]["host_lost_policy"] = policy
    core = build_core(cfg, errors, "sim")
    injector = _Injector(core.monitor.check)
    core.monitor.check = injector
    t = 0
    core.step(t, _at(core, 0.0))
    core.load_recipe([ramp(100.0, 2.0), hold(600.0)])
    assert core.start(core.recipe.recipe_id)[0] == codes.RESULT_OK
    # Track the setpoint perfectly until the hold at 100 MPa.
    while t < 60000:
        t += 10
        core.host_heartbeat_seen(t)
        core.step(t, _at(core, core.setpoint_mpa))
    assert core.state == codes.ST_HOLDING and core.faults == 0
    return core, injector, t


def _at(core, p_mpa):
    return Inputs(counts=float(core.calibration.mpa_to_counts(p_mpa)) + 8.0)


def _check_action(bit, policy):
    core, injector, t = _running_core(policy)
    injector.bits = 1 << bit
    t += 10
    core.host_heartbeat_seen(t)
    core.step(t, _at(core, 100.0))
    action = faults.fault_action(bit, policy)
    if action == faults.ACT_DUMP:
        assert core.pump_duty == 0 and core.vent_duty == 0 and core.dump_closed is False, bit
        assert core.state == (codes.ST_ESTOP if bit == codes.F_ESTOP else codes.ST_FAULT)
    elif action == faults.ACT_VENT:
        assert core.state == codes.ST_FAULT and core.vent_mode == VENT_FAULT
        assert core.dump_closed is True and core.pump_duty == 0  # under control, no pump
        for _ in range(50):  # the vent setpoint falls at the recipe's rate: the vent opens
            t += 10
            core.step(t, _at(core, 100.0))
        assert core.vent_duty > 0 and core.dump_closed is True
    elif action == faults.ACT_PAUSE:
        assert core.state == codes.ST_PAUSED and core.dump_closed is True
    else:
        assert core.state == codes.ST_HOLDING and core.dump_closed is True
    assert core.faults & (1 << bit)
    raised = [e for e in core.events.since(0) if e[3] == codes.EV_FAULT_RAISED and e[4] == bit]
    assert raised[-1][5] == action  # the event tells the host what the board did
    # Cause gone: latched faults stay, unlatched ones clear.
    injector.bits = 0
    t += 10
    core.host_heartbeat_seen(t)
    core.step(t, _at(core, core.pressure_mpa))
    latched = bool(faults.LATCHED_MASK & (1 << bit))
    assert bool(core.faults & (1 << bit)) == latched, bit


def test_every_fault_takes_its_documented_action():
    for bit in range(codes.FAULT_COUNT):
        _check_action(bit, codes.HOST_LOST_DEPRESSURISE)
    _check_action(codes.F_HOST_LOST, codes.HOST_LOST_FINISH)
