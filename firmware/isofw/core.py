# The press's control core: one step per control tick, time and inputs in, outputs out.
#
# PressCore owns the state machine, the recipe, the controller and every main-loop
# safety check. It reads nothing but its arguments: no clock, no pins, no I/O. The board
# layer hands it an Inputs record each tick and writes pump_duty, vent_duty and
# dump_closed to the hardware afterwards. Outputs default to safe: anything the state
# does not explicitly command is pump off, vent closed, dump valve de-energised (open).
#
# Commands (what the serial link calls after the outputs are written) validate fully
# and change nothing when they refuse; each returns (result, reason, detail, problems)
# with codes from isoproto.codes: detail is the ACK value on success (run id, recipe
# id, ...) or the NAK detail (segment or field index, fault bit) on refusal; problems
# is a tuple of (reason, index) pairs, every problem found.

import math

from isofw import FIRMWARE_VERSION
from isofw.calibration import Calibration, calibration_errors
from isofw.control import PressureController
from isofw.faults import ACT_DUMP, ACT_PAUSE, ACT_VENT, LATCHED_MASK, worst_action
from isofw.profile import PROFILE_FIELDS, DeviceProfile, profile_errors
from isofw.recipe import MAX_SEGMENTS, Recipe, SetpointGenerator, recipe_id, segment_problems
from isofw.rings import EventRing, HistoryRing
from isofw.safety import IN_ALL_OK, IN_CLOSURE_LOCKED, IN_ESTOP_RELEASED, IN_GLOVEBOX_OK, SafetyMonitor
from isofw.sensing import PressureInput
from isoproto.codes import (
    EV_BOOT,
    EV_FAULT_CLEARED,
    EV_FAULT_RAISED,
    EV_LOOP_OVERRUN,
    EV_RECIPE_LOADED,
    EV_RUN_ENDED,
    EV_RUN_STARTED,
    EV_SEGMENT_CHANGED,
    EV_STATE_CHANGED,
    F_CLOSURE_UNLOCKED,
    F_ESTOP,
    F_GLOVEBOX_LOST,
    FAULT_COUNT,
    FLAG_CLOSURE_LOCKED,
    FLAG_DUMP_CLOSED,
    FLAG_ESTOP_OK,
    FLAG_GLOVEBOX_OK,
    FLAG_HOST_OK,
    FLAG_HW_TRIP,
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
    RESET_UNKNOWN,
    RESULT_ERROR,
    RESULT_OK,
    RESULT_REJECTED,
    ST_BOOT,
    ST_COMPLETE,
    ST_DEPRESSURISING,
    ST_ESTOP,
    ST_FAULT,
    ST_HOLDING,
    ST_IDLE,
    ST_PAUSED,
    ST_PRESSURISING,
    ST_READY,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

BIT_HW = const(0x0001)  # 1 << F_OVERPRESSURE_HW
BIT_ESTOP = const(0x1000)  # 1 << F_ESTOP
BIT_CONFIG = const(0x8000)  # 1 << F_CONFIG_INVALID
BIT_GLOVEBOX = const(0x2000)  # 1 << F_GLOVEBOX_LOST

# Why the press is venting under control (vent_mode).
VENT_NONE = const(0)
VENT_FAULT = const(1)  # a VENT fault: ends in FAULT with the dump valve open
VENT_ABORT = const(2)  # the operator aborted: ends in READY
VENT_FINISH = const(3)  # the recipe ended above ambient: ends in COMPLETE

_NO_PROBLEMS = ()


class Inputs:
    """What the board measured this tick. Preallocated once and refilled by the board.

    counts: mean of the interrupt's transducer samples (read_u16 scale, float);
    counts2: the same for the optional second transducer, < 0 when there is none;
    bits: IN_CLOSURE_LOCKED | IN_ESTOP_RELEASED | IN_GLOVEBOX_OK (1 = safe level);
    hw_tripped: the interrupt's hard over-pressure latch.
    """

    __slots__ = ("bits", "counts", "counts2", "hw_tripped")

    def __init__(self, counts=0.0, counts2=-1.0, bits=IN_ALL_OK, hw_tripped=False):
        self.counts = counts
        self.counts2 = counts2
        self.bits = bits
        self.hw_tripped = hw_tripped


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


class PressCore:
    """Pure control core: step() reads nothing but its arguments."""

    def __init__(
        self,
        profile: DeviceProfile,
        calibration: Calibration,
        controller: PressureController,
        safety: dict,
        ambient_mpa: float = 0.2,
        filter_alpha: float = 0.05,
        filter_beta: float = 0.0005,
        telemetry_decimation: int = 1,
        history_samples: int = 1024,
        config_errors=(),
        board_kind: str = "",
        board_id: str = "",
        reset_cause: int = RESET_UNKNOWN,
        boot_count: int = 0,
        control_period_ms: int = 10,
        sample_packer=None,
        event_packer=None,
    ):
        self.profile = profile
        self.calibration = calibration
        self.controller = controller
        self.model = controller.model
        self.safety_config = safety
        self.ambient_mpa = ambient_mpa
        self.sensing = PressureInput(calibration, safety, filter_alpha, filter_beta)
        self.monitor = SafetyMonitor(safety, self.model, profile)
        self.setpoints = SetpointGenerator(profile)
        self.recipe = Recipe()
        self._staging = Recipe()
        self._staging_total = 0
        self._staging_prev_target = 0.0
        self.history = HistoryRing(history_samples, sample_packer)
        self.events = EventRing(packer=event_packer)
        self.telemetry_decimation = telemetry_decimation
        self.control_period_ms = control_period_ms
        self.config_errors = tuple(config_errors)
        self.board_kind = board_kind
        self.board_id = board_id
        self.firmware_version = FIRMWARE_VERSION
        self.reset_cause = reset_cause
        self.boot_count = boot_count

        self.state = ST_BOOT
        self.faults = 0  # TELEMETRY.faults: bit n = codes.F_* n
        self.causes = 0  # fault causes present at the last step
        self.level = 0  # causes that are conditions still true (reset refused)
        self.vent_mode = VENT_NONE
        self.run_id = 0
        self.segment = 0
        self.pressure_mpa = 0.0
        self.setpoint_mpa = 0.0
        self.setpoint_rate_mpa_s = 0.0
        self.pump_duty = 0
        self.vent_duty = 0
        self.dump_closed = False  # normally-open dump valve: de-energised = open = safe
        self.flags = 0
        self.inputs_bits = 0
        self.trip_counts = 0
        self.hw_rearm_requested = False  # the board must clear its interrupt latch
        self.sample_seq = -1  # newest TELEMETRY sample (-1: none yet)
        self.overruns = 0
        self.gc_every_ticks = 1  # the loop's garbage-collection cadence (app.run reads it)
        self.heap_free_after_gc = -1  # free heap after the last collection (MicroPython)
        self.now_ms = 0
        self._last_ms = -1
        self._ticks = 0
        self._host_seen_ms = -1
        self._limit_mpa = 0.0
        self._run_active = False
        self._vent_rate_mpa_s = 0.0
        self._fall_cap_mpa_s = 0.0  # holds and ramps up never fall faster than this
        self._update_limits()
        self._event(EV_BOOT, reset_cause, boot_count, 0.0)

    # -- derived limits ---------------------------------------------------------------
    def _update_limits(self):
        profile = self.profile
        self.trip_counts = self.calibration.mpa_to_counts(profile.trip_mpa)
        top = profile.max_working_mpa
        if self.recipe.count:
            top = self.recipe.max_target_mpa()
        self._limit_mpa = top + profile.margin_mpa

    @property
    def software_limit_mpa(self) -> float:
        return self._limit_mpa

    # -- events -----------------------------------------------------------------------
    def _event(self, kind: int, code: int, detail: int, value: float):
        self.events.append(
            self.sample_seq if self.sample_seq >= 0 else 0, self.now_ms, kind, code, detail, value
        )

    def _set_state(self, state: int):
        previous = self.state
        if state != previous:
            self.state = state
            self._event(EV_STATE_CHANGED, state, previous, self.pressure_mpa)

    def _end_run(self, final_state: int):
        if self._run_active:
            self._run_active = False
            self._event(EV_RUN_ENDED, final_state, self.run_id, self.pressure_mpa)

    # -- the tick ---------------------------------------------------------------------
    def step(self, now_ms: int, inputs: Inputs):
        """One control tick at now_ms (ms since boot, never wrapping) with this tick's inputs."""
        dt_ms = now_ms - self._last_ms if self._last_ms >= 0 else 0
        self._last_ms = now_ms
        self.now_ms = now_ms
        dt_s = dt_ms / 1000.0
        if self.state == ST_BOOT:
            self._set_state(ST_IDLE)

        sensing = self.sensing
        # The outputs applied during the interval just measured are last tick's.
        sensing.update(now_ms, dt_s, inputs.counts, inputs.counts2, self.pump_duty)
        self.pressure_mpa = sensing.pressure_mpa
        self.inputs_bits = inputs.bits
        state = self.state
        controlling = self.dump_closed
        host_age_ms = now_ms - self._host_seen_ms if self._host_seen_ms >= 0 else 0
        causes = sensing.causes | self.monitor.check(
            now_ms,
            dt_s,
            sensing,
            inputs.bits,
            inputs.hw_tripped,
            inputs.counts >= self.trip_counts,
            state,
            controlling,
            self._run_active,
            self.pump_duty,
            self.vent_duty,
            self.dump_closed,
            self._limit_mpa,
            host_age_ms,
        )
        level = sensing.level | self.monitor.level
        if self.config_errors:
            causes |= BIT_CONFIG
            level |= BIT_CONFIG
        self.causes = causes
        self.level = level
        self._update_faults(causes)

        action = worst_action(self.faults, self.profile.host_lost_policy)
        if action == ACT_DUMP:
            self._dump()
        elif action == ACT_VENT:
            self._begin_fault_vent()
        elif action == ACT_PAUSE and self._running():
            self._pause(now_ms)

        self._control(now_ms, dt_s)
        self._record(now_ms, inputs)

    def _update_faults(self, causes: int):
        old = self.faults
        latched = (old & LATCHED_MASK) | (causes & LATCHED_MASK)
        new = latched | (causes & ~LATCHED_MASK)
        if new == old:
            return
        self.faults = new
        changed = new ^ old
        bit = 0
        while changed:
            if changed & 1:
                if new & (1 << bit):
                    self._event(EV_FAULT_RAISED, bit, 0, self.pressure_mpa)
                else:
                    self._event(EV_FAULT_CLEARED, bit, 0, self.pressure_mpa)
            changed >>= 1
            bit += 1

    def _running(self) -> bool:
        s = self.state
        return (
            s == ST_PRESSURISING or s == ST_HOLDING or s == ST_DEPRESSURISING
        ) and self.vent_mode == VENT_NONE

    def _safe_outputs(self):
        self.pump_duty = 0
        self.vent_duty = 0
        self.dump_closed = False

    def _dump(self):
        target = ST_ESTOP if self.faults & BIT_ESTOP else ST_FAULT
        if self.state != target or self.vent_mode != VENT_NONE:
            self.vent_mode = VENT_NONE
            self.controller.reset()
            self._safe_outputs()
            self._end_run(target)
            self._set_state(target)

    def _begin_fault_vent(self):
        if self.state == ST_FAULT or self.state == ST_ESTOP:
            return
        if self.vent_mode == VENT_NONE and self.dump_closed and self.pressure_mpa > self.ambient_mpa:
            self._begin_vent(VENT_FAULT)
        elif self.vent_mode != VENT_NONE:
            self.vent_mode = VENT_FAULT
        else:
            self._safe_outputs()
        self._end_run(ST_FAULT)
        self._set_state(ST_FAULT)

    def _begin_vent(self, mode: int):
        """Depressurise under control from where the press is, at the recipe's down-rate."""
        self.vent_mode = mode
        self.controller.reset()
        self._vent_rate_mpa_s = self.recipe.vent_rate_mpa_s(self.profile)
        self.setpoint_mpa = self.pressure_mpa
        self.setpoints.pause(self.now_ms)

    def _pause(self, now_ms: int):
        self.setpoints.pause(now_ms)
        self._set_state(ST_PAUSED)

    def _control(self, now_ms: int, dt_s: float):
        state = self.state
        if self.vent_mode != VENT_NONE:
            self._vent_step(dt_s)
            return
        if state == ST_PRESSURISING or state == ST_HOLDING or state == ST_DEPRESSURISING:
            gen = self.setpoints
            changed = gen.update(now_ms)
            if changed:
                if gen.done:
                    if self.pressure_mpa > self.ambient_mpa:
                        self._begin_vent(VENT_FINISH)
                        self._set_state(ST_DEPRESSURISING)
                        self._vent_step(dt_s)
                    else:
                        self._finish(ST_COMPLETE)
                    return
                self.segment = gen.index
                self._event(EV_SEGMENT_CHANGED, gen.index, self.run_id, self.pressure_mpa)
            self._set_state(self._phase_state())
            rate = gen.rate_mpa_s
            max_fall = -rate if rate < 0.0 else self._fall_cap_mpa_s
            self._drive(dt_s, gen.setpoint_mpa, rate, self.state == ST_HOLDING, max_fall)
        elif state == ST_PAUSED:
            self._drive(dt_s, self.setpoint_mpa, 0.0, True, self._fall_cap_mpa_s)
        else:
            self.setpoint_rate_mpa_s = 0.0
            self._safe_outputs()

    def _phase_state(self) -> int:
        direction = self.setpoints.direction()
        if direction > 0:
            return ST_PRESSURISING
        if direction < 0:
            return ST_DEPRESSURISING
        return ST_HOLDING

    def _drive(
        self, dt_s: float, setpoint_mpa: float, rate_mpa_s: float, holding: bool, max_fall_mpa_s: float
    ):
        # The fall cap limits how fast the pressure may fall, so it is loosened by however
        # fast it is rising now: against a runaway pump the vent opens as far as it takes.
        rising = self.monitor.rate_mpa_s
        if rising > 0.0:
            max_fall_mpa_s += rising
        c = self.controller
        self.setpoint_mpa = setpoint_mpa
        self.setpoint_rate_mpa_s = rate_mpa_s
        c.update(dt_s, setpoint_mpa, rate_mpa_s, self.pressure_mpa, holding, max_fall_mpa_s)
        self.pump_duty = c.pump_duty
        self.vent_duty = c.vent_duty
        self.dump_closed = True

    def _vent_step(self, dt_s: float):
        # Vent never pumps: a controlled depressurisation only opens the vent valve.
        p = self.pressure_mpa
        if p <= self.ambient_mpa:
            mode = self.vent_mode
            self.vent_mode = VENT_NONE
            self.controller.reset()
            self._safe_outputs()
            if mode == VENT_ABORT:
                self._finish(ST_READY)
            elif mode == VENT_FINISH:
                self._finish(ST_COMPLETE)
            return
        sp = self.setpoint_mpa - self._vent_rate_mpa_s * dt_s
        if sp < 0.0:
            sp = 0.0
        self._drive(dt_s, sp, -self._vent_rate_mpa_s, False, self._vent_rate_mpa_s)
        self.pump_duty = 0

    def _finish(self, final_state: int):
        self.controller.reset()
        self._safe_outputs()
        self._end_run(final_state)
        self._set_state(final_state)

    def _record(self, now_ms: int, inputs: Inputs):
        flags = 0
        if self.dump_closed:
            flags |= FLAG_DUMP_CLOSED
        bits = inputs.bits
        if bits & IN_CLOSURE_LOCKED:
            flags |= FLAG_CLOSURE_LOCKED
        if bits & IN_ESTOP_RELEASED:
            flags |= FLAG_ESTOP_OK
        if bits & IN_GLOVEBOX_OK:
            flags |= FLAG_GLOVEBOX_OK
        if self._host_seen_ms >= 0 and now_ms - self._host_seen_ms <= self.profile.host_lost_timeout_ms:
            flags |= FLAG_HOST_OK
        if inputs.hw_tripped:
            flags |= FLAG_HW_TRIP
        self.flags = flags
        self._ticks += 1
        if self._ticks >= self.telemetry_decimation:
            self._ticks = 0
            seq = (self.sample_seq + 1) & 0xFFFFFFFF
            self.history.append(
                seq,
                now_ms & 0xFFFFFFFF,
                self.pressure_mpa,
                self.setpoint_mpa,
                self.pump_duty,
                self.vent_duty,
                self.faults,
                self.state,
                flags,
                self.segment,
                self.run_id & 0xFFFF,
            )
            self.sample_seq = seq

    def note_overruns(self, missed_ticks: int):
        """The board missed missed_ticks control ticks (the loop overran its period)."""
        if missed_ticks > 0:
            self.overruns += missed_ticks
            self._event(EV_LOOP_OVERRUN, 0, self.overruns, 0.0)

    def take_hw_rearm(self) -> bool:
        """True once after RESET_FAULTS cleared a hard trip: the board clears its latch."""
        if self.hw_rearm_requested:
            self.hw_rearm_requested = False
            return True
        return False

    # -- commands (the serial link calls these after the outputs are written) ----------
    def host_heartbeat_seen(self, now_ms: int):
        """The host is alive at now_ms (a HEARTBEAT_HOST or any valid command arrived)."""
        self._host_seen_ms = now_ms

    def _idle_like(self) -> bool:
        s = self.state
        return s == ST_IDLE or s == ST_READY or s == ST_COMPLETE

    def load_recipe_chunk(self, recipe_id_u32, total_segments, first_index, segments) -> tuple:
        """Stage segments[first_index:...] of a recipe of total_segments; commit on the last chunk.

        segments: sequence of (kind, target_mpa, rate_mpa_s, duration_s). The recipe becomes
        active (state READY) when all total_segments arrived and their id is recipe_id_u32.
        """
        if not self._idle_like():
            return _reject(R_BAD_STATE, self.state)
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
        staging = self._staging
        if first_index != 0:
            if self._staging_total == 0:
                return _reject(R_CHUNK_OUT_OF_RANGE, first_index)
            if staging.recipe_id != recipe_id_u32 or self._staging_total != total_segments:
                return _reject(R_BUSY, first_index)
            if first_index != staging.count:
                return _reject(R_CHUNK_OUT_OF_RANGE, first_index)
        if n == 0 or first_index < 0 or first_index + n > total_segments:
            return _reject(R_CHUNK_OUT_OF_RANGE, first_index)
        previous = self._staging_prev_target if first_index else 0.0
        problems = []
        for i in range(n):
            seg = segments[i]
            try:
                ok = len(seg) == 4 and _is_number(seg[1]) and _is_number(seg[2]) and _is_number(seg[3])
            except TypeError:
                ok = False
            if not ok or not isinstance(seg[0], int):
                problems.append((R_MALFORMED, first_index + i))
                continue
            previous = segment_problems(self.profile, seg, previous, first_index + i, problems)
        if problems:
            return _reject(problems[0][0], problems[0][1], tuple(problems))
        complete = first_index + n == total_segments
        if complete:
            everything = [staging.segment(i) for i in range(first_index)] + [tuple(s) for s in segments]
            if recipe_id(everything) != recipe_id_u32:
                return _reject(R_RECIPE_MISMATCH, 0)
        if first_index == 0:
            staging.clear()
            staging.recipe_id = recipe_id_u32
            self._staging_total = total_segments
        for i in range(n):
            staging.put(first_index + i, segments[i])
        staging.count = first_index + n
        self._staging_prev_target = previous
        if not complete:
            return _ok(staging.count)
        self.recipe.copy_from(staging)
        staging.clear()
        self._staging_total = 0
        self._update_limits()
        self._event(EV_RECIPE_LOADED, self.recipe.count, _i32(recipe_id_u32), 0.0)
        self._set_state(ST_READY)
        return _ok(recipe_id_u32)

    def load_recipe(self, segments) -> tuple:
        """Load a whole recipe in one call (tests, the virtual board's script)."""
        segments = [tuple(s) for s in segments]
        try:
            rid = recipe_id(segments)
        except (TypeError, ValueError, OverflowError):
            return _error(R_MALFORMED)
        return self.load_recipe_chunk(rid, len(segments), 0, segments)

    def start(self, recipe_id_u32) -> tuple:
        """Run the loaded recipe; ACK value = the new run id."""
        if self.recipe.count == 0:
            return _reject(R_NO_RECIPE)
        if not (self.state == ST_READY or self.state == ST_COMPLETE):
            return _reject(R_BAD_STATE, self.state)
        if recipe_id_u32 != self.recipe.recipe_id:
            return _reject(R_RECIPE_MISMATCH)
        bits = self.inputs_bits
        if not bits & IN_ESTOP_RELEASED:
            return _reject(R_BAD_STATE, F_ESTOP)
        if not bits & IN_CLOSURE_LOCKED:
            return _reject(R_BAD_STATE, F_CLOSURE_UNLOCKED)
        if not bits & IN_GLOVEBOX_OK:
            return _reject(R_BAD_STATE, F_GLOVEBOX_LOST)
        if self.faults:
            return _reject(R_BAD_STATE, _lowest_bit(self.faults))
        self.run_id = (self.run_id + 1) & 0xFFFF
        self._run_active = True
        self._host_seen_ms = self.now_ms
        self.controller.reset()
        self.monitor.reset()
        self.sensing.reset()
        self.setpoints.start(self.recipe, self.now_ms, self.pressure_mpa)
        self._fall_cap_mpa_s = self.recipe.vent_rate_mpa_s(self.profile)
        self.segment = 0
        self.setpoint_mpa = self.pressure_mpa
        self._event(EV_RUN_STARTED, 0, self.run_id, self.pressure_mpa)
        self._event(EV_SEGMENT_CHANGED, 0, self.run_id, self.pressure_mpa)
        self._set_state(self._phase_state())
        return _ok(self.run_id)

    def pause(self) -> tuple:
        if not self._running():
            return _reject(R_BAD_STATE, self.state)
        self.setpoint_mpa = self.setpoints.setpoint_mpa
        self._pause(self.now_ms)
        return _ok()

    def resume(self) -> tuple:
        if self.state != ST_PAUSED:
            return _reject(R_BAD_STATE, self.state)
        if self.causes & BIT_GLOVEBOX or not self.inputs_bits & IN_GLOVEBOX_OK:
            return _reject(R_CAUSE_PERSISTS, F_GLOVEBOX_LOST)
        self.setpoints.resume(self.now_ms)
        self._set_state(self._phase_state())
        return _ok()

    def abort(self) -> tuple:
        """End the run: depressurise under control at the recipe's down-rate, then READY."""
        if not (self._running() or self.state == ST_PAUSED):
            return _reject(R_BAD_STATE, self.state)
        if self.pressure_mpa > self.ambient_mpa:
            self._begin_vent(VENT_ABORT)
            self._set_state(ST_DEPRESSURISING)
        else:
            self._finish(ST_READY)
        return _ok()

    def reset_faults(self) -> tuple:
        """Leave FAULT/ESTOP when every latched fault's cause is gone."""
        if self.vent_mode != VENT_NONE:
            return _reject(R_BAD_STATE, self.state)  # still depressurising under control
        persisting = self.level & self.faults
        if persisting:
            return _reject(R_CAUSE_PERSISTS, _lowest_bit(persisting))
        if not (self.state == ST_FAULT or self.state == ST_ESTOP) and not self.faults:
            return _ok()
        hw = self.faults & BIT_HW
        cleared = self.faults
        self.faults = 0
        bit = 0
        while cleared:
            if cleared & 1:
                self._event(EV_FAULT_CLEARED, bit, 1, self.pressure_mpa)
            cleared >>= 1
            bit += 1
        if hw:
            self.hw_rearm_requested = True
        self.monitor.reset()
        self.sensing.reset()
        self.controller.reset()
        if self.state == ST_FAULT or self.state == ST_ESTOP:
            self._set_state(ST_READY if self.recipe.count else ST_IDLE)
        return _ok()

    def set_device_profile(
        self,
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
        if not self._idle_like() and not (self.state == ST_FAULT and self.vent_mode == VENT_NONE):
            return _reject(R_BAD_STATE, self.state)
        problems = self._field_problems(
            values, profile_errors(values, self.calibration.range_mpa), PROFILE_FIELDS
        )
        if problems:
            return _reject(problems[0][0], problems[0][1], problems)
        profile = DeviceProfile(*values)
        self._apply_profile(profile)
        return _ok(profile.profile_hash())

    def _apply_profile(self, profile: DeviceProfile):
        self.profile = profile
        self.setpoints.profile = profile
        self.monitor.configure(profile)
        self._staging.clear()
        self._staging_total = 0
        if self.recipe.count and self.recipe.problems(profile):
            self.recipe.clear()
            if self.state == ST_READY or self.state == ST_COMPLETE:
                self._set_state(ST_IDLE)
        self._update_limits()

    def set_calibration(self, cal_id, cal_date, range_mpa, shunt_ohm, offset_mpa, gain) -> tuple:
        """Replace the transducer calibration (not during a run)."""
        if not self._idle_like() and not (self.state == ST_FAULT and self.vent_mode == VENT_NONE):
            return _reject(R_BAD_STATE, self.state)
        numbers = (range_mpa, shunt_ohm, offset_mpa, gain)
        fields = (("cal_id",), ("cal_date",), ("range_mpa",), ("shunt_ohm",), ("offset_mpa",), ("gain",))
        values = (cal_id, cal_date) + numbers
        vref = self.calibration.adc_vref_v
        errors = calibration_errors(cal_id, cal_date, range_mpa, shunt_ohm, offset_mpa, gain, vref)
        if not errors and self.profile.trip_mpa >= range_mpa:
            errors.append(("range_mpa", "must be above the profile's trip pressure"))
        problems = self._field_problems(values, errors, fields)
        if problems:
            return _reject(problems[0][0], problems[0][1], problems)
        cal = Calibration(range_mpa, shunt_ohm, vref, offset_mpa, gain, cal_id, cal_date)
        self.calibration = cal
        self.sensing.configure(cal)
        self._update_limits()
        return _ok()

    def _field_problems(self, values, errors, fields) -> tuple:
        names = [f[0] for f in fields]
        problems = []
        for name, _ in errors:
            index = names.index(name) if name in names else 0
            reason = (
                R_NOT_FINITE
                if not _finite(values[index]) and _is_number(values[index])
                else R_VALUE_OUT_OF_RANGE
            )
            if (reason, index) not in problems:
                problems.append((reason, index))
        return tuple(problems)

    # -- for HELLO and the host --------------------------------------------------------
    def hello_info(self) -> dict:
        """The board's HELLO fields that the core knows (the link adds protocol versions)."""
        cal = self.calibration
        return {
            "firmware_version": self.firmware_version,
            "board_id": self.board_id,
            "board_kind": self.board_kind,
            "profile_hash": self.profile.profile_hash(),
            "cal_id": cal.cal_id,
            "cal_date": cal.cal_date,
            "boot_count": self.boot_count,
            "reset_cause": self.reset_cause,
            "latest_sample_seq": self.sample_seq if self.sample_seq >= 0 else 0,
            "history_capacity": self.history.capacity,
            "telemetry_period_ms": self.control_period_ms * self.telemetry_decimation,
        }

    def fault_bits(self) -> list:
        return [bit for bit in range(FAULT_COUNT) if self.faults & (1 << bit)]
