# Transducer calibration: ADC counts (read_u16 scale) -> loop current (mA) -> pressure (MPa).
#
# A 4-20 mA transducer drives a shunt resistor into the ADC. The conversion lives in one
# place so the hard over-pressure comparator (which works on raw counts, no floats) and
# the control loop (which works in MPa) agree on where the trip is.

import math

ADC_FULL_COUNTS = 65535  # machine.ADC.read_u16() full scale


class Calibration:
    __slots__ = (
        "_counts_per_ma",
        "_mpa_per_ma",
        "adc_vref_v",
        "cal_date",
        "cal_id",
        "gain",
        "offset_mpa",
        "range_mpa",
        "shunt_ohm",
    )

    def __init__(
        self,
        range_mpa: float = 600.0,
        shunt_ohm: float = 150.0,
        adc_vref_v: float = 3.3,
        offset_mpa: float = 0.0,
        gain: float = 1.0,
        cal_id: str = "factory",
        cal_date: str = "",
    ):
        self.range_mpa = range_mpa
        self.shunt_ohm = shunt_ohm
        self.adc_vref_v = adc_vref_v
        self.offset_mpa = offset_mpa
        self.gain = gain
        self.cal_id = cal_id
        self.cal_date = cal_date
        # counts per mA = (shunt * 1 mA / vref) * full counts
        self._counts_per_ma = shunt_ohm * 0.001 / adc_vref_v * ADC_FULL_COUNTS
        self._mpa_per_ma = range_mpa / 16.0

    def counts_to_ma(self, counts: float) -> float:
        return counts / self._counts_per_ma

    def ma_to_mpa(self, current_ma: float) -> float:
        return ((current_ma - 4.0) * self._mpa_per_ma) * self.gain + self.offset_mpa

    def counts_to_mpa(self, counts: float) -> float:
        return self.ma_to_mpa(self.counts_to_ma(counts))

    def mpa_to_ma(self, pressure_mpa: float) -> float:
        return (pressure_mpa - self.offset_mpa) / self.gain / self._mpa_per_ma + 4.0

    def ma_to_counts(self, current_ma: float) -> int:
        return int(current_ma * self._counts_per_ma)

    def mpa_to_counts(self, pressure_mpa: float) -> int:
        """Raw count at which the reading equals pressure_mpa (rounded down: trips early)."""
        return self.ma_to_counts(self.mpa_to_ma(pressure_mpa))


# (name, lowest, highest) of the numbers SET_CALIBRATION may change.
CALIBRATION_LIMITS = (
    ("range_mpa", 10.0, 2000.0),
    ("shunt_ohm", 10.0, 1000.0),
    ("offset_mpa", -50.0, 50.0),
    ("gain", 0.5, 2.0),
)


def calibration_errors(cal_id, cal_date, range_mpa, shunt_ohm, offset_mpa, gain, adc_vref_v=3.3) -> list:
    """Problems of a candidate calibration as (field name, message); empty when valid."""
    errors = []
    for name, text in (("cal_id", cal_id), ("cal_date", cal_date)):
        if not isinstance(text, str) or len(text) > 32:
            errors.append((name, "must be text of at most 32 characters"))
    for (name, lo, hi), v in zip(CALIBRATION_LIMITS, (range_mpa, shunt_ohm, offset_mpa, gain)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            errors.append((name, "must be a finite number"))
        elif v < lo or v > hi:
            errors.append((name, "must be within %s..%s" % (lo, hi)))
    if not errors and shunt_ohm * 0.021 >= adc_vref_v:
        # NAMUR NE43's 21 mA failure level must still be readable below the ADC reference.
        errors.append(("shunt_ohm", "21 mA through it must stay below the ADC reference (%s V)" % adc_vref_v))
    return errors
