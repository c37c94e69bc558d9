# Commands from the host: full validation, a specific reason for every refusal, and no
# change at all when refusing. The serial link calls these (through PressCore's methods
# of the same names) after the outputs of a tick are written.
#
# Each returns (result, reason, detail, problems) with codes from isoproto.codes: detail
# is the ACK value on success (run id, recipe id, profile hash, staged count) or the NAK
# detail on refusal (segment or field index, fault bit, state); problems is a tuple of
# (reason, index) pairs, every problem found (the NAK's problem list).

import math

from isofw.calibration import Calibration, calibration_errors
from isofw.profile import PROFILE_FIELDS, DeviceProfile, profile_errors
from isofw.recipe import MAX_SEGMENTS, recipe_id, segment_problems
from isofw.safety import IN_CLOSURE_LOCKED, IN_ESTOP_RELEASED, IN_GLOVEBOX_OK
from isoproto.codes import (
    EV_FAULT_CLEARED,
    EV_RECIPE_LOADED,
    EV_RUN_STARTED,
    EV_SEGMENT_CHANGED,
    F_CLOSURE_UNLOCKED,
    F_ESTOP,
    F_GLOVEBOX_LOST,
    R_BAD_STATE,
    R_BUSY,
    R_CAUSE_PERSISTS,
    R_CHUNK_OUT_OF_RANGE,
    R_EMPTY_RECIPE,
    R_MALFORMED,
    R_NO_RECIPE,
    R_NONE,
    R_NOT_FINITE,
    R_RECIPE_MISMATCH,
    R_TOO_MANY_SEGMENTS,
    R_VALUE_OUT_OF_RANGE,
    RESULT_ERROR,
    RESULT_OK,
    RESULT_REJECTED,
    ST_COMPLETE,
    ST_DEPRESSURISING,
    ST_ESTOP,
    ST_FAULT,
    ST_IDLE,
    ST_PAUSED,
    ST_READY,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

BIT_HW = const(0x0001)  # 1 << F_OVERPRESSURE_HW
BIT_GLOVEBOX = const(0x2000)  # 1 << F_GLOVEBOX_LOST

# Why the press is venting under control (core.vent_mode).
VENT_NONE = const(0)
VENT_FAULT = const(1)  # a VENT fault: ends in FAULT with the dump valve open
VENT_ABORT = const(2)  # the operator aborted: ends in READY
VENT_FINISH = const(3)  # the recipe ended above ambient: ends in COMPLETE

_NO_PROBLEMS = ()


def _ok(value=0) -> tuple:
    return (RESULT_OK, R_NONE, value, _NO_PROBLEMS)


def _reject(reason: int, detail=0, problems=_NO_PROBLEMS) -> tuple:
    return (RESULT_REJECTED, reason, detail, problems)


def _error(reason: int, detail=0) -> tuple:
    return (RESULT_ERROR, reason, detail, _NO_PROBLEMS)


def _i32(value: int) -> int:
    """A u32 (recipe id) as the EVENT detail's i32."""
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value >= 0x80000000 else value


def _lowest_bit(mask: int) -> int:
    bit = 0
    while mask and not mask & 1:
        mask >>= 1
        bit += 1
    return bit


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(x) -> bool:
    return _is_number(x) and math.isfinite(x)


def _idle_like(core) -> bool:
    s = core.state
    return s == ST_IDLE or s == ST_READY or s == ST_COMPLETE


def load_recipe_chunk(core, recipe_id_u32, total_segments, first_index, segments) -> tuple:
    """Stage segments[first_index:...] of a recipe of total_segments; commit on the last chunk.

    segments: sequence of (kind, target_mpa, rate_mpa_s, duration_s). The recipe becomes
    active (state READY) when all total_segments arrived and their id is recipe_id_u32.
    """
    if not _idle_like(core):
        return _reject(R_BAD_STATE, core.state)
    if not isinstance(recipe_id_u32, int) or recipe_id_u32 < 0 or recipe_id_u32 > 0xFFFFFFFF:
        return _error(R_MALFORMED)
    if not isinstance(total_segments, int) or not isinstance(first_index, int):
        return _error(R_MALFORMED)
    if total_segments == 0:
        return _reject(R_EMPTY_RECIPE)
    if total_segments < 0:
        return _reject(R_VALUE_OUT_OF_RANGE)
    if total_segments > MAX_SEGMENTS:
        return _reject(R_TOO_MANY_SEGMENTS, MAX_SEGMENTS)
    try:
        n = len(segments)
    except TypeError:
        return _error(R_MALFORMED)
    staging = core._staging
    if first_index != 0:
        if core._staging_total == 0:
            return _reject(R_CHUNK_OUT_OF_RANGE, first_index)
        if staging.recipe_id != recipe_id_u32 or core._staging_total != total_segments:
            return _reject(R_BUSY, first_index)
        if first_index != staging.count:
            return _reject(R_CHUNK_OUT_OF_RANGE, first_index)
    if n == 0 or first_index < 0 or first_index + n > total_segments:
        return _reject(R_CHUNK_OUT_OF_RANGE, first_index)
    previous = core._staging_prev_target if first_index else 0.0
    problems = []
    for i in range(n):
        seg = segments[i]
        try:
            ok = len(seg) == 4 and isinstance(seg[0], int)
            ok = ok and _is_number(seg[1]) and _is_number(seg[2]) and _is_number(seg[3])
        except (TypeError, KeyError, IndexError):
            ok = False
        if not ok:
            problems.append((R_MALFORMED, first_index + i))
            continue
        previous = segment_problems(core.profile, seg, previous, first_index + i, problems)
    if problems:
        return _reject(problems[0][0], problems[0][1], tuple(problems))
    complete = first_index + n == total_segments
    if complete and recipe_id(segments, staging, first_index) != recipe_id_u32:
        return _reject(R_RECIPE_MISMATCH, 0)
    if first_index == 0:
        staging.clear()
        staging.recipe_id = recipe_id_u32
        core._staging_total = total_segments
    for i in range(n):
        staging.put(first_index + i, segments[i])
    staging.count = first_index + n
    core._staging_prev_target = previous
    if not complete:
        return _ok(staging.count)
    core.recipe.copy_from(staging)
    staging.clear()
    core._staging_total = 0
    core._update_limits()
    core._event(EV_RECIPE_LOADED, core.recipe.count, _i32(recipe_id_u32), 0.0)
    core._set_state(ST_READY)
    return _ok(recipe_id_u32)


def load_recipe(core, segments) -> tuple:
    """Load a whole recipe in one call (tests, the virtual board's script)."""
    segments = [tuple(s) for s in segments]
    try:
        rid = recipe_id(segments)
    except (TypeError, ValueError, OverflowError):
        return _error(R_MALFORMED)
    return core.load_recipe_chunk(rid, len(segments), 0, segments)


def start(core, recipe_id_u32) -> tuple:
    """Run the loaded recipe; ACK value = the new run id."""
    if core.recipe.count == 0:
        return _reject(R_NO_RECIPE)
    if not (core.state == ST_READY or core.state == ST_COMPLETE):
        return _reject(R_BAD_STATE, core.state)
    if recipe_id_u32 != core.recipe.recipe_id:
        return _reject(R_RECIPE_MISMATCH)
    bits = core.inputs_bits
    if not bits & IN_ESTOP_RELEASED:
        return _reject(R_BAD_STATE, F_ESTOP)
    if not bits & IN_CLOSURE_LOCKED:
        return _reject(R_BAD_STATE, F_CLOSURE_UNLOCKED)
    if not bits & IN_GLOVEBOX_OK:
        return _reject(R_BAD_STATE, F_GLOVEBOX_LOST)
    if core.faults:
        return _reject(R_BAD_STATE, _lowest_bit(core.faults))
    core.run_id = (core.run_id + 1) & 0xFFFF
    core._run_active = True
    core._host_seen_ms = core.now_ms
    core.controller.reset()
    core.monitor.reset()
    core.sensing.reset()
    core.setpoints.start(core.recipe, core.now_ms, core.pressure_mpa)
    core._fall_cap_mpa_s = core.recipe.vent_rate_mpa_s(core.profile)
    core.segment = 0
    core.setpoint_mpa = core.pressure_mpa
    core._event(EV_RUN_STARTED, 0, core.run_id, core.pressure_mpa)
    core._event(EV_SEGMENT_CHANGED, 0, core.run_id, core.pressure_mpa)
    core._set_state(core._phase_state())
    return _ok(core.run_id)


def pause(core) -> tuple:
    if not core._running():
        return _reject(R_BAD_STATE, core.state)
    core.setpoint_mpa = core.setpoints.setpoint_mpa
    core._pause(core.now_ms)
    return _ok()


def resume(core) -> tuple:
    if core.state != ST_PAUSED:
        return _reject(R_BAD_STATE, core.state)
    if core.causes & BIT_GLOVEBOX or not core.inputs_bits & IN_GLOVEBOX_OK:
        return _reject(R_CAUSE_PERSISTS, F_GLOVEBOX_LOST)
    core.setpoints.resume(core.now_ms)
    core._set_state(core._phase_state())
    return _ok()


def abort(core) -> tuple:
    """End the run: depressurise under control at the recipe's down-rate, then READY."""
    if not (core._running() or core.state == ST_PAUSED):
        return _reject(R_BAD_STATE, core.state)
    if core.pressure_mpa > core.vent.residual_mpa:  # (the vent's tail: isofw.vent)
        core.vent.begin(core, VENT_ABORT)
        core._set_state(ST_DEPRESSURISING)
    else:
        core._finish(ST_READY)
    return _ok()


def reset_faults(core) -> tuple:
    """Leave FAULT/ESTOP when every latched fault's cause is gone."""
    if core.vent_mode != VENT_NONE:
        return _reject(R_BAD_STATE, core.state)  # still depressurising under control
    persisting = core.level & core.faults
    if persisting:
        return _reject(R_CAUSE_PERSISTS, _lowest_bit(persisting))
    if not (core.state == ST_FAULT or core.state == ST_ESTOP) and not core.faults:
        return _ok()
    hw = core.faults & BIT_HW
    cleared = core.faults
    core.faults = 0
    bit = 0
    while cleared:
        if cleared & 1:
            core._event(EV_FAULT_CLEARED, bit, 1, core.pressure_mpa)
        cleared >>= 1
        bit += 1
    if hw:
        core.hw_rearm_requested = True
    core.monitor.reset()
    core.sensing.reset()
    core.controller.reset()
    if core.state == ST_FAULT or core.state == ST_ESTOP:
        core._set_state(ST_READY if core.recipe.count else ST_IDLE)
    return _ok()


def set_device_profile(
    core,
    max_working_mpa,
    trip_mpa,
    max_ramp_up_mpa_s,
    max_ramp_down_mpa_s,
    max_hold_s,
    margin_mpa,
    host_lost_timeout_ms,
    host_lost_policy,
) -> tuple:
    """Replace the device profile (not during a run); ACK value = the new profile hash.

    A loaded recipe that no longer fits the new profile is unloaded (state IDLE).
    """
    values = (
        max_working_mpa,
        trip_mpa,
        max_ramp_up_mpa_s,
        max_ramp_down_mpa_s,
        max_hold_s,
        margin_mpa,
        host_lost_timeout_ms,
        host_lost_policy,
    )
    if not _idle_like(core) and not (core.state == ST_FAULT and core.vent_mode == VENT_NONE):
        return _reject(R_BAD_STATE, core.state)
    problems = _field_problems(values, profile_errors(values, core.calibration.range_mpa), PROFILE_FIELDS)
    if problems:
        return _reject(problems[0][0], problems[0][1], problems)
    profile = DeviceProfile(*values)
    _apply_profile(core, profile)
    return _ok(profile.profile_hash())


def _apply_profile(core, profile: DeviceProfile):
    core.profile = profile
    core.setpoints.profile = profile
    core.monitor.configure(profile)
    core._staging.clear()
    core._staging_total = 0
    if core.recipe.count and core.recipe.problems(profile):
        core.recipe.clear()
        if core.state == ST_READY or core.state == ST_COMPLETE:
            core._set_state(ST_IDLE)
    core._update_limits()


def set_calibration(core, cal_id, cal_date, range_mpa, shunt_ohm, offset_mpa, gain) -> tuple:
    """Replace the transducer calibration (not during a run)."""
    if not _idle_like(core) and not (core.state == ST_FAULT and core.vent_mode == VENT_NONE):
        return _reject(R_BAD_STATE, core.state)
    numbers = (range_mpa, shunt_ohm, offset_mpa, gain)
    fields = (("cal_id",), ("cal_date",), ("range_mpa",), ("shunt_ohm",), ("offset_mpa",), ("gain",))
    values = (cal_id, cal_date) + numbers
    vref = core.calibration.adc_vref_v
    errors = calibration_errors(cal_id, cal_date, range_mpa, shunt_ohm, offset_mpa, gain, vref)
    if not errors and core.profile.trip_mpa >= range_mpa:
        errors.append(("range_mpa", "must be above the profile's trip pressure"))
    problems = _field_problems(values, errors, fields)
    if problems:
        return _reject(problems[0][0], problems[0][1], problems)
    cal = Calibration(range_mpa, shunt_ohm, vref, offset_mpa, gain, cal_id, cal_date)
    core.calibration = cal
    core.sensing.configure(cal)
    core._update_limits()
    return _ok()


def _field_problems(values, errors, fields) -> tuple:
    names = [f[0] for f in fields]
    problems = []
    for name, _ in errors:
        index = names.index(name) if name in names else 0
        reason = (
            R_NOT_FINITE if not _finite(values[index]) and _is_number(values[index]) else R_VALUE_OUT_OF_RANGE
        )
        if (reason, index) not in problems:
            problems.append((reason, index))
    return tuple(problems)


# -- for HELLO and the host --------------------------------------------------------
