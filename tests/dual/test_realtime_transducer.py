# The real-time board's small transducer reads like the model at its defaults: same
# read_u16 scale, same trip point, same noise. CPython and MicroPython.

import math

from realtime import LineTransducer

from isofw.calibration import Calibration
from transducer import Transducer


def _mean_sd(values):
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) * (v - mean) for v in values) / (n - 1)
    return mean, math.sqrt(var)


def test_it_reads_like_the_model_at_its_defaults():
    line = LineTransducer(Calibration(), 7)
    model = Transducer(None, 7)
    for p in (0.0, 1.0, 100.0, 250.0, 419.9, 599.0):
        a, sd_a = _mean_sd([line.read_u16(p) for _ in range(1500)])
        b, sd_b = _mean_sd([model.read_u16(p) for _ in range(1500)])
        assert abs(a - b) < 16.0, (p, a, b)  # within one ADC code (16 on the read_u16 scale)
        assert 0.85 < sd_a / sd_b < 1.15, (p, sd_a, sd_b)


def test_the_trip_point_is_the_models():
    line = LineTransducer(Calibration(), 1)
    model = Transducer(None, 1)
    for counts in (0x8000, 0xB3A0, 0xB3A7, 0xFFF0):
        assert abs(line.mpa_at_counts(counts) - model.mpa_at_counts(counts)) < 1e-9


def test_a_noise_free_model_reaches_the_trip_count_at_mpa_at_counts():
    model = Transducer({"noise_pct_fs": 0.0})
    trip = Calibration().mpa_to_counts(420.0) & 0xFFF0
    p = model.mpa_at_counts(trip)
    assert model.read_u16(p + 1e-9) >= trip
    assert model.read_u16(p - 1e-6) < trip
