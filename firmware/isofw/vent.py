# The controlled depressurisation: how the press vents on ABORT, on a VENT fault (host
# lost, a hold leak, a rise too fast) and after the recipe's last segment. Only the vent
# valve opens (the pump stays off); the setpoint falls from the measured pressure at the
# recipe's slowest down-rate, guarded and soft-started as a ramp down is (recipe.py), and
# below ambient the vent's tail runs before the dump valve opens (docs/firmware.md,
# Control). Its own module so that PressCore stays small enough to compile on a board.

from isofw.commands import VENT_ABORT, VENT_FAULT, VENT_FINISH, VENT_NONE
from isofw.recipe import DOWN_FRACTION, SOFT_START_S
from isoproto.codes import ST_COMPLETE, ST_READY

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

_TAIL_MS = const(2000)  # longest wait below ambient, dump closed, before the dump opens


class ControlledVent:
    """The vent's own state; PressCore.vent_mode says whether one runs, and why."""

    __slots__ = ("entry_mpa_s", "rate_mpa_s", "residual_mpa", "soft_s", "start_ms", "tail_start_ms")

    def __init__(self, ambient_mpa: float):
        self.rate_mpa_s = 0.0  # the setpoint's fall rate after the soft start
        self.soft_s = 0.0  # its soft start (0: none)
        self.entry_mpa_s = 0.0  # the fall rate the soft start begins at
        self.start_ms = 0
        self.tail_start_ms = -1  # when the pressure reached ambient (-1: not in the tail)
        self.residual_mpa = ambient_mpa * 0.25  # the tail ends here: what the dump may let go

    def begin(self, core, mode: int):
        """Depressurise under control from where the press is, at the recipe's down-rate."""
        core.vent_mode = mode
        self.start_ms = core.now_ms
        self.tail_start_ms = -1
        core.controller.reset()
        # The setpoint falls at DOWN_RATE_PERMILLE of the limit, as in a ramp down, after a
        # soft start from the rate the pressure is already falling at (the final vent after
        # a ramp down goes on without shutting the vent). A fault's vent against a rising
        # pressure (a runaway pump) starts at full rate at once.
        rate = core.recipe.vent_rate_mpa_s(core.profile) * DOWN_FRACTION
        self.rate_mpa_s = rate
        falling = -core.monitor.rate_mpa_s
        self.soft_s = 0.0 if mode == VENT_FAULT and falling < 0.0 else SOFT_START_S
        self.entry_mpa_s = 0.0 if falling < 0.0 else (falling if falling < rate else rate)
        core.setpoint_mpa = core.pressure_mpa
        core.setpoints.pause(core.now_ms)

    def step(self, core, dt_s: float):
        p = core.pressure_mpa
        if p <= core.ambient_mpa:
            # The tail. The safe outputs open the dump valve, which lets what is left go
            # in a few ms: up to ambient_mpa (0.2 MPa), which over a 1 s window reads as a
            # fall as fast as the recipe's (0.507 MPa/s on a stiff vessel). So the vent
            # goes on below ambient, dump closed, until a quarter of ambient is left or
            # _TAIL_MS have passed (a transducer offset must not hold it closed).
            if self.tail_start_ms < 0:
                self.tail_start_ms = core.now_ms
            if p <= self.residual_mpa or core.now_ms - self.tail_start_ms >= _TAIL_MS:
                self.tail_start_ms = -1
                mode = core.vent_mode
                core.vent_mode = VENT_NONE
                core.controller.reset()
                core._safe_outputs()
                if mode == VENT_ABORT:
                    core._finish(ST_READY)
                elif mode == VENT_FINISH:
                    core._finish(ST_COMPLETE)
                return
        rate = self.rate_mpa_s
        soft_s = self.soft_s
        if soft_s > 0.0:
            since_s = (core.now_ms - self.start_ms) / 1000.0
            if since_s < soft_s:
                entry = self.entry_mpa_s
                rate = entry + (rate - entry) * since_s / soft_s
        sp = core.setpoint_mpa - rate * dt_s
        if sp < 0.0:
            sp = 0.0
        core._drive(dt_s, sp, -rate, False, self.rate_mpa_s)
        core.pump_duty = 0  # vent never pumps
