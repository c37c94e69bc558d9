# The press's control core: one step per control tick, time and inputs in, outputs out.
#
# PressCore owns the state machine, the recipe, the controller and every main-loop
# safety check. It reads nothing but its arguments: no clock, no pins, no I/O. The board
# layer hands it an Inputs record each tick and writes pump_duty, vent_duty and
# dump_closed to the hardware afterwards. Outputs default to safe: anything the state
# does not explicitly command is pump off, vent closed, dump valve de-energised (open).
#
# The host's commands are methods here too (what the serial link calls after the
# outputs are written); their validation and effects live in isofw/commands.py.


from isofw import FIRMWARE_VERSION, commands
from isofw.calibration import Calibration
from isofw.commands import VENT_FAULT, VENT_FINISH, VENT_NONE
from isofw.control import PressureController
from isofw.faults import ACT_DUMP, ACT_PAUSE, ACT_VENT, LATCHED_MASK, fault_action, worst_action
from isofw.profile import DeviceProfile
from isofw.recipe import Recipe, SetpointGenerator
from isofw.rings import EventRing, HistoryRing
from isofw.safety import IN_ALL_OK, IN_CLOSURE_LOCKED, IN_ESTOP_RELEASED, IN_GLOVEBOX_OK, SafetyMonitor
from isofw.sensing import PressureInput
from isofw.vent import ControlledVent
from isoproto.codes import (
    EV_BOOT,
    EV_FAULT_CLEARED,
    EV_FAULT_RAISED,
    EV_LOOP_OVERRUN,
    EV_RUN_ENDED,
    EV_SEGMENT_CHANGED,
    EV_STATE_CHANGED,
    FLAG_CLOSURE_LOCKED,
    FLAG_DUMP_CLOSED,
    FLAG_ESTOP_OK,
    FLAG_GLOVEBOX_OK,
    FLAG_HOST_OK,
    FLAG_HW_TRIP,
    RESET_UNKNOWN,
    ST_BOOT,
    ST_COMPLETE,
    ST_DEPRESSURISING,
    ST_ESTOP,
    ST_FAULT,
    ST_HOLDING,
    ST_IDLE,
    ST_PAUSED,
    ST_PRESSURISING,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

BIT_ESTOP = const(0x1000)  # 1 << F_ESTOP
BIT_CONFIG = const(0x8000)  # 1 << F_CONFIG_INVALID


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
        self.vent = ControlledVent(ambient_mpa)  # isofw.vent: the controlled depressurisation
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
                    action = fault_action(bit, self.profile.host_lost_policy)
                    self._event(EV_FAULT_RAISED, bit, action, self.pressure_mpa)
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
            self.vent.begin(self, VENT_FAULT)
        elif self.vent_mode != VENT_NONE:
            self.vent_mode = VENT_FAULT
        else:
            self._safe_outputs()
        self._end_run(ST_FAULT)
        self._set_state(ST_FAULT)

    def _pause(self, now_ms: int):
        self.setpoints.pause(now_ms)
        self._set_state(ST_PAUSED)

    def _control(self, now_ms: int, dt_s: float):
        state = self.state
        if self.vent_mode != VENT_NONE:
            self.vent.step(self, dt_s)
            return
        if state == ST_PRESSURISING or state == ST_HOLDING or state == ST_DEPRESSURISING:
            gen = self.setpoints
            changed = gen.update(now_ms)
            if changed:
                if gen.done:
                    # Above a quarter of ambient, the final vent (and its tail) first.
                    if self.pressure_mpa > self.vent.residual_mpa:
                        self.vent.begin(self, VENT_FINISH)
                        self._set_state(ST_DEPRESSURISING)
                        self.vent.step(self, dt_s)
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

    # -- commands: the serial link calls these after the outputs are written. The
    # validation and the effects are in isofw/commands.py (kept apart so that neither
    # module is large to compile on the board); see there for the return values.
    def host_heartbeat_seen(self, now_ms: int):
        """The host is alive at now_ms (a HEARTBEAT_HOST or any valid command arrived)."""
        self._host_seen_ms = now_ms

    def load_recipe_chunk(self, recipe_id_u32, total_segments, first_index, segments) -> tuple:
        return commands.load_recipe_chunk(self, recipe_id_u32, total_segments, first_index, segments)

    def load_recipe(self, segments) -> tuple:
        return commands.load_recipe(self, segments)

    def start(self, recipe_id_u32) -> tuple:
        return commands.start(self, recipe_id_u32)

    def pause(self) -> tuple:
        return commands.pause(self)

    def resume(self) -> tuple:
        return commands.resume(self)

    def abort(self) -> tuple:
        return commands.abort(self)

    def reset_faults(self) -> tuple:
        return commands.reset_faults(self)

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
        return commands.set_device_profile(
            self,
            max_working_mpa,
            trip_mpa,
            max_ramp_up_mpa_s,
            max_ramp_down_mpa_s,
            max_hold_s,
            margin_mpa,
            host_lost_timeout_ms,
            host_lost_policy,
        )

    def set_calibration(self, cal_id, cal_date, range_mpa, shunt_ohm, offset_mpa, gain) -> tuple:
        return commands.set_calibration(self, cal_id, cal_date, range_mpa, shunt_ohm, offset_mpa, gain)

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
