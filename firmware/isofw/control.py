# Pressure control: a filter for the transducer, a model of what pump and vent can do,
# and a PI controller that works in pressure-rate units with anti-windup and a split
# into pump (raises pressure) and vent (lowers it).
#
# The controller asks for a rate of pressure change (MPa/s): the setpoint's own rate
# (feed-forward) plus proportional and integral terms on the error. The actuator model
# turns that rate into a duty: the pump's capacity falls as pressure rises (an
# intensifier stalls near its maximum) and the vent's flow grows with opening * sqrt(P),
# so the same rate needs very different duties at 10 and at 300 MPa. Working in rate
# units makes the loop gain independent of pressure, and the integral term is directly
# the creep/leak compensation in MPa/s that a hold needs.

from math import sqrt

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

_DUTY_FULL = const(65535)
_VENT_MIN_MPA = 0.5  # below this the sqrt(P) model is useless; the vent is simply wide open


class ActuatorModel:
    """Pressure rate (MPa/s) that pump and vent give at full duty, as a function of P.

    pump: pump_rate_mpa_s * (1 + stiffening_per_mpa * P) * (1 - P / pump_stall_mpa)
    vent: vent_rate_mpa_s * (1 + stiffening_per_mpa * P) * sqrt(P)
    The (1 + s*P) factor is the oil's bulk modulus rising with pressure: a given volume
    of oil moves the pressure more in a stiffer vessel.
    """

    __slots__ = ("pump_rate_mpa_s", "pump_stall_mpa", "stiffening_per_mpa", "vent_rate_mpa_s")

    def __init__(
        self, pump_rate_mpa_s=2.0, pump_stall_mpa=450.0, vent_rate_mpa_s=0.36, stiffening_per_mpa=0.00333
    ):
        self.pump_rate_mpa_s = pump_rate_mpa_s
        self.pump_stall_mpa = pump_stall_mpa
        self.vent_rate_mpa_s = vent_rate_mpa_s
        self.stiffening_per_mpa = stiffening_per_mpa

    def pump_full_rate(self, p_mpa: float) -> float:
        if p_mpa < 0.0:
            p_mpa = 0.0
        capacity = 1.0 - p_mpa / self.pump_stall_mpa
        if capacity < 0.02:
            capacity = 0.02  # never divide by ~0: near stall the pump simply runs flat out
        return self.pump_rate_mpa_s * (1.0 + self.stiffening_per_mpa * p_mpa) * capacity

    def vent_full_rate(self, p_mpa: float) -> float:
        if p_mpa < _VENT_MIN_MPA:
            p_mpa = _VENT_MIN_MPA
        return self.vent_rate_mpa_s * (1.0 + self.stiffening_per_mpa * p_mpa) * sqrt(p_mpa)

    def rate_of(self, p_mpa: float, pump_duty: int, vent_duty: int) -> float:
        """Rate the actuators should produce at these duties (leak not included)."""
        rate = 0.0
        if pump_duty:
            rate += self.pump_full_rate(p_mpa) * pump_duty / _DUTY_FULL
        if vent_duty:
            rate -= self.vent_full_rate(p_mpa) * vent_duty / _DUTY_FULL
        return rate


class PressureFilter:
    """Alpha-beta tracker: filtered pressure and its rate, without lag on a ramp.

    A plain low-pass lags a 1 MPa/s ramp by tau MPa; the tracker predicts with its rate
    estimate and corrects by fractions (alpha, beta) of the innovation, so a ramp is
    followed without a steady offset while noise is averaged away.
    """

    __slots__ = ("alpha", "beta", "pressure_mpa", "primed", "rate_mpa_s")

    def __init__(self, alpha=0.05, beta=0.0005):
        self.alpha = alpha
        self.beta = beta
        self.pressure_mpa = 0.0
        self.rate_mpa_s = 0.0
        self.primed = False

    def reset(self, pressure_mpa: float):
        self.pressure_mpa = pressure_mpa
        self.rate_mpa_s = 0.0
        self.primed = True

    def predict(self, dt_s: float) -> float:
        return self.pressure_mpa + self.rate_mpa_s * dt_s

    def update(self, dt_s: float, measured_mpa: float):
        if not self.primed or dt_s <= 0.0:
            self.reset(measured_mpa)
            return
        predicted = self.pressure_mpa + self.rate_mpa_s * dt_s
        innovation = measured_mpa - predicted
        self.pressure_mpa = predicted + self.alpha * innovation
        self.rate_mpa_s += self.beta * innovation / dt_s

    def coast(self, dt_s: float):
        """No usable reading this tick (rejected spike): advance on the prediction."""
        self.pressure_mpa += self.rate_mpa_s * dt_s


class PressureController:
    """PI in rate units with setpoint-rate feed-forward, time passed in, no clock reads.

    kp_per_s: MPa/s asked per MPa of error; ki_per_s2: MPa/s added per MPa*s of error;
    hold_ki_per_s2: the integral gain while holding (creep and leaks are slow and small:
    a higher gain there removes them without disturbing ramps); integral_limit_mpa_s:
    bound of the integral (the largest leak the loop will make up); switch_band_mpa_s:
    the rate that must be asked for to change from pump to vent or back.
    """

    def __init__(
        self,
        kp_per_s=1.5,
        ki_per_s2=0.4,
        hold_ki_per_s2=0.8,
        integral_limit_mpa_s=0.5,
        switch_band_mpa_s=0.1,
        model=None,
    ):
        self.kp_per_s = kp_per_s
        self.ki_per_s2 = ki_per_s2
        self.hold_ki_per_s2 = hold_ki_per_s2
        self.integral_limit_mpa_s = integral_limit_mpa_s
        self.switch_band_mpa_s = switch_band_mpa_s
        self.model = model if model is not None else ActuatorModel()
        self.integral_mpa_s = 0.0
        self.mode = 0  # +1 pumping, -1 venting, 0 neither
        self.rate_demand_mpa_s = 0.0
        self.pump_duty = 0
        self.vent_duty = 0
        self.reversals = 0  # pump<->vent changes (through "off"), for the chatter checks
        self._last_direction = 0

    def reset(self):
        self.integral_mpa_s = 0.0
        self.mode = 0
        self.rate_demand_mpa_s = 0.0
        self.pump_duty = 0
        self.vent_duty = 0

    def update(
        self, dt_s, setpoint_mpa, setpoint_rate_mpa_s, pressure_mpa, holding=False, max_fall_mpa_s=0.0
    ):
        """Advance by dt_s; sets pump_duty and vent_duty (0..65535), returns the rate asked.

        max_fall_mpa_s > 0 caps how fast the controller may ask the pressure to fall:
        decompression is what cracks samples, so an error at the start of a ramp down
        (or an overshoot in a hold) is corrected no faster than the recipe's down-rate.
        """
        error = setpoint_mpa - pressure_mpa
        demand = setpoint_rate_mpa_s + self.kp_per_s * error + self.integral_mpa_s
        capped = max_fall_mpa_s > 0.0 and demand < -max_fall_mpa_s
        if capped:
            demand = -max_fall_mpa_s
        saturated = self._split(demand, pressure_mpa)
        if capped:
            saturated = -1
        # Anti-windup (conditional integration): stop integrating while the actuator that
        # the error calls for is already flat out, and keep the integral bounded.
        if not ((saturated > 0 and error > 0.0) or (saturated < 0 and error < 0.0)):
            ki = self.hold_ki_per_s2 if holding else self.ki_per_s2
            integral = self.integral_mpa_s + ki * error * dt_s
            limit = self.integral_limit_mpa_s
            if integral > limit:
                integral = limit
            elif integral < -limit:
                integral = -limit
            self.integral_mpa_s = integral
        self.rate_demand_mpa_s = demand
        return demand

    def _split(self, demand, pressure_mpa) -> int:
        # Entering pump or vent mode takes more than the band; staying in it takes only
        # the same sign. A reversal therefore always passes through "both off", and noise
        # around zero demand cannot make pump and vent fight.
        band = self.switch_band_mpa_s
        mode = self.mode
        if demand > band or (mode == 1 and demand > 0.0):
            duty = demand / self.model.pump_full_rate(pressure_mpa)
            new_mode = 1
        elif demand < -band or (mode == -1 and demand < 0.0):
            duty = -demand / self.model.vent_full_rate(pressure_mpa)
            new_mode = -1
        else:
            self.mode = 0
            self.pump_duty = 0
            self.vent_duty = 0
            return 0
        if new_mode != self._last_direction:
            if self._last_direction:
                self.reversals += 1
            self._last_direction = new_mode
        self.mode = new_mode
        saturated = 0
        if duty >= 1.0:
            duty = 1.0
            saturated = new_mode
        counts = int(duty * _DUTY_FULL)
        if new_mode == 1:
            self.pump_duty = counts
            self.vent_duty = 0
        else:
            self.pump_duty = 0
            self.vent_duty = counts
        return saturated
