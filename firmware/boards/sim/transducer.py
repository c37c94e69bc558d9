# The virtual pressure transducer: a 4-20 mA loop into a shunt resistor, read by the
# board's ADC. Units: MPa, mA, V, seconds.
#
#   I = 4 + 16 * (P * (1 + gain_error) + offset + drift) / range     clamped to the NAMUR
#                                                                     NE43 band 3.8..20.5 mA
#   sample = I + noise + spike                                        noise: Gaussian, sigma
#                                                                     in % of the 16 mA span
#   code = floor(sample * shunt / vref * 2^bits), clamped 0..2^bits-1   (a SAR converter)
#   read_u16 = code << (16 - bits) | code >> (2 * bits - 16)          as ports/rp2 does it
#
# Faults replace I: open wire 0 mA, short > 21 mA (24 mA by default), stuck at a fixed
# current (the whole sample freezes, noise included: a hung transmitter); drift adds MPa/s
# to the offset; spikes add single-sample pulses at random times (a Poisson process).
# Each instance owns a seeded generator: a second transducer is a second instance with
# another seed. Every equation and default is in docs/simulator.md.
#
# read_u16() and advance() run every virtual millisecond under MicroPython: they keep their
# frames small (see plant.py) and allocate nothing but floats.

import math

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

_NONE = const(0)
_OPEN_WIRE = const(1)
_SHORT = const(2)
_STUCK = const(3)
_DRIFT = const(4)
_SPIKE = const(5)

FAULT_KINDS = ("none", "open_wire", "short", "stuck", "drift", "spike")

TRANSDUCER_DEFAULTS = {
    "range_mpa": 600.0,  # pressure at 20 mA (4 mA is 0 MPa)
    "shunt_ohm": 150.0,  # loop current -> ADC voltage
    "adc_vref_v": 3.3,  # ADC reference: full scale of the converter
    "adc_bits": 12.0,  # converter resolution (RP2040: 12)
    "noise_pct_fs": 0.05,  # Gaussian noise, sigma in % of the 16 mA span
    "offset_error_mpa": 0.0,  # zero error of the transducer
    "gain_error_pct": 0.0,  # span error of the transducer
    "saturation_low_ma": 3.8,  # NAMUR NE43: a healthy output never goes below ...
    "saturation_high_ma": 20.5,  # ... or above these
    "short_ma": 24.0,  # loop current of a shorted loop
    "spike_rate_hz": 1.0,  # mean spike rate of the spike fault
    "spike_amplitude_mpa": 30.0,  # spike height (either sign)
}

TRANSDUCER_RANGES = {
    "range_mpa": (10.0, 2000.0),
    "shunt_ohm": (10.0, 1000.0),
    "adc_vref_v": (0.5, 5.5),
    "adc_bits": (8.0, 16.0),
    "noise_pct_fs": (0.0, 10.0),
    "offset_error_mpa": (-100.0, 100.0),
    "gain_error_pct": (-50.0, 50.0),
    "saturation_low_ma": (0.0, 4.0),
    "saturation_high_ma": (20.0, 24.0),
    "short_ma": (21.0, 50.0),
    "spike_rate_hz": (0.0, 1000.0),
    "spike_amplitude_mpa": (0.0, 2000.0),
}


def _merge_params(params, defaults: dict, ranges: dict, what: str) -> dict:
    """Defaults overridden by params; ValueError naming the first bad key."""
    merged = dict(defaults)
    if params is None:
        return merged
    if not isinstance(params, dict):
        raise ValueError("%s parameters must be a dict" % what)
    for key in params:
        if key not in defaults:
            raise ValueError("%s: unknown %s parameter" % (key, what))
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("%s: must be a number, got %r" % (key, value))
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise ValueError("%s: must be finite, got %r" % (key, value))
        lo, hi = ranges[key]
        if value < lo or value > hi:
            raise ValueError("%s: must be within %r..%r, got %r" % (key, lo, hi, value))
        merged[key] = value
    return merged


def _check_transducer(p: dict):
    if p["adc_bits"] != int(p["adc_bits"]):
        raise ValueError("adc_bits: must be a whole number, got %r" % p["adc_bits"])
    if 21.0 * p["shunt_ohm"] / 1000.0 >= p["adc_vref_v"]:
        # NAMUR NE43's 21 mA failure level must stay readable, or a short looks healthy.
        raise ValueError(
            "shunt_ohm: 21 mA through %r ohm must stay below adc_vref_v (%r V)"
            % (p["shunt_ohm"], p["adc_vref_v"])
        )
    if p["saturation_low_ma"] >= p["saturation_high_ma"]:
        raise ValueError("saturation_low_ma: must be below saturation_high_ma")


_U32 = const(0xFFFFFFFF)
_INV_2_32 = 2.3283064365386963e-10  # 1 / 2**32
_HALF_INV_2_32 = 1.1641532182693481e-10  # keeps uniforms off 0 so log() is safe
_TWO_PI_INV_2_32 = 1.4629180792671596e-09  # 2 pi / 2**32


class Transducer:
    """One 4-20 mA pressure transducer and the ADC channel that reads it.

    The signal is kept in ADC codes (floats) until the converter truncates it: one scale
    factor per sample instead of a chain of unit conversions.
    """

    def __init__(self, params=None, seed=1):
        p = _merge_params(params, TRANSDUCER_DEFAULTS, TRANSDUCER_RANGES, "transducer")
        _check_transducer(p)
        self.params = p
        # xorshift32 state, seeded so that 0, 1, 2, ... give unrelated streams; never 0.
        self._x = ((int(seed) * 2654435761 + 0x9E3779B9) & _U32) or 0x6D2B79F5
        for _ in range(4):
            self._next_u32()
        self.range_mpa = p["range_mpa"]
        bits = int(p["adc_bits"])
        self._ma_per_mpa = 16.0 / p["range_mpa"]
        self._codes_per_ma = p["shunt_ohm"] / 1000.0 / p["adc_vref_v"] * (1 << bits)
        self._codes_per_mpa = self._ma_per_mpa * self._codes_per_ma  # of offset and drift
        self._codes_per_true_mpa = self._codes_per_mpa * (1.0 + p["gain_error_pct"] / 100.0)
        self._sat_low = p["saturation_low_ma"] * self._codes_per_ma
        self._sat_high = p["saturation_high_ma"] * self._codes_per_ma
        self._noise_codes = p["noise_pct_fs"] / 100.0 * 16.0 * self._codes_per_ma
        self._code_max = (1 << bits) - 1
        self._shift_up = 16 - bits
        self._shift_down = 2 * bits - 16
        self._spike_rate_hz = p["spike_rate_hz"]
        self._spike_codes = p["spike_amplitude_mpa"] * self._codes_per_mpa

        self.fault = "none"
        self._fault = _NONE
        self._fixed = False  # open wire, short and stuck drive a fixed current ...
        self._fixed_ma = 0.0  # ... this one
        self._fixed_codes = 0.0
        self._stuck_u16 = 0
        self.drift_mpa = 0.0  # offset accumulated by the drift fault
        self._drift_mpa_s = 0.0
        self._zero_codes = 0.0  # the code at 0 MPa: 4 mA plus offset and drift
        self._set_zero()
        self._to_spike_s = 0.0
        self._spike_now = 0.0  # codes added to the next sample
        self._last_mpa = 0.0
        self._spare = 0.0  # Box-Muller makes standard normals in pairs
        self._has_spare = False

    def _set_zero(self):
        offset_mpa = self.params["offset_error_mpa"] + self.drift_mpa
        self._zero_codes = 4.0 * self._codes_per_ma + offset_mpa * self._codes_per_mpa

    # -- random numbers ------------------------------------------------------------------
    def _next_u32(self) -> int:
        x = self._x
        x ^= (x << 13) & _U32
        x ^= x >> 17
        x ^= (x << 5) & _U32
        self._x = x
        return x

    def _uniform(self) -> float:
        """Uniform in (0, 1): never 0, so log() of it is safe."""
        return self._next_u32() * _INV_2_32 + _HALF_INV_2_32

    def _normal_pair(self) -> float:
        # Box-Muller with xorshift32 inlined: returns one normal and keeps the other.
        x = self._x
        x ^= (x << 13) & _U32
        x ^= x >> 17
        x ^= (x << 5) & _U32
        r = math.sqrt(-2.0 * math.log(x * _INV_2_32 + _HALF_INV_2_32))
        x ^= (x << 13) & _U32
        x ^= x >> 17
        x ^= (x << 5) & _U32
        self._x = x
        a = x * _TWO_PI_INV_2_32
        self._spare = r * math.sin(a)
        self._has_spare = True
        return r * math.cos(a)

    def gauss(self) -> float:
        """One standard normal sample (Box-Muller; MicroPython's random has no gauss)."""
        if self._has_spare:
            self._has_spare = False
            return self._spare
        return self._normal_pair()

    # -- faults ------------------------------------------------------------------------
    def set_fault(self, kind, value=0.0, rate_hz=0.0):
        """Replace the active fault.

        kind: "none", "open_wire", "short" (value: loop mA, 0 = short_ma), "stuck" (value:
        MPa to stick at; < 0 = the last pressure seen), "drift" (value: MPa/s), "spike"
        (value: amplitude MPa, 0 = spike_amplitude_mpa; rate_hz: 0 = spike_rate_hz).
        """
        if kind not in FAULT_KINDS:
            raise ValueError("kind: unknown transducer fault %r (one of %s)" % (kind, ", ".join(FAULT_KINDS)))
        for name, number in (("value", value), ("rate_hz", rate_hz)):
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise ValueError("%s: must be a number, got %r" % (name, number))
            if math.isnan(number) or math.isinf(number):
                raise ValueError("%s: must be finite, got %r" % (name, number))
        if kind == "short" and value != 0.0 and value <= 21.0:
            raise ValueError("value: a short drives more than 21 mA, got %r" % value)
        if kind == "spike" and (value < 0.0 or rate_hz < 0.0):
            raise ValueError("value: spike amplitude and rate must not be negative")
        code = FAULT_KINDS.index(kind)
        self.drift_mpa = 0.0
        self._drift_mpa_s = 0.0
        self._set_zero()
        if code == _OPEN_WIRE:
            self._fixed_ma = 0.0
        elif code == _SHORT:
            self._fixed_ma = value if value > 0.0 else self.params["short_ma"]
        elif code == _STUCK:
            self._fixed_ma = self._healthy_ma(self._last_mpa if value < 0.0 else value)
        elif code == _DRIFT:
            self._drift_mpa_s = value
        elif code == _SPIKE:
            amplitude_mpa = value if value > 0.0 else self.params["spike_amplitude_mpa"]
            self._spike_codes = amplitude_mpa * self._codes_per_mpa
            self._spike_rate_hz = rate_hz if rate_hz > 0.0 else self.params["spike_rate_hz"]
            self._to_spike_s = 0.0
            self._draw_next_spike()
        self._fixed_codes = self._fixed_ma * self._codes_per_ma
        self._stuck_u16 = self.counts(self._fixed_ma)
        self._spike_now = 0.0
        self.fault = kind
        self._fault = code
        self._fixed = code in (_OPEN_WIRE, _SHORT, _STUCK)

    def spike_once(self, amplitude_mpa):
        """One spike of amplitude_mpa (either sign) on the next sample, whatever the fault."""
        self._spike_now = amplitude_mpa * self._codes_per_mpa

    def _draw_next_spike(self):
        # Exponential waiting time: spikes arrive as a Poisson process.
        self._to_spike_s += -math.log(self._uniform()) / self._spike_rate_hz

    def _arm_spike(self):
        sign = 1.0 if self._next_u32() & 1 else -1.0
        self._spike_now = sign * self._spike_codes
        self._draw_next_spike()

    def advance(self, dt_s):
        """Let dt_s pass: the drift grows, spikes come due."""
        if self._fault == _DRIFT:
            self.drift_mpa += self._drift_mpa_s * dt_s
            self._zero_codes += self._drift_mpa_s * dt_s * self._codes_per_mpa
        elif self._fault == _SPIKE:
            self._to_spike_s -= dt_s
            if self._to_spike_s <= 0.0:
                self._arm_spike()

    # -- signal --------------------------------------------------------------------------
    def _healthy_ma(self, pressure_mpa: float) -> float:
        ma = (self._zero_codes + pressure_mpa * self._codes_per_true_mpa) / self._codes_per_ma
        lo = self.params["saturation_low_ma"]
        hi = self.params["saturation_high_ma"]
        if ma < lo:
            return lo
        return ma if ma < hi else hi

    def current_ma(self, true_pressure_mpa) -> float:
        """Loop current (mA) at this pressure, faults included, noise and spikes not."""
        self._last_mpa = true_pressure_mpa
        if self._fixed:
            return self._fixed_ma
        return self._healthy_ma(true_pressure_mpa)

    def counts(self, current_ma: float) -> int:
        """The ADC's reading of a loop current, on the read_u16 scale (no noise)."""
        code = int(current_ma * self._codes_per_ma)
        if code < 0:
            code = 0
        elif code > self._code_max:
            code = self._code_max
        return (code << self._shift_up) | (code >> self._shift_down)

    def mpa_at_counts(self, counts) -> float:
        """The lowest true pressure whose noise-free, healthy reading is at least counts."""
        code = counts >> self._shift_up
        if (code << self._shift_up) | (code >> self._shift_down) < counts:
            code += 1
        return (code - self._zero_codes) / self._codes_per_true_mpa

    def read_u16(self, true_pressure_mpa) -> int:
        """One ADC sample at this pressure: faults, noise, spikes, quantisation."""
        # current_ma() and counts() inlined, in codes: this runs every virtual millisecond.
        self._last_mpa = true_pressure_mpa
        if self._fixed:
            if self._fault == _STUCK:
                return self._stuck_u16  # a frozen transmitter: its noise froze with it
            x = self._fixed_codes
        else:
            x = self._zero_codes + true_pressure_mpa * self._codes_per_true_mpa
            if x < self._sat_low:
                x = self._sat_low
            elif x > self._sat_high:
                x = self._sat_high
        if self._has_spare:
            self._has_spare = False
            x += self._noise_codes * self._spare
        elif self._noise_codes != 0.0:
            x += self._noise_codes * self._normal_pair()
        if self._spike_now != 0.0:
            x += self._spike_now
            self._spike_now = 0.0
        code = int(x)
        if code < 0:
            code = 0
        elif code > self._code_max:
            code = self._code_max
        return (code << self._shift_up) | (code >> self._shift_down)
