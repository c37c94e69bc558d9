# The press's control core: one step per control tick, time and inputs in, outputs out.
#
# Foundation version: recipe execution with the pressure controller and the software
# over-pressure limit. The Firmware v1 issue grows the state machine and the safety layers
# around the same step() contract.

from isofw.calibration import Calibration
from isofw.control import PressureController
from isofw.recipe import SetpointGenerator

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x


ST_BOOT = const(0)
ST_IDLE = const(1)
ST_READY = const(2)
ST_RUNNING = const(3)
ST_PAUSED = const(4)
ST_COMPLETE = const(5)
ST_FAULT = const(6)
ST_ESTOP = const(7)

STATE_NAMES = ("boot", "idle", "ready", "running", "paused", "complete", "fault", "estop")

FAULT_OVERPRESSURE_HW = const(0x0001)
FAULT_OVERPRESSURE_SW = const(0x0002)


class DeviceProfile:
    __slots__ = ("max_ramp_down_mpa_s", "max_ramp_up_mpa_s", "max_working_mpa", "trip_mpa")

    def __init__(
        self,
        max_working_mpa: float = 400.0,
        trip_mpa: float = 420.0,
        max_ramp_up_mpa_s: float = 2.0,
        max_ramp_down_mpa_s: float = 1.0,
    ):
        self.max_working_mpa = max_working_mpa
        self.trip_mpa = trip_mpa
        self.max_ramp_up_mpa_s = max_ramp_up_mpa_s
        self.max_ramp_down_mpa_s = max_ramp_down_mpa_s


class PressCore:
    """Pure control core. step() reads nothing but its arguments."""

    def __init__(self, profile: DeviceProfile, calibration: Calibration, controller: PressureController):
        self.profile = profile
        self.calibration = calibration
        self.controller = controller
        self.setpoints = SetpointGenerator()
        self.state = ST_IDLE
        self.faults = 0
        self.recipe = []
        self.pressure_mpa = 0.0
        self.setpoint_mpa = 0.0
        self.pump_duty = 0
        self.vent_duty = 0
        self.dump_closed = False  # normally-open dump valve: de-energised = open = safe
        self._last_ms = -1

    def load_recipe(self, segments) -> bool:
        if self.state not in (ST_IDLE, ST_READY, ST_COMPLETE):
            return False
        self.recipe = segments
        self.state = ST_READY
        return True

    def start(self, now_ms: int) -> bool:
        if self.state != ST_READY:
            return False
        self.setpoints.start(self.recipe, now_ms / 1000.0, self.pressure_mpa)
        self.controller.reset()
        self.state = ST_RUNNING
        return True

    def trip(self, fault: int):
        self.faults |= fault
        self.state = ST_FAULT
        self.controller.reset()
        self._safe_outputs()

    def _safe_outputs(self):
        self.pump_duty = 0
        self.vent_duty = 0
        self.dump_closed = False

    def step(self, now_ms: int, counts: float, hw_tripped: bool):
        """One control tick: counts is the oversampled transducer reading (read_u16 scale)."""
        dt_s = 0.0 if self._last_ms < 0 else (now_ms - self._last_ms) / 1000.0
        self._last_ms = now_ms
        p = self.calibration.counts_to_mpa(counts)
        self.pressure_mpa = p
        if hw_tripped and not self.faults & FAULT_OVERPRESSURE_HW:
            self.trip(FAULT_OVERPRESSURE_HW)
        if p > self.profile.trip_mpa and not self.faults & FAULT_OVERPRESSURE_SW:
            self.trip(FAULT_OVERPRESSURE_SW)
        if self.state != ST_RUNNING:
            if self.state != ST_FAULT:
                self.pump_duty = 0
                self.vent_duty = 0
                self.dump_closed = False
            return
        gen = self.setpoints
        gen.update(now_ms / 1000.0)
        self.setpoint_mpa = gen.setpoint_mpa
        self.dump_closed = True
        self.controller.update(dt_s, gen.setpoint_mpa, gen.rate_mpa_s, p)
        self.pump_duty = self.controller.pump_duty
        self.vent_duty = self.controller.vent_duty
        if gen.done:
            self.state = ST_COMPLETE
