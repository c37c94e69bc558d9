# Pressure controller, actuator model and transducer filter: runs under CPython and MicroPython.

import random

from isofw.control import ActuatorModel, PressureController, PressureFilter


def _controller(**kw):
    args = {
        "kp_per_s": 1.5,
        "ki_per_s2": 0.4,
        "hold_ki_per_s2": 0.8,
        "integral_limit_mpa_s": 0.5,
        "switch_band_mpa_s": 0.1,
    }
    args.update(kw)
    return PressureController(**args)


def test_positive_error_drives_pump_only():
    c = _controller()
    c.update(0.01, 100.0, 0.0, 90.0)
    assert c.pump_duty > 0
    assert c.vent_duty == 0


def test_negative_error_drives_vent_only():
    c = _controller()
    c.update(0.01, 90.0, 0.0, 100.0)
    assert c.vent_duty > 0
    assert c.pump_duty == 0


def test_output_is_clamped_to_full_duty():
    c = _controller()
    c.update(0.01, 400.0, 0.0, 0.0)
    assert c.pump_duty == 65535
    c.update(0.01, 0.0, 0.0, 400.0)
    assert c.vent_duty == 65535
    assert c.pump_duty == 0


def test_integral_stops_while_saturated():
    c = _controller()
    for _ in range(1000):
        c.update(0.01, 400.0, 0.0, 0.0)  # huge error, pump pinned at full
    assert c.integral_mpa_s == 0.0  # nothing wound up while saturated


def test_integral_is_bounded():
    c = _controller(kp_per_s=0.0, integral_limit_mpa_s=0.3)
    for _ in range(100000):
        c.update(0.01, 100.0, 0.0, 99.9)
    assert abs(c.integral_mpa_s - 0.3) < 1e-9


def test_hold_uses_its_own_integral_gain():
    ramping = _controller(ki_per_s2=0.1, hold_ki_per_s2=1.0)
    holding = _controller(ki_per_s2=0.1, hold_ki_per_s2=1.0)
    ramping.update(0.01, 100.0, 0.0, 99.0, False)
    holding.update(0.01, 100.0, 0.0, 99.0, True)
    assert abs(ramping.integral_mpa_s - 0.001) < 1e-12
    assert abs(holding.integral_mpa_s - 0.01) < 1e-12


def test_small_sign_changes_do_not_chatter_between_pump_and_vent():
    c = _controller(kp_per_s=0.01, ki_per_s2=0.0, switch_band_mpa_s=0.03)
    c.update(0.01, 100.0, 0.0, 95.0)  # asks +0.05 MPa/s: pump
    assert c.mode == 1
    c.update(0.01, 100.0, 0.0, 100.5)  # asks -0.005: inside the band, both off
    assert c.pump_duty == 0 and c.vent_duty == 0
    assert c.mode == 0
    c.update(0.01, 100.0, 0.0, 99.0)  # asks +0.01: still inside the band, stay off
    assert c.pump_duty == 0 and c.vent_duty == 0
    c.update(0.01, 100.0, 0.0, 104.0)  # asks -0.04: past the band, vent
    assert c.mode == -1 and c.vent_duty > 0
    assert c.reversals == 1


def test_noise_around_a_hold_does_not_reverse_the_actuators():
    # A hold at 250 MPa read through the filter: measurement noise of 0.1 MPa must not
    # make pump and vent take turns.
    random.seed(3)
    c = _controller()
    f = PressureFilter()
    f.reset(250.0)
    for _ in range(3000):
        f.update(0.01, 250.0 + random.uniform(-0.17, 0.17))
        c.update(0.01, 250.0, 0.0, f.pressure_mpa, True)
    assert c.reversals <= 2


def test_fall_is_capped_at_the_given_rate():
    c = _controller()
    c.update(0.01, 100.0, -0.5, 110.0, False, 0.5)  # 10 MPa above a ramp down at 0.5 MPa/s
    assert c.rate_demand_mpa_s == -0.5
    assert c.integral_mpa_s == 0.0  # capped counts as saturated: no wind-up
    c.update(0.01, 100.0, -0.5, 110.0, False, 0.0)  # no cap: the error is corrected faster
    assert c.rate_demand_mpa_s < -10.0


def test_feed_forward_follows_the_actuator_model():
    model = ActuatorModel(
        pump_rate_mpa_s=2.0, pump_stall_mpa=450.0, vent_rate_mpa_s=0.36, stiffening_per_mpa=0.0
    )
    c = _controller(kp_per_s=0.0, ki_per_s2=0.0, model=model)
    c.update(0.01, 0.0, 1.0, 0.0)  # 1 MPa/s at ambient: half the pump's 2 MPa/s
    assert abs(c.pump_duty - 32767) <= 1
    c.reset()
    c.update(0.01, 225.0, 1.0, 225.0)  # at half the stall pressure the pump gives 1 MPa/s
    assert c.pump_duty == 65535
    c.reset()
    c.update(0.01, 100.0, -0.36, 100.0)  # vent: 0.36 * sqrt(100) = 3.6 MPa/s full open
    assert abs(c.vent_duty - 6553) <= 1


def test_pump_capacity_falls_and_vent_flow_rises_with_pressure():
    m = ActuatorModel()
    assert m.pump_full_rate(0.0) > m.pump_full_rate(300.0) > m.pump_full_rate(440.0) > 0.0
    assert m.vent_full_rate(10.0) < m.vent_full_rate(100.0) < m.vent_full_rate(300.0)
    assert m.rate_of(100.0, 65535, 0) == m.pump_full_rate(100.0)
    assert m.rate_of(100.0, 0, 65535) == -m.vent_full_rate(100.0)


def test_filter_follows_a_ramp_without_lag_and_averages_noise():
    random.seed(7)
    f = PressureFilter(alpha=0.05, beta=0.0005)
    errors = []
    for i in range(6000):
        true = 1.0 * i * 0.01  # 1 MPa/s
        f.update(0.01, true + random.uniform(-0.3, 0.3))
        if i > 2000:
            errors.append(f.pressure_mpa - true)
    mean = sum(errors) / len(errors)
    rms = (sum(e * e for e in errors) / len(errors)) ** 0.5
    assert abs(mean) < 0.02  # no steady lag on a ramp
    assert rms < 0.05  # noise of 0.1 MPa RMS averaged down
    assert abs(f.rate_mpa_s - 1.0) < 0.05


def test_filter_coasts_over_a_rejected_reading():
    f = PressureFilter()
    f.reset(100.0)
    f.rate_mpa_s = 2.0
    f.coast(0.5)
    assert abs(f.pressure_mpa - 101.0) < 1e-9
