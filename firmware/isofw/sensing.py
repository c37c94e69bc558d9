# The transducer input stage: oversampled counts -> MPa, plausibility, filtering.
#
# Plausibility, in the order a reading has to pass:
#   NAMUR NE43 bands: <= 3.6 mA (open wire) or >= 21 mA (short) is a failed transducer,
#     whatever it claims; 3.6-3.8 and 20.5-21 mA are read as values;
#   slew: a reading further from the last accepted one than the press can physically move
#     in the time between them (plus a noise allowance) is rejected as a spike and the
#     filter coasts; slew_ticks such readings in a row are a fault (the signal jumped and
#     stayed there);
#   stuck: while the pump is driven, the oversampled counts must move; a spread under
#     stuck_band_counts over stuck_window_ms is a frozen signal;
#   mismatch: an optional second transducer must agree within mismatch_mpa, continuously
#     for no longer than mismatch_ms.
# Only the board's interrupt reads the ADC; this stage sees the mean of its samples.

from isofw.control import PressureFilter

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

BIT_LOW = const(0x0010)  # 1 << F_TRANSDUCER_LOW
BIT_HIGH = const(0x0020)  # 1 << F_TRANSDUCER_HIGH
BIT_SLEW = const(0x0080)  # 1 << F_TRANSDUCER_SLEW
BIT_STUCK = const(0x0040)  # 1 << F_TRANSDUCER_STUCK
BIT_MISMATCH = const(0x0100)  # 1 << F_TRANSDUCER_MISMATCH


class PressureInput:
    def __init__(self, calibration, safety: dict, filter_alpha=0.05, filter_beta=0.0005):
        self.safety = safety
        self.filter = PressureFilter(filter_alpha, filter_beta)
        self.calibration = calibration
        self.low_counts = 0.0
        self.high_counts = 0.0
        self.configure(calibration)
        self.second = bool(safety.get("second_transducer", False))
        self.measured_mpa = 0.0  # this tick's reading, unfiltered (last valid one if invalid)
        self.pressure_mpa = 0.0  # filtered
        self.rate_mpa_s = 0.0  # filtered rate of change
        self.counts = 0.0
        self.current_ma = 0.0
        self.second_mpa = -1.0
        self.valid = False  # this tick's reading passed every check
        self.causes = 0  # transducer fault bits present this tick
        self.level = 0  # fault bits whose cause is a level that is present now
        self.spikes = 0  # rejected single readings (counted, not faults)
        self._slew_run = 0
        self._have_reading = False
        self._stuck_start_ms = -1
        self._stuck_min = 0.0
        self._stuck_max = 0.0
        self._mismatch_since_ms = -1

    def configure(self, calibration):
        """New calibration: the NAMUR limits move in counts."""
        self.calibration = calibration
        self.low_counts = calibration.ma_to_counts(self.safety["namur_low_ma"])
        self.high_counts = calibration.ma_to_counts(self.safety["namur_high_ma"])
        self.filter.primed = False
        self._have_reading = False

    def reset(self):
        self._slew_run = 0
        self._stuck_start_ms = -1
        self._mismatch_since_ms = -1

    def update(self, now_ms: int, dt_s: float, counts: float, counts2: float, pump_duty: int):
        cal = self.calibration
        safety = self.safety
        causes = 0
        level = 0
        self.counts = counts
        self.current_ma = cal.counts_to_ma(counts)
        valid = True
        if counts <= self.low_counts:
            causes |= BIT_LOW
            valid = False
        elif counts >= self.high_counts:
            causes |= BIT_HIGH
            valid = False
        level = causes
        f = self.filter
        if valid:
            measured = cal.counts_to_mpa(counts)
            # Slew: compared with the last accepted reading, not the filter, so a fast
            # but real change (the dump valve: ~170 MPa/s) is never mistaken for one.
            if self._have_reading and dt_s > 0.0:
                allowed = safety["slew_max_mpa_s"] * dt_s * (self._slew_run + 1) + safety["slew_noise_mpa"]
                jump = measured - self.measured_mpa
                if jump > allowed or jump < -allowed:
                    self._slew_run += 1
                    if self._slew_run >= safety["slew_ticks"]:
                        causes |= BIT_SLEW
                    else:
                        self.spikes += 1
                    valid = False
                else:
                    self._slew_run = 0
            if valid:
                self.measured_mpa = measured
                self._have_reading = True
                f.update(dt_s, measured)
            else:
                f.coast(dt_s)
        else:
            self._slew_run = 0
            f.coast(dt_s)
        self.pressure_mpa = f.pressure_mpa
        self.rate_mpa_s = f.rate_mpa_s

        # Stuck: the pump is driven, so the signal must move.
        if valid and pump_duty >= safety["stuck_min_pump_duty"]:
            if self._stuck_start_ms < 0:
                self._stuck_start_ms = now_ms
                self._stuck_min = counts
                self._stuck_max = counts
            else:
                if counts < self._stuck_min:
                    self._stuck_min = counts
                elif counts > self._stuck_max:
                    self._stuck_max = counts
                if now_ms - self._stuck_start_ms >= safety["stuck_window_ms"]:
                    if self._stuck_max - self._stuck_min < safety["stuck_band_counts"]:
                        causes |= BIT_STUCK
                    self._stuck_start_ms = -1
        else:
            self._stuck_start_ms = -1

        # Second transducer: cross-check, never used for control.
        if self.second:
            bad = counts2 <= self.low_counts or counts2 >= self.high_counts
            if not bad:
                self.second_mpa = cal.counts_to_mpa(counts2)
                diff = self.second_mpa - self.measured_mpa
                bad = valid and (diff > safety["mismatch_mpa"] or diff < -safety["mismatch_mpa"])
            if bad:
                level |= BIT_MISMATCH
                if self._mismatch_since_ms < 0:
                    self._mismatch_since_ms = now_ms
                elif now_ms - self._mismatch_since_ms >= safety["mismatch_ms"]:
                    causes |= BIT_MISMATCH
            else:
                self._mismatch_since_ms = -1
        self.valid = valid
        self.causes = causes
        self.level = level
