# Pressure controller: PI on the pressure error with setpoint-rate feed-forward,
# anti-windup, and a split into pump (raises pressure) and vent (lowers it).
#
# The pump and the vent valve never work against each other: the controller's single
# effort u in [-1, 1] drives the pump when positive and the vent when negative, and a
# hysteresis band around zero keeps it from chattering between the two.

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x


_DUTY_FULL = const(65535)


class PressureController:
    """PI + feed-forward pressure controller, time passed in, no clock reads.

    kp_per_mpa: effort per MPa of error; ki_per_mpa_s: effort per MPa*s of integrated
    error; pump_ff_s_per_mpa / vent_ff_s_per_mpa: effort per MPa/s of setpoint rate
    (the inverse of the actuator's rate at full effort); switch_band: the effort that
    must be exceeded to change from pump to vent or back.
    """

    def __init__(
        self,
        kp_per_mpa=0.05,
        ki_per_mpa_s=0.02,
        pump_ff_s_per_mpa=0.5,
        vent_ff_s_per_mpa=0.1,
        switch_band=0.02,
        integral_limit=0.5,
    ):
        self.kp_per_mpa = kp_per_mpa
        self.ki_per_mpa_s = ki_per_mpa_s
        self.pump_ff_s_per_mpa = pump_ff_s_per_mpa
        self.vent_ff_s_per_mpa = vent_ff_s_per_mpa
        self.switch_band = switch_band
        self.integral_limit = integral_limit
        self.integral = 0.0
        self.mode = 0  # +1 pumping, -1 venting, 0 neither
        self.effort = 0.0
        self.pump_duty = 0
        self.vent_duty = 0

    def reset(self):
        self.integral = 0.0
        self.mode = 0
        self.effort = 0.0
        self.pump_duty = 0
        self.vent_duty = 0

    def update(self, dt_s, setpoint_mpa, setpoint_rate_mpa_s, pressure_mpa):
        """Advance by dt_s; sets pump_duty and vent_duty (0..65535) and returns the effort."""
        error = setpoint_mpa - pressure_mpa
        if setpoint_rate_mpa_s >= 0.0:
            ff = setpoint_rate_mpa_s * self.pump_ff_s_per_mpa
        else:
            ff = setpoint_rate_mpa_s * self.vent_ff_s_per_mpa
        unclamped = self.kp_per_mpa * error + self.integral + ff
        effort = unclamped
        if effort > 1.0:
            effort = 1.0
        elif effort < -1.0:
            effort = -1.0
        # Anti-windup: integrate only while the output is not saturated in the direction
        # the error pushes it (conditional integration), and bound the integral.
        saturated_up = unclamped >= 1.0 and error > 0.0
        saturated_down = unclamped <= -1.0 and error < 0.0
        if not (saturated_up or saturated_down):
            integral = self.integral + self.ki_per_mpa_s * error * dt_s
            if integral > self.integral_limit:
                integral = self.integral_limit
            elif integral < -self.integral_limit:
                integral = -self.integral_limit
            self.integral = integral
        self.effort = effort
        self._split(effort)
        return effort

    def _split(self, effort):
        # Entering pump or vent mode takes more than the band; staying in it takes only
        # the same sign. Reversal therefore always passes through "both off".
        band = self.switch_band
        if effort > band or (self.mode == 1 and effort > 0.0):
            self.mode = 1
            self.pump_duty = int(effort * _DUTY_FULL)
            self.vent_duty = 0
        elif effort < -band or (self.mode == -1 and effort < 0.0):
            self.mode = -1
            self.pump_duty = 0
            self.vent_duty = int(-effort * _DUTY_FULL)
        else:
            self.mode = 0
            self.pump_duty = 0
            self.vent_duty = 0
