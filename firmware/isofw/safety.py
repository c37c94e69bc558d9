# The main loop's safety checks on the process (the transducer's own checks are in
# sensing.py, the hard over-pressure comparator is in the board's interrupt):
#   software over-pressure: above the recipe's maximum plus the profile's margin;
#   rate of rise and of fall beyond the profile's maxima (with a margin, sustained);
#   pressurisation watchdog: the pump is driven but the pressure rises by less than a
#     fraction of what the actuator model says it should: a leak or a burst bag;
#   hold leak check: after a settling window, pressure lost beyond what the actuators
#     explain, faster than a threshold;
#   interlocks: e-stop; closure unlocked while controlling or pressurised; glovebox
#     permissive lost during a run;
#   host lost: no heartbeat for the profile's timeout during a run.
# check() returns the fault bits whose cause is present this tick; `level` holds those
# whose cause is a condition that is still true now (a reset is refused while it is).

from array import array

from isoproto.codes import (
    ST_HOLDING,
    ST_PAUSED,
    ST_PRESSURISING,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

# Input bits (board.read_inputs): 1 = the safe, permissive level.
IN_CLOSURE_LOCKED = const(0x01)
IN_ESTOP_RELEASED = const(0x02)
IN_GLOVEBOX_OK = const(0x04)
IN_ALL_OK = const(0x07)

_RATE_SLOTS = const(64)  # rate window of up to 630 ms at 100 Hz

BIT_HW = const(0x0001)  # 1 << F_OVERPRESSURE_HW
BIT_SW = const(0x0002)  # 1 << F_OVERPRESSURE_SW
BIT_RISE = const(0x0004)  # 1 << F_RISE_RATE
BIT_FALL = const(0x0008)  # 1 << F_FALL_RATE
BIT_PRESSURISE = const(0x0200)  # 1 << F_PRESSURISE_TIMEOUT
BIT_LEAK = const(0x0400)  # 1 << F_HOLD_LEAK
BIT_CLOSURE = const(0x0800)  # 1 << F_CLOSURE_UNLOCKED
BIT_ESTOP = const(0x1000)  # 1 << F_ESTOP
BIT_GLOVEBOX = const(0x2000)  # 1 << F_GLOVEBOX_LOST
BIT_HOST = const(0x4000)  # 1 << F_HOST_LOST


class SafetyMonitor:
    def __init__(self, safety: dict, model, profile):
        self.model = model
        self.profile = profile
        self.pressurised_mpa = safety["pressurised_mpa"]
        self.rate_margin_frac = safety["rate_margin_frac"]
        self.rate_margin_mpa_s = safety["rate_margin_mpa_s"]
        self.rate_window_ms = safety["rate_window_ms"]
        self.rate_confirm_ms = safety["rate_confirm_ms"]
        # The last _RATE_SLOTS filtered pressures and their times, for the rate checks.
        self._hist_mpa = array("f", bytes(4 * _RATE_SLOTS))
        self._hist_ms = array("i", bytes(4 * _RATE_SLOTS))
        self._hist_next = 0
        self._hist_count = 0
        self.rate_mpa_s = 0.0  # the checked rate (telemetry, tests)
        self.pressurise_expected_mpa = safety["pressurise_expected_mpa"]
        self.pressurise_min_fraction = safety["pressurise_min_fraction"]
        self.leak_settle_ms = safety["leak_settle_ms"]
        self.leak_window_ms = safety["leak_window_ms"]
        self.leak_max_mpa_s = safety["leak_max_mpa_s"]
        self.rise_limit_mpa_s = 0.0
        self.fall_limit_mpa_s = 0.0
        self.configure(profile)
        self.level = 0
        self.leak_rate_mpa_s = 0.0  # last hold-leak estimate (telemetry, tests)
        self._state = -1
        self._state_since_ms = 0
        self.reset()

    def configure(self, profile):
        self.profile = profile
        self.rise_limit_mpa_s = (
            profile.max_ramp_up_mpa_s * (1.0 + self.rate_margin_frac) + self.rate_margin_mpa_s
        )
        self.fall_limit_mpa_s = (
            profile.max_ramp_down_mpa_s * (1.0 + self.rate_margin_frac) + self.rate_margin_mpa_s
        )

    def _window_rate(self, now_ms: int, p: float) -> float:
        """Rate over the last rate_window_ms of filtered pressure (0 until the window fills).

        A difference over half a second answers in half a second and averages the noise
        down; the tracking filter's own rate estimate is smoother but takes seconds to
        follow a sudden change, too slow for a runaway pump.
        """
        i = self._hist_next
        self._hist_mpa[i] = p
        self._hist_ms[i] = now_ms
        i += 1
        if i == _RATE_SLOTS:
            i = 0
        self._hist_next = i
        if self._hist_count < _RATE_SLOTS:
            self._hist_count += 1
        # Walk back to the oldest sample still inside the window.
        back = self._hist_count - 1
        j = i - 1 - back
        if j < 0:
            j += _RATE_SLOTS
        while back > 0 and now_ms - self._hist_ms[j] > self.rate_window_ms:
            back -= 1
            j += 1
            if j == _RATE_SLOTS:
                j = 0
        span_ms = now_ms - self._hist_ms[j]
        if back == 0 or span_ms < self.rate_window_ms // 2:
            return 0.0
        return (p - self._hist_mpa[j]) * 1000.0 / span_ms

    def reset(self):
        """Forget every window (after a reset, a start, a new profile)."""
        self._hist_count = 0
        self._rise_since_ms = -1
        self._fall_since_ms = -1
        self._press_start_mpa = -1.0
        self._press_expected_mpa = 0.0
        self._leak_start_ms = -1
        self._leak_start_mpa = 0.0
        self._leak_makeup_mpa = 0.0
        self._state = -1

    def check(
        self,
        now_ms: int,
        dt_s: float,
        sensing,
        inputs_bits: int,
        hw_tripped: bool,
        hw_level: bool,
        state: int,
        controlling: bool,
        run_active: bool,
        pump_duty: int,
        vent_duty: int,
        dump_closed: bool,
        limit_mpa: float,
        host_age_ms: int,
    ) -> int:
        causes = 0
        level = 0
        if state != self._state:
            self._state = state
            self._state_since_ms = now_ms
            self._press_start_mpa = -1.0
            self._leak_start_ms = -1
        # -- over-pressure: hard trip latched by the interrupt; software limit here.
        if hw_tripped:
            causes |= BIT_HW
        if hw_level:
            level |= BIT_HW
        p = sensing.pressure_mpa
        if sensing.valid and sensing.measured_mpa > limit_mpa:
            causes |= BIT_SW
            level |= BIT_SW

        # -- rates: the filtered pressure's change over rate_window_ms, beyond the limit
        # for rate_confirm_ms (the dump valve's fall is expected and not checked).
        rate = self._window_rate(now_ms, p)
        self.rate_mpa_s = rate
        if rate > self.rise_limit_mpa_s:
            if self._rise_since_ms < 0:
                self._rise_since_ms = now_ms
            if now_ms - self._rise_since_ms >= self.rate_confirm_ms:
                causes |= BIT_RISE
        else:
            self._rise_since_ms = -1
        if dump_closed and rate < -self.fall_limit_mpa_s:
            if self._fall_since_ms < 0:
                self._fall_since_ms = now_ms
            if now_ms - self._fall_since_ms >= self.rate_confirm_ms:
                causes |= BIT_FALL
        else:
            self._fall_since_ms = -1

        # -- pressurisation watchdog (ramping up only: in a hold the pump makes up leaks).
        if state == ST_PRESSURISING and sensing.valid and vent_duty == 0:
            if self._press_start_mpa < 0.0:
                self._press_start_mpa = p
                self._press_expected_mpa = 0.0
            elif pump_duty:
                self._press_expected_mpa += self.model.pump_full_rate(p) * pump_duty / 65535 * dt_s
                if self._press_expected_mpa >= self.pressurise_expected_mpa:
                    rise = p - self._press_start_mpa
                    if rise < self.pressurise_min_fraction * self._press_expected_mpa:
                        causes |= BIT_PRESSURISE
                    self._press_start_mpa = p
                    self._press_expected_mpa = 0.0
        else:
            self._press_start_mpa = -1.0

        # -- hold leak check: pressure lost beyond what pump and vent explain.
        if (state == ST_HOLDING or state == ST_PAUSED) and sensing.valid:
            if now_ms - self._state_since_ms >= self.leak_settle_ms:
                if self._leak_start_ms < 0:
                    self._leak_start_ms = now_ms
                    self._leak_start_mpa = p
                    self._leak_makeup_mpa = 0.0
                else:
                    self._leak_makeup_mpa += self.model.rate_of(p, pump_duty, vent_duty) * dt_s
                    window_ms = now_ms - self._leak_start_ms
                    if window_ms >= self.leak_window_ms:
                        lost = self._leak_makeup_mpa - (p - self._leak_start_mpa)
                        self.leak_rate_mpa_s = lost * 1000.0 / window_ms
                        if self.leak_rate_mpa_s > self.leak_max_mpa_s:
                            causes |= BIT_LEAK
                        self._leak_start_ms = -1
        else:
            self._leak_start_ms = -1

        # -- interlocks.
        if not inputs_bits & IN_ESTOP_RELEASED:
            causes |= BIT_ESTOP
            level |= BIT_ESTOP
        if not inputs_bits & IN_CLOSURE_LOCKED and (controlling or p > self.pressurised_mpa):
            causes |= BIT_CLOSURE
            level |= BIT_CLOSURE
        if run_active and not inputs_bits & IN_GLOVEBOX_OK:
            causes |= BIT_GLOVEBOX
            level |= BIT_GLOVEBOX
        if run_active and host_age_ms > self.profile.host_lost_timeout_ms:
            causes |= BIT_HOST
            level |= BIT_HOST
        self.level = level
        return causes
