# The virtual 4-20 mA transducer and ADC: runs under CPython and MicroPython.

import math

from isofw.calibration import Calibration
from transducer import FAULT_KINDS, TRANSDUCER_DEFAULTS, TRANSDUCER_RANGES, Transducer

QUIET = {"noise_pct_fs": 0.0}
# One ADC count of the default channel in MPa: 3.3 V / 4096 / 150 ohm, 37.5 MPa per mA.
COUNT_MPA = 3.3 / 4096 / 150.0 * 1000.0 * 600.0 / 16.0


def _raises_naming(call, key):
    try:
        call()
    except ValueError as exc:
        assert str(exc).startswith(key + ":"), str(exc)
        return
    raise AssertionError("no ValueError naming %s" % key)


def _mean_sd(values):
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) * (v - mean) for v in values) / (n - 1)
    return mean, math.sqrt(var)


def test_every_default_has_a_range_that_holds_it():
    assert sorted(TRANSDUCER_DEFAULTS) == sorted(TRANSDUCER_RANGES)
    for key, value in TRANSDUCER_DEFAULTS.items():
        lo, hi = TRANSDUCER_RANGES[key]
        assert lo <= value <= hi, key
    assert FAULT_KINDS == ("none", "open_wire", "short", "stuck", "drift", "spike")


def test_bad_parameters_and_faults_are_errors_naming_the_key():
    _raises_naming(lambda: Transducer({"range_bar": 6000.0}), "range_bar")
    _raises_naming(lambda: Transducer({"noise_pct_fs": -0.1}), "noise_pct_fs")
    _raises_naming(lambda: Transducer({"adc_bits": 12.5}), "adc_bits")
    _raises_naming(lambda: Transducer({"adc_vref_v": float("nan")}), "adc_vref_v")
    # 21 mA through 200 ohm is 4.2 V: a short would read like a healthy full scale.
    _raises_naming(lambda: Transducer({"shunt_ohm": 200.0}), "shunt_ohm")
    t = Transducer()
    _raises_naming(lambda: t.set_fault("melted"), "kind")
    _raises_naming(lambda: t.set_fault("drift", float("inf")), "value")
    _raises_naming(lambda: t.set_fault("short", 20.0), "value")
    assert t.fault == "none"


def test_4_ma_at_zero_and_20_ma_at_full_scale():
    t = Transducer(QUIET)
    assert abs(t.current_ma(0.0) - 4.0) < 1e-12
    assert abs(t.current_ma(600.0) - 20.0) < 1e-12
    assert abs(t.current_ma(150.0) - 8.0) < 1e-12
    # A healthy transducer stays inside the NAMUR NE43 band, whatever the pressure.
    assert t.current_ma(700.0) == 20.5
    assert t.current_ma(-10.0) == 3.8


def test_noise_free_reading_maps_back_to_the_true_pressure_within_one_count():
    t = Transducer(QUIET)
    cal = Calibration(range_mpa=600.0, shunt_ohm=150.0, adc_vref_v=3.3)
    p = 0.0
    worst = 0.0
    while p <= 600.0:
        err = abs(cal.counts_to_mpa(t.read_u16(p)) - p)
        worst = max(worst, err)
        p += 0.37
    assert worst <= COUNT_MPA, (worst, COUNT_MPA)
    assert worst > 0.25 * COUNT_MPA  # quantisation is there: the check is not vacuous


def test_12_bit_adc_on_the_read_u16_scale_like_an_rp2040():
    t = Transducer(QUIET)
    for p in (0.0, 37.0, 250.0, 419.9, 600.0):
        u16 = t.read_u16(p)
        code = u16 >> 4
        assert u16 == (code << 4) | (code >> 8)  # ports/rp2: raw << 4 | raw >> 8
        assert 0 <= u16 <= 65535
    t.set_fault("short")  # 24 mA x 150 ohm = 3.6 V: the ADC clips at full scale
    assert t.read_u16(100.0) == 65535
    t.set_fault("open_wire")
    assert t.read_u16(100.0) == 0


def test_noise_sigma_is_0_05_percent_of_full_scale():
    t = Transducer({"range_mpa": 600.0}, seed=3)
    cal = Calibration()
    readings = [cal.counts_to_mpa(t.read_u16(300.0)) for _ in range(4000)]
    mean, sd = _mean_sd(readings)
    expected_sd = 0.0005 * 600.0  # 0.3 MPa
    assert abs(mean - 300.0) < 0.1
    # Quantisation (0.2 MPa steps) adds about count^2/12 of variance.
    quantised = math.sqrt(expected_sd * expected_sd + COUNT_MPA * COUNT_MPA / 12.0)
    assert abs(sd - quantised) / quantised < 0.08, (sd, quantised)


def test_box_muller_gives_standard_normals():
    t = Transducer(None, seed=11)
    values = [t.gauss() for _ in range(6000)]
    mean, sd = _mean_sd(values)
    assert abs(mean) < 0.05 and abs(sd - 1.0) < 0.05
    beyond_2 = sum(1 for v in values if abs(v) > 2.0) / len(values)
    assert 0.035 < beyond_2 < 0.057  # 4.55 % for a normal distribution


def test_offset_and_gain_errors_shift_the_current():
    t = Transducer({"noise_pct_fs": 0.0, "offset_error_mpa": 3.0, "gain_error_pct": 1.0})
    assert abs(t.current_ma(0.0) - (4.0 + 3.0 * 16.0 / 600.0)) < 1e-12
    assert abs(t.current_ma(300.0) - (4.0 + (303.0 + 3.0) * 16.0 / 600.0)) < 1e-12


def test_open_wire_short_and_stuck_replace_the_loop_current():
    t = Transducer(QUIET)
    t.set_fault("open_wire")
    assert t.current_ma(250.0) == 0.0
    t.set_fault("short")
    assert t.current_ma(250.0) == 24.0
    t.set_fault("short", 22.5)
    assert t.current_ma(0.0) == 22.5
    t.current_ma(120.0)
    t.set_fault("stuck", -1.0)  # stuck where it was
    assert abs(t.current_ma(300.0) - (4.0 + 120.0 * 16.0 / 600.0)) < 1e-12
    t.set_fault("stuck", 50.0)
    assert t.read_u16(0.0) == t.read_u16(400.0)
    t.set_fault("none")
    assert abs(t.current_ma(300.0) - 12.0) < 1e-12


def test_drift_grows_with_time_and_clears_with_the_fault():
    t = Transducer(QUIET)
    t.set_fault("drift", 0.5)
    for _ in range(10000):
        t.advance(0.001)
    assert abs(t.drift_mpa - 5.0) < 1e-6
    assert abs(t.current_ma(100.0) - (4.0 + 105.0 * 16.0 / 600.0)) < 1e-9
    t.set_fault("none")
    assert t.drift_mpa == 0.0


def test_spikes_arrive_at_their_rate_with_their_amplitude():
    t = Transducer(QUIET, seed=5)
    cal = Calibration()
    t.set_fault("spike", 40.0, 20.0)
    baseline = t.read_u16(200.0)
    spikes = 0
    for _ in range(20000):  # 20 s at 1 kHz
        t.advance(0.001)
        reading = cal.counts_to_mpa(t.read_u16(200.0))
        if abs(reading - 200.0) > 20.0:
            spikes += 1
            assert abs(abs(reading - 200.0) - 40.0) < 1.0
    assert 320 < spikes < 480, spikes  # 400 expected, Poisson sd 20
    t.set_fault("none")
    t.advance(1.0)
    assert t.read_u16(200.0) == baseline


def test_same_seed_same_samples_and_a_second_transducer_is_independent():
    a = Transducer(None, seed=1)
    b = Transducer(None, seed=1)
    c = Transducer(None, seed=2)
    sa = [a.read_u16(250.0) for _ in range(200)]
    assert sa == [b.read_u16(250.0) for _ in range(200)]
    assert sa != [c.read_u16(250.0) for _ in range(200)]
