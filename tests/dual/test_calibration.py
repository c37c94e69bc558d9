# Transducer calibration: runs under CPython and MicroPython.

from isofw.calibration import Calibration


def test_4ma_is_zero_and_20ma_is_full_scale():
    cal = Calibration(range_mpa=600.0)
    assert abs(cal.ma_to_mpa(4.0)) < 1e-9
    assert abs(cal.ma_to_mpa(20.0) - 600.0) < 1e-9


def test_counts_round_trip_within_one_count():
    cal = Calibration(range_mpa=600.0, shunt_ohm=150.0, adc_vref_v=3.3)
    for p in (0.0, 100.0, 250.0, 420.0):
        counts = cal.mpa_to_counts(p)
        back = cal.counts_to_mpa(counts)
        assert back <= p + 1e-9  # rounded down: the trip count is never above the limit
        assert p - back < cal.counts_to_mpa(counts + 1) - cal.counts_to_mpa(counts) + 1e-9


def test_offset_and_gain_apply_to_pressure():
    cal = Calibration(range_mpa=600.0, offset_mpa=2.0, gain=1.01)
    assert abs(cal.ma_to_mpa(12.0) - (300.0 * 1.01 + 2.0)) < 1e-9
    assert abs(cal.mpa_to_ma(cal.ma_to_mpa(12.0)) - 12.0) < 1e-9
